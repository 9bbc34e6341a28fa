//! `POST /v1/keys/import` and `legacy_key_formats`: keys brought over in clear or by hash, their
//! consumers made, retries answered the same, a dry run that matches the real one, foreign
//! formats verified only where the API accepts them, and rotation into Keyroll's format.

use keyroll::domain::{ApiKey, Environment, KeyHash, KeyHead, KeyPrefix};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Tenant, TestApp, unique};

async fn api(app: &TestApp, t: &Tenant, prefix: &str, catalogue: &[&str]) -> String {
    let body = json!({"name": "Orders", "key_prefix": prefix, "environment": "live", "scope_catalogue": catalogue});
    let (st, api) = app.post("/v1/apis", &t.root, body).await;
    assert_eq!(st, 201, "{api}");
    api["id"].as_str().expect("api id").to_owned()
}

fn ours(prefix: &str) -> String {
    let head = KeyHead::Api { prefix: KeyPrefix::parse(prefix).expect("prefix"), env: Environment::Live };
    ApiKey::generate(&head).expose().to_owned()
}

async fn import(app: &TestApp, root: &str, body: Value) -> (u16, Value) {
    app.post("/v1/keys/import", root, body).await
}

async fn legacy(app: &TestApp, root: &str, api_id: &str, on: bool) {
    let (st, a) = app
        .call(reqwest::Method::PATCH, &format!("/v1/apis/{api_id}"), root, Some(json!({"legacy_key_formats": on})))
        .await;
    assert_eq!((st, a["legacy_key_formats"].as_bool()), (200, Some(on)), "{a}");
}

async fn formats_and_verification(app: TestApp) {
    let t = app.tenant("Acme").await;
    let api_id = api(&app, &t, "shop", &["orders:read", "orders:write"]).await;
    let keyroll_key = ours("shop");
    let foreign = format!("sk_prod_{}", unique());
    let hashed = format!("legacy-{}-{}", unique(), unique());
    let keys = json!([
        {"plaintext": keyroll_key, "api_id": api_id, "external_id": "cus_1", "name": "from the old system", "scopes": ["orders:read"], "meta": {"plan": "pro"}},
        {"plaintext": foreign, "api_id": api_id, "external_id": "cus_2"},
        {"sha256": KeyHash::of(&hashed).to_hex(), "api_id": api_id, "external_id": "cus_1"},
    ]);
    // Without legacy formats, the foreign key in clear is refused, naming why.
    let (st, r) = import(&app, &t.root, json!({"import_id": "first", "keys": keys})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((r["imported"].as_u64(), r["consumers_created"].as_u64()), (Some(2), Some(1)), "{r}");
    assert_eq!(r["errors"][0]["index"], 1);
    assert_eq!(r["errors"][0]["field"], "plaintext");
    assert!(r["errors"][0]["message"].as_str().is_some_and(|m| m.contains("legacy_key_formats")), "{r}");
    let (_, k0) = app.get(&format!("/v1/keys/{}", r["key_ids"][0].as_str().expect("id")), &t.root).await;
    assert_eq!(
        (k0["name"].as_str(), k0["scopes"].clone(), k0["meta"].clone()),
        (Some("from the old system"), json!(["orders:read"]), json!({"plan": "pro"}))
    );
    assert_eq!(k0["start"], &keyroll_key[..14]);
    let (_, k2) = app.get(&format!("/v1/keys/{}", r["key_ids"][1].as_str().expect("id")), &t.root).await;
    assert!(k2["start"].as_str().is_some_and(|s| s.starts_with("sha256:")), "{k2}");
    let v = app.verify(json!({"key": keyroll_key, "scopes": ["orders:read"]})).await;
    assert_eq!((v["code"].as_str(), v["consumer"]["external_id"].as_str()), (Some("VALID"), Some("cus_1")), "{v}");
    assert_eq!(app.verify_code(&hashed).await, "MALFORMED", "a foreign format, and no API accepts those");

    // With legacy formats on, the foreign keys verify; keys that start like ours still must hold.
    legacy(&app, &t.root, &api_id, true).await;
    let (st, r) = import(
        &app,
        &t.root,
        json!({"import_id": "second", "keys": [{"plaintext": foreign, "api_id": api_id, "external_id": "cus_2"}]}),
    )
    .await;
    assert_eq!((st, r["imported"].as_u64()), (200, Some(1)), "{r}");
    let foreign_id = r["key_ids"][0].as_str().expect("id").to_owned();
    let v = app.verify(json!({"key": foreign, "api_id": api_id})).await;
    assert_eq!((v["code"].as_str(), v["consumer"]["external_id"].as_str()), (Some("VALID"), Some("cus_2")), "{v}");
    assert_eq!(app.verify_code(&hashed).await, "VALID", "imported by its hash");
    assert_eq!(app.verify_code("unknown-foreign-key-0123456789").await, "NOT_FOUND");
    assert_eq!(app.verify_code("shop_live_0123456789abcdef0123456789").await, "MALFORMED", "our head, broken");
    assert_eq!(app.verify_code("short").await, "MALFORMED");
    // Another API named: the foreign key is not its key.
    let other = api(&app, &t, "other", &[]).await;
    let v = app.verify(json!({"key": foreign, "api_id": other})).await;
    assert_eq!(v["code"], "MALFORMED", "the API named accepts no foreign formats: {v}");
    // The gateway endpoint and the Unkey adapter take the same path.
    let res = app
        .client
        .get(app.url(&format!("/v1/gateway/auth?api_id={api_id}")))
        .bearer_auth(&foreign)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let (_, w) = app.post("/v2/keys.whoami", &t.root, json!({"key": foreign})).await;
    assert_eq!(w["data"]["keyId"], foreign_id.as_str(), "{w}");

    // Rotating a foreign key issues a Keyroll key; the old one works through the overlap.
    let (st, rotated) =
        app.post(&format!("/v1/keys/{foreign_id}/rotate"), &t.root, json!({"overlap_seconds": 600})).await;
    assert_eq!(st, 201, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret");
    assert!(ApiKey::parse(new_secret).is_ok() && new_secret.starts_with("shop_live_"), "{new_secret}");
    assert_eq!(app.verify_code(new_secret).await, "VALID");
    assert_eq!(app.verify(json!({"key": foreign})).await["rotation"]["state"], "superseded");
    // The holder of the hashed key rotates it themselves (self-service takes foreign keys too).
    let res =
        app.client.post(app.url("/v1/self/rotate")).bearer_auth(&hashed).json(&json!({})).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 201);
    let mine: Value = res.json().await.expect("json");
    assert!(mine["secret"].as_str().is_some_and(|s| ApiKey::parse(s).is_ok()), "{mine}");

    // Legacy formats off again: the foreign keys stop at once on this node.
    legacy(&app, &t.root, &api_id, false).await;
    assert_eq!(app.verify_code(&hashed).await, "MALFORMED");
    assert_eq!(app.verify_code(&keyroll_key).await, "VALID", "Keyroll keys are not affected");

    // One audit entry per import.
    let (_, audit) = app.get("/v1/audit-events?limit=100", &t.root).await;
    let imports = audit["data"].as_array().expect("data").iter().filter(|e| e["action"] == "key.imported").count();
    assert_eq!(imports, 2);
}
both_backends!(import_formats_and_verification, formats_and_verification);

async fn retries_dry_runs_and_refusals(app: TestApp) {
    let t = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let api_id = api(&app, &t, "shop", &["orders:read"]).await;
    let theirs = api(&app, &globex, "theirs", &[]).await;
    let secret = |n: u32| KeyHash::of(&format!("key-number-{n}")).to_hex();
    let body = json!({"import_id": "batch-1", "keys": [
        {"sha256": secret(1), "api_id": api_id, "external_id": "new_customer"},
        {"sha256": secret(2), "api_id": api_id, "external_id": "new_customer"},
        {"sha256": secret(2), "api_id": api_id, "external_id": "new_customer"},
    ]});
    // A dry run reports exactly what the import then does, and writes nothing.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    dry["import_id"] = json!("batch-1-dry");
    let (st, d) = import(&app, &t.root, dry).await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(
        (d["dry_run"].as_bool(), d["imported"].as_u64(), d["consumers_created"].as_u64()),
        (Some(true), Some(2), Some(1))
    );
    assert_eq!(d["key_ids"], json!([]));
    let (_, consumers) = app.get("/v1/consumers?external_id=new_customer", &t.root).await;
    assert_eq!(consumers["data"], json!([]), "a dry run creates nothing");
    let (st, r) = import(&app, &t.root, body.clone()).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!((r["imported"].as_u64(), r["consumers_created"].as_u64()), (Some(2), Some(1)));
    assert_eq!(r["skipped"], json!([{"index": 2, "reason": "the same secret is earlier in this import"}]));
    assert_eq!((d["skipped"].clone(), d["errors"].clone()), (r["skipped"].clone(), r["errors"].clone()));

    // The same import again: the same report, nothing new.
    let (st, again) = import(&app, &t.root, body.clone()).await;
    assert_eq!((st, &again), (200, &r));
    let (_, keys) = app.get(&format!("/v1/keys?api_id={api_id}&limit=100"), &t.root).await;
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(2));
    // The same id with another body is refused.
    let mut changed = body.clone();
    changed["keys"][0]["external_id"] = json!("someone_else");
    let (st, e) = import(&app, &t.root, changed).await;
    assert_eq!((st, e["code"].as_str()), (409, Some("conflict")), "{e}");
    // A new import of a secret that exists: skipped, naming the key.
    let (_, r2) = import(
        &app,
        &t.root,
        json!({"import_id": "batch-2", "keys": [{"sha256": secret(1), "api_id": api_id, "external_id": "x"}]}),
    )
    .await;
    assert_eq!(
        (r2["imported"].as_u64(), r2["skipped"][0]["key_id"].clone()),
        (Some(0), r["key_ids"][0].clone()),
        "{r2}"
    );
    // Another team cannot import a secret that is taken, nor learn whose key it is.
    let (_, r3) = import(
        &app,
        &globex.root,
        json!({"import_id": "batch-1", "keys": [{"sha256": secret(1), "api_id": theirs, "external_id": "x"}]}),
    )
    .await;
    assert_eq!(r3["skipped"], json!([{"index": 0, "reason": "this secret is taken"}]), "{r3}");

    // Faults of single keys are reported by index and field; the rest is imported.
    let (st, r4) = import(
        &app,
        &t.root,
        json!({"import_id": "faults", "keys": [
            {"sha256": secret(10), "plaintext": "also-a-plaintext-key", "api_id": api_id, "external_id": "a"},
            {"api_id": api_id, "external_id": "a"},
            {"sha256": "not hex", "api_id": api_id, "external_id": "a"},
            {"sha256": secret(11), "api_id": theirs, "external_id": "a"},
            {"sha256": secret(12), "api_id": api_id, "external_id": "a", "scopes": ["billing:read"]},
            {"sha256": secret(13), "api_id": api_id, "external_id": "a", "expires_at": "2020-01-01T00:00:00Z"},
            {"sha256": secret(14), "api_id": api_id, "external_id": "has space"},
            {"plaintext": format!("{}x", &ours("other")[..20]), "api_id": api_id, "external_id": "a"},
            {"plaintext": ours("other"), "api_id": api_id, "external_id": "a"},
            {"sha256": secret(15), "api_id": api_id, "external_id": "a", "name": "fine"},
        ]}),
    )
    .await;
    assert_eq!(st, 200, "{r4}");
    let fields: Vec<(u64, &str)> = r4["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| Some((e["index"].as_u64()?, e["field"].as_str()?)))
        .collect();
    assert_eq!(
        fields,
        [
            (0, "plaintext"),
            (1, "plaintext"),
            (2, "sha256"),
            (3, "api_id"),
            (4, "scopes[0]"),
            (5, "expires_at"),
            (6, "external_id"),
            (7, "plaintext"),
            (8, "plaintext"),
        ],
        "{r4}"
    );
    assert_eq!(r4["imported"], 1);

    // The request itself.
    for (body, field) in [
        (
            json!({"import_id": "bad id", "keys": [{"sha256": secret(20), "api_id": api_id, "external_id": "a"}]}),
            "import_id",
        ),
        (json!({"import_id": "empty", "keys": []}), "keys"),
        (
            json!({"import_id": "x", "keys": [{"sha256": secret(20), "api_id": api_id, "external_id": "a", "bogus": 1}]}),
            "keys[0].bogus",
        ),
    ] {
        let (st, e) = import(&app, &t.root, body).await;
        assert_eq!((st, e["errors"][0]["field"].as_str()), (400, Some(field)), "{e}");
    }
    let many: Vec<Value> =
        (0..10_001).map(|_| json!({"sha256": secret(30), "api_id": api_id, "external_id": "a"})).collect();
    let (st, e) = import(&app, &t.root, json!({"import_id": "too-many", "keys": many})).await;
    assert_eq!((st, e["errors"][0]["field"].as_str()), (400, Some("keys")), "{e}");

    // Permissions: keys:write, and consumers:write when a consumer must be made.
    let (_, rk) = app.post("/v1/root-keys", &t.root, json!({"name": "writer", "scopes": ["keys:write"]})).await;
    let writer = rk["secret"].as_str().expect("secret");
    let (st, _) = import(
        &app,
        writer,
        json!({"import_id": "w1", "keys": [{"sha256": secret(40), "api_id": api_id, "external_id": "nobody_yet"}]}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, r5) = import(
        &app,
        writer,
        json!({"import_id": "w2", "keys": [{"sha256": secret(40), "api_id": api_id, "external_id": "new_customer"}]}),
    )
    .await;
    assert_eq!((st, r5["imported"].as_u64()), (200, Some(1)), "{r5}");
    let (_, rk) = app.post("/v1/root-keys", &t.root, json!({"name": "reader", "scopes": ["keys:read"]})).await;
    let (st, _) = import(
        &app,
        rk["secret"].as_str().expect("secret"),
        json!({"import_id": "r", "keys": [{"sha256": secret(41), "api_id": api_id, "external_id": "a"}]}),
    )
    .await;
    assert_eq!(st, 403);
}
both_backends!(import_retries_dry_runs_and_refusals, retries_dry_runs_and_refusals);

/// The most one call takes, in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_in_one_call() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let t = app.tenant("Acme").await;
    let api_id = api(&app, &t, "shop", &[]).await;
    let keys: Vec<Value> = (0..10_000)
        .map(|i| json!({"sha256": KeyHash::of(&format!("bulk-secret-{i:06}")).to_hex(), "api_id": api_id, "external_id": format!("cus_{}", i % 500)}))
        .collect();
    let (st, r) = import(&app, &t.root, json!({"import_id": "bulk", "keys": keys})).await;
    assert_eq!(st, 200, "{}", r.to_string().chars().take(500).collect::<String>());
    assert_eq!((r["imported"].as_u64(), r["consumers_created"].as_u64()), (Some(10_000), Some(500)));
    assert_eq!(r["key_ids"].as_array().map(Vec::len), Some(10_000));
    legacy(&app, &t.root, &api_id, true).await;
    for i in [0, 4_999, 9_999] {
        let v = app.verify(json!({"key": format!("bulk-secret-{i:06}")})).await;
        assert_eq!(
            (v["code"].as_str(), v["consumer"]["external_id"].clone()),
            (Some("VALID"), json!(format!("cus_{}", i % 500))),
            "{v}"
        );
    }
}

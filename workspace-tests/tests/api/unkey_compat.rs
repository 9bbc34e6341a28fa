//! The Unkey-compatible API over plain HTTP: the exact envelope and error shapes, what maps and
//! what is refused, tenant isolation, and paging. The SDKs' own runs are in `unkey_sdks.rs`.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Tenant, TestApp};

async fn call(app: &TestApp, route: &str, root: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/v2/{route}"), root, body).await
}

/// An error answer: status, Unkey's `type`, and the body.
fn error_of(st: u16, body: &Value) -> (u16, String) {
    assert!(body["meta"]["requestId"].as_str().is_some_and(|r| r.starts_with("req_")), "{body}");
    let e = &body["error"];
    assert_eq!(e["status"].as_u64(), Some(u64::from(st)), "{body}");
    assert!(e["title"].is_string() && e["detail"].is_string(), "{body}");
    (st, e["type"].as_str().unwrap_or_default().to_owned())
}

const DOCS: &str = "https://unkey.com/docs/errors/";

async fn api(app: &TestApp, t: &Tenant, prefix: &str) -> String {
    let body = json!({"name": "Orders", "key_prefix": prefix, "environment": "live"});
    let (st, api) = app.post("/v1/apis", &t.root, body).await;
    assert_eq!(st, 201, "{api}");
    api["id"].as_str().expect("api id").to_owned()
}

async fn shapes_and_refusals(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let api_id = api(&app, &acme, "shop").await;

    // The envelope, and a key without an owner.
    let (st, made) = call(&app, "keys.createKey", &acme.root, json!({"apiId": api_id})).await;
    assert_eq!(st, 200, "{made}");
    assert!(made["meta"]["requestId"].as_str().is_some_and(|r| r.starts_with("req_")), "{made}");
    let key_id = made["data"]["keyId"].as_str().expect("key id").to_owned();
    let secret = made["data"]["key"].as_str().expect("key").to_owned();
    let (st, got) = call(&app, "keys.getKey", &acme.root, json!({"keyId": key_id})).await;
    assert_eq!(st, 200, "{got}");
    assert!(got["data"].get("identity").is_none(), "no owner, no identity: {got}");
    assert_eq!(got["data"]["roles"], json!([]));
    let (_, consumers) = app.get("/v1/consumers?external_id=keyroll-unassigned", &acme.root).await;
    assert_eq!(consumers["data"].as_array().map(Vec::len), Some(1), "one consumer holds the ownerless keys");
    // A second ownerless key joins the same consumer.
    let (st, _) = call(&app, "keys.createKey", &acme.root, json!({"apiId": api_id, "name": "two"})).await;
    assert_eq!(st, 200);
    let (_, consumers) = app.get("/v1/consumers?limit=100", &acme.root).await;
    assert_eq!(consumers["data"].as_array().map(Vec::len), Some(1));

    // What does not map is refused, naming the field.
    for (body, location) in [
        (json!({"apiId": api_id, "prefix": "other"}), "body.prefix"),
        (json!({"apiId": api_id, "roles": ["admin"]}), "body.roles"),
        (json!({"apiId": api_id, "byteLength": 8}), "body.byteLength"),
        (json!({"apiId": api_id, "expires": 1}), "body.expires"),
        (json!({"apiId": api_id, "credits": {"remaining": -1}}), "body.credits.remaining"),
        (
            json!({"apiId": api_id, "credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 5, "refillDay": 15}}}),
            "body.credits.refill.refillDay",
        ),
        (
            json!({"apiId": api_id, "ratelimits": [{"name": "a", "limit": 1, "duration": 1500}]}),
            "body.ratelimits[0].duration",
        ),
        (
            json!({"apiId": api_id, "ratelimits": [{"name": "a", "limit": 1, "duration": 1000}, {"name": "b", "limit": 1, "duration": 1000}]}),
            "body.ratelimits",
        ),
        (json!({"apiId": api_id, "permissions": ["orders:read", "Bad"]}), "body.permissions[1]"),
        (json!({"apiId": api_id, "externalId": "has space"}), "body.externalId"),
        (json!({"apiId": 5}), "body.apiId"),
        (json!({}), "body.apiId"),
    ] {
        let (st, e) = call(&app, "keys.createKey", &acme.root, body.clone()).await;
        assert_eq!(error_of(st, &e), (400, format!("{DOCS}unkey/application/invalid_input")), "{body} → {e}");
        assert_eq!(e["error"]["errors"][0]["location"], location, "{body} → {e}");
    }
    let (st, e) = call(&app, "keys.createKey", &acme.root, json!({"apiId": api_id, "recoverable": true})).await;
    assert_eq!(error_of(st, &e), (412, format!("{DOCS}unkey/application/precondition_failed")), "{e}");
    let res = app
        .client
        .post(app.url("/v2/keys.createKey"))
        .bearer_auth(&acme.root)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let st = res.status().as_u16();
    let e: Value = res.json().await.expect("json");
    assert_eq!(error_of(st, &e).0, 400);
    assert_eq!(e["error"]["errors"][0]["location"], "body", "{e}");

    // Authentication, as Unkey answers it.
    let res = app.client.post(app.url("/v2/keys.getKey")).json(&json!({"keyId": key_id})).send().await.expect("sent");
    let st = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(error_of(st, &res.json().await.expect("json")), (401, format!("{DOCS}unkey/authentication/missing")));
    let res = app
        .client
        .post(app.url("/v2/keys.getKey"))
        .header("authorization", format!("Basic {}", acme.root))
        .json(&json!({"keyId": key_id}))
        .send()
        .await
        .expect("sent");
    let st = res.status().as_u16();
    assert_eq!(error_of(st, &res.json().await.expect("json")), (401, format!("{DOCS}unkey/authentication/malformed")));
    let (st, e) = call(&app, "keys.getKey", &secret, json!({"keyId": key_id})).await;
    assert_eq!(
        error_of(st, &e),
        (401, format!("{DOCS}unkey/authentication/key_not_found")),
        "an API key is no root key"
    );

    // Routes: POST only, unknown ones are not found.
    let res = app.client.get(app.url("/v2/keys.getKey")).bearer_auth(&acme.root).send().await.expect("sent");
    assert_eq!((res.status().as_u16(), res.headers()["allow"].to_str().ok()), (405, Some("POST")));
    let (st, e) = call(&app, "keys.addRoles", &acme.root, json!({})).await;
    assert_eq!(error_of(st, &e).0, 404);

    // Verify's own refusals.
    for (body, location) in [
        (json!({"key": secret, "migrationId": "m1"}), "body.migrationId"),
        (json!({"key": secret, "credits": {"cost": -1}}), "body.credits.cost"),
        (json!({"key": secret, "ratelimits": [{"name": "x", "cost": 5}]}), "body.ratelimits[0]"),
        (json!({"key": ""}), "body.key"),
    ] {
        let (st, e) = call(&app, "keys.verifyKey", &acme.root, body.clone()).await;
        assert_eq!(error_of(st, &e).0, 400, "{body} → {e}");
        assert_eq!(e["error"]["errors"][0]["location"], location, "{body} → {e}");
    }
    let (st, v) =
        call(&app, "keys.verifyKey", &acme.root, json!({"key": secret, "credits": {"cost": 0}, "tags": ["path=/x"]}))
            .await;
    assert_eq!((st, v["data"]["code"].as_str()), (200, Some("VALID")), "{v}");

    // A key cannot move to another owner; null on an ownerless key is no change.
    let (st, e) = call(&app, "keys.updateKey", &acme.root, json!({"keyId": key_id, "externalId": "someone"})).await;
    assert_eq!(error_of(st, &e).0, 400);
    assert_eq!(e["error"]["errors"][0]["location"], "body.externalId");
    let (st, ok) =
        call(&app, "keys.updateKey", &acme.root, json!({"keyId": key_id, "externalId": null, "enabled": false})).await;
    assert_eq!((st, ok["data"].clone()), (200, json!({})), "{ok}");
    let (_, v) = call(&app, "keys.verifyKey", &acme.root, json!({"key": secret})).await;
    assert_eq!((v["data"]["code"].as_str(), v["data"]["enabled"].as_bool()), (Some("DISABLED"), Some(false)), "{v}");
    let (st, _) = call(&app, "keys.updateKey", &acme.root, json!({"keyId": key_id, "enabled": true})).await;
    assert_eq!(st, 200);

    // Reroll with 0 ends the old key now; with null it keeps it as long as the rules allow.
    let (st, r) = call(&app, "keys.rerollKey", &acme.root, json!({"keyId": key_id, "expiration": 0})).await;
    assert_eq!(st, 200, "{r}");
    let (_, v) = call(&app, "keys.verifyKey", &acme.root, json!({"key": secret})).await;
    assert_eq!(v["data"]["code"], "EXPIRED", "{v}");
    let second = r["data"]["key"].as_str().expect("key").to_owned();
    let second_id = r["data"]["keyId"].as_str().expect("id").to_owned();
    let (st, r) = call(&app, "keys.rerollKey", &acme.root, json!({"keyId": second_id, "expiration": null})).await;
    assert_eq!(st, 200, "{r}");
    let (_, v) = call(&app, "keys.verifyKey", &acme.root, json!({"key": second})).await;
    let end = v["data"]["expires"].as_i64().expect("overlap end");
    let days = (end - chrono::Utc::now().timestamp_millis()) / 86_400_000;
    assert!(days >= 6, "the old key stays for the longest overlap: {v}");
    assert_eq!(v["data"]["code"], "VALID");
    let (st, e) = call(&app, "keys.rerollKey", &acme.root, json!({"keyId": second_id, "expiration": -5})).await;
    assert_eq!(error_of(st, &e).0, 400);
    let (st, e) =
        call(&app, "keys.rerollKey", &acme.root, json!({"keyId": second_id, "expiration": 400_000_000_000_i64})).await;
    assert_eq!(e["error"]["errors"][0]["location"], "body.expiration", "{st} {e}");

    // Deleting twice: the second time there is nothing to delete.
    let (st, _) = call(&app, "keys.deleteKey", &acme.root, json!({"keyId": second_id, "permanent": true})).await;
    assert_eq!(st, 200);
    let (st, e) = call(&app, "keys.deleteKey", &acme.root, json!({"keyId": second_id})).await;
    assert_eq!(error_of(st, &e), (404, format!("{DOCS}unkey/data/key_not_found")));
    let (st, e) = call(&app, "keys.whoami", &acme.root, json!({"key": second})).await;
    assert_eq!(error_of(st, &e).0, 404, "{e}");
}
both_backends!(unkey_shapes_and_refusals, shapes_and_refusals);

async fn isolation_and_paging(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let api_id = api(&app, &acme, "shop").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"apiId": api_id, "externalId": "user_1", "name": format!("k{i}")});
        let (st, made) = call(&app, "keys.createKey", &acme.root, body).await;
        assert_eq!(st, 200, "{made}");
        ids.push(made["data"]["keyId"].as_str().expect("id").to_owned());
    }
    let (_, other) = call(&app, "keys.createKey", &acme.root, json!({"apiId": api_id, "externalId": "user_2"})).await;
    let other_secret = other["data"]["key"].as_str().expect("key").to_owned();

    // Pages of one, newest first, for one owner.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut body = json!({"apiId": api_id, "externalId": "user_1", "limit": 1});
        if !cursor.is_null() {
            body["cursor"] = cursor.clone();
        }
        let (st, page) = call(&app, "apis.listKeys", &acme.root, body).await;
        assert_eq!(st, 200, "{page}");
        seen.extend(page["data"].as_array().expect("data").iter().map(|k| k["keyId"].as_str().expect("id").to_owned()));
        if page["pagination"]["hasMore"] == false {
            assert!(page["pagination"].get("cursor").is_none(), "{page}");
            break;
        }
        cursor = page["pagination"]["cursor"].clone();
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let (_, all) = call(&app, "apis.listKeys", &acme.root, json!({"apiId": api_id})).await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(4));
    let (_, none) = call(&app, "apis.listKeys", &acme.root, json!({"apiId": api_id, "externalId": "nobody"})).await;
    assert_eq!((none["data"].clone(), none["pagination"]["hasMore"].clone()), (json!([]), json!(false)));
    for body in [
        json!({"apiId": api_id, "limit": 0}),
        json!({"apiId": api_id, "limit": 101}),
        json!({"apiId": api_id, "cursor": "not a cursor!"}),
    ] {
        let (st, e) = call(&app, "apis.listKeys", &acme.root, body.clone()).await;
        assert_eq!(error_of(st, &e).0, 400, "{body}");
    }

    // Another team sees none of it: not the API, not the keys, not a verification.
    let (st, e) = call(&app, "apis.listKeys", &globex.root, json!({"apiId": api_id})).await;
    assert_eq!(error_of(st, &e), (404, format!("{DOCS}unkey/data/api_not_found")));
    let (st, e) = call(&app, "keys.getKey", &globex.root, json!({"keyId": ids[0]})).await;
    assert_eq!(error_of(st, &e), (404, format!("{DOCS}unkey/data/key_not_found")));
    let (st, e) = call(&app, "keys.updateKey", &globex.root, json!({"keyId": ids[0], "name": "mine"})).await;
    assert_eq!(error_of(st, &e).0, 404);
    let (st, e) = call(&app, "keys.rerollKey", &globex.root, json!({"keyId": ids[0], "expiration": 0})).await;
    assert_eq!(error_of(st, &e).0, 404);
    let (st, e) = call(&app, "keys.deleteKey", &globex.root, json!({"keyId": ids[0]})).await;
    assert_eq!(error_of(st, &e).0, 404);
    let (st, e) = call(&app, "keys.whoami", &globex.root, json!({"key": other_secret})).await;
    assert_eq!(error_of(st, &e).0, 404);
    let (st, v) = call(&app, "keys.verifyKey", &globex.root, json!({"key": other_secret})).await;
    assert_eq!((st, v["data"].clone()), (200, json!({"valid": false, "code": "NOT_FOUND"})));
    let (_, v) = call(&app, "keys.verifyKey", &acme.root, json!({"key": other_secret})).await;
    assert_eq!(v["data"]["identity"]["externalId"], "user_2", "{v}");

    // A root key without the scope is refused before anything happens.
    let (_, rk) = app.post("/v1/root-keys", &acme.root, json!({"name": "reader", "scopes": ["keys:read"]})).await;
    let reader = rk["secret"].as_str().expect("secret");
    for (route, body) in [
        ("keys.createKey", json!({"apiId": api_id})),
        ("keys.updateKey", json!({"keyId": ids[0], "name": "x"})),
        ("keys.deleteKey", json!({"keyId": ids[0]})),
        ("keys.rerollKey", json!({"keyId": ids[0], "expiration": 0})),
    ] {
        let (st, e) = call(&app, route, reader, body).await;
        assert_eq!(error_of(st, &e), (403, format!("{DOCS}unkey/authorization/insufficient_permissions")), "{route}");
    }
    let (st, _) = call(&app, "keys.getKey", reader, json!({"keyId": ids[0]})).await;
    assert_eq!(st, 200);
}
both_backends!(unkey_isolation_and_paging, isolation_and_paging);

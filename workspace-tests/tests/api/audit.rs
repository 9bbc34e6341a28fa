//! The audit log: every mutation leaves an entry in its own transaction, the hash chain shows
//! any edit made behind the application's back, and the log can be filtered and exported.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

async fn entries(app: &TestApp, root: &str, query: &str) -> Vec<Value> {
    let (st, v) = app.get(&format!("/v1/audit-events{query}"), root).await;
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

fn actions(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|e| e["action"].as_str()).collect()
}

async fn every_mutation_is_recorded_without_secrets(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    // A request id sent by the client is kept with the entry.
    let res = app
        .client
        .patch(app.url(&format!("/v1/keys/{}", k.key_id)))
        .bearer_auth(&acme.root)
        .header("x-request-id", "req-from-the-client-42")
        .json(&json!({"enabled": false, "name": "renamed"}))
        .send()
        .await
        .expect("patch sent");
    assert_eq!(res.status().as_u16(), 200);
    let (st, _) = app
        .call(reqwest::Method::PATCH, &format!("/v1/keys/{}", k.key_id), &acme.root, Some(json!({"enabled": true})))
        .await;
    assert_eq!(st, 200);
    let (st, rotated) =
        app.post(&format!("/v1/keys/{}/rotate", k.key_id), &acme.root, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap_or_default().to_owned();
    let rotation_id = rotated["rotation"]["id"].as_str().unwrap_or_default().to_owned();
    let (st, _) = app.post(&format!("/v1/rotations/{rotation_id}/complete"), &acme.root, json!({})).await;
    assert_eq!(st, 200);
    let new_id = rotated["key"]["id"].as_str().unwrap_or_default().to_owned();
    let (st, _) =
        app.post(&format!("/v1/keys/{new_id}/revoke"), &acme.root, json!({"reason": "leaked in a gist"})).await;
    assert_eq!(st, 200);
    // Revoking a version in the middle of a rotation cancels it, and says so.
    let other = app.make_key(&acme, "acme", json!({})).await;
    let (st, _) = app.post(&format!("/v1/keys/{}/rotate", other.key_id), &acme.root, json!({})).await;
    assert_eq!(st, 201);
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", other.key_id), &acme.root, json!({"reason": "gone"})).await;
    assert_eq!(st, 200);
    let (st, pol) = app
        .post("/v1/policies", &acme.root, json!({"api_id": k.api_id, "interval_days": 90, "overlap_seconds": 86400}))
        .await;
    assert_eq!(st, 201, "{pol}");
    let (st, _) =
        app.call(reqwest::Method::DELETE, &format!("/v1/consumers/{}", k.consumer_id), &acme.root, None).await;
    assert_eq!(st, 204);

    let log = entries(&app, &acme.root, "?limit=100").await;
    let got = actions(&log);
    for want in [
        "tenant.created",
        "root_key.created",
        "api.created",
        "consumer.created",
        "key.created",
        "key.updated",
        "key.rotated",
        "rotation.completed",
        "key.revoked",
        "policy.created",
        "consumer.deleted",
        "rotation.cancelled",
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
    // Newest first, with contiguous sequence numbers.
    let seqs: Vec<i64> = log.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");

    let update = log.iter().find(|e| e["request_id"] == "req-from-the-client-42").expect("key.updated");
    assert_eq!(update["action"], "key.updated");
    assert_eq!(update["request_id"], "req-from-the-client-42");
    assert_eq!(update["ip"], "127.0.0.1");
    assert!(update["actor"].as_str().unwrap_or_default().starts_with("root_key:key_"), "{update}");
    assert_eq!(update["data"]["before"]["enabled"], true);
    assert_eq!(update["data"]["after"]["enabled"], false);
    assert_eq!(update["data"]["after"]["name"], "renamed");
    assert!(update["data"]["before"].get("scopes").is_none(), "only what changed: {update}");
    let rotation = log.iter().find(|e| e["action"] == "key.rotated").expect("key.rotated");
    let summary = rotation["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("v1 → v2") && summary.contains("v1 valid until"), "{summary}");
    let revoked =
        log.iter().find(|e| e["action"] == "key.revoked" && e["target_id"] == new_id.as_str()).expect("key.revoked");
    assert_eq!(revoked["data"]["reason"], "leaked in a gist");
    assert_eq!(revoked["target_id"], new_id.as_str());

    // Never a secret, nor a key's hash, anywhere in the log.
    let res = app
        .client
        .get(app.url("/v1/audit-events/export?format=jsonl"))
        .bearer_auth(&acme.root)
        .send()
        .await
        .expect("export");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap_or_default();
    assert!(text.contains("\"key.rotated\"") && text.contains(&k.key_id), "the export holds the log");
    for secret in [k.secret.as_str(), new_secret.as_str(), acme.root.as_str()] {
        assert!(!text.contains(secret), "a secret is in the audit log");
        let hash = keyroll::domain::ApiKey::parse(secret).expect("a key").hash().to_hex();
        assert!(!text.contains(&hash), "a key hash is in the audit log");
    }

    // Filters: an exact action, a resource prefix, a target, an actor, and a time window.
    let revokes = entries(&app, &acme.root, "?action=key.revoked").await;
    assert!(!revokes.is_empty() && revokes.iter().all(|e| e["action"] == "key.revoked"));
    let key_actions = entries(&app, &acme.root, "?action=key.&limit=100").await;
    assert!(key_actions.iter().all(|e| e["action"].as_str().unwrap_or_default().starts_with("key.")));
    assert!(key_actions.len() >= 4, "{}", key_actions.len());
    let about = entries(&app, &acme.root, &format!("?target_id={}", k.key_id)).await;
    assert!(about.iter().all(|e| e["target_id"] == k.key_id.as_str()) && about.len() >= 3, "{about:?}");
    let by_cli = entries(&app, &acme.root, "?actor=cli").await;
    assert_eq!(actions(&by_cli), ["root_key.created", "tenant.created"]);
    assert!(entries(&app, &acme.root, "?from=2099-01-01T00:00:00Z").await.is_empty());
    assert_eq!(entries(&app, &acme.root, "?to=2099-01-01T00:00:00Z&limit=100").await.len(), log.len());
    // Pages follow the cursor without gaps.
    let (_, first) = app.get("/v1/audit-events?limit=3", &acme.root).await;
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, second) = app.get(&format!("/v1/audit-events?limit=3&cursor={cursor}"), &acme.root).await;
    assert_eq!(second["data"][0]["seq"].as_i64(), first["data"][2]["seq"].as_i64().map(|s| s - 1));

    // Bad filters are named.
    for (q, field) in [
        ("?from=yesterday", "from"),
        ("?to=2020-01-01T00:00:00Z&from=2021-01-01T00:00:00Z", "to"),
        ("?limit=0", "limit"),
        ("?cursor=%%%", "cursor"),
    ] {
        let (st, v) = app.get(&format!("/v1/audit-events{q}"), &acme.root).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(v.to_string().contains(field), "{q}: {v}");
    }
    let (st, _) = app.get("/v1/audit-events/export?format=xml", &acme.root).await;
    assert_eq!(st, 400);

    // Another tenant sees none of it; a root key without audit:read is refused.
    let globex = app.tenant("Globex").await;
    let theirs = entries(&app, &globex.root, "?limit=100").await;
    assert!(theirs.iter().all(|e| e["target_id"] != k.key_id.as_str()));
    assert_eq!(actions(&theirs), ["root_key.created", "tenant.created"]);
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["keys:read"]})).await;
    let narrow = narrow["secret"].as_str().unwrap_or_default().to_owned();
    assert_eq!(app.get("/v1/audit-events", &narrow).await.0, 403);
    assert_eq!(app.get("/v1/audit-events/verify", &narrow).await.0, 403);
}
both_backends!(recorded, every_mutation_is_recorded_without_secrets);

async fn tampering_is_detected(app: TestApp) {
    let acme = app.tenant("Acme").await;
    for _ in 0..2 {
        app.make_key(&acme, "acme", json!({})).await;
    }
    let (st, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(st, 200);
    assert_eq!(report["intact"], true, "{report}");
    let total = report["entries"].as_i64().unwrap_or_default();
    assert_eq!(total, 7, "tenant, root key, API, and twice consumer and key: {report}");
    let (ok, lines) = keyroll::audit::check_all(&app.state.db, Some(&acme.id), false).await.expect("check");
    assert!(
        ok && lines[0].contains("intact") && lines[0].contains(report["head_hash"].as_str().unwrap_or("?")),
        "{lines:?}"
    );

    // Continuing from an intact check reads only the new entries, and ends on the new head.
    let tenant = keyroll::domain::TenantId::from_trusted(acme.id.clone());
    let earlier = keyroll::audit::verify(&app.state.db, &tenant).await.expect("verify");
    app.post("/v1/consumers", &acme.root, json!({"external_id": "later", "name": "Later"})).await;
    let later = keyroll::audit::chain::verify_from(&app.state.db, &tenant, Some(&earlier)).await.expect("verify");
    assert!(
        later.intact && later.entries == earlier.entries + 1 && later.head_seq == earlier.head_seq + 1,
        "{later:?}"
    );
    assert_ne!(later.head_hash, earlier.head_hash);
    let db = &app.state.db;
    let sql = |s: String| async move { db.execute_unprepared(&s).await.expect("sql") };
    // Someone with database access rewrites what entry 4 says.
    let t = &acme.id;
    sql(format!("UPDATE audit_events SET summary = 'nothing happened' WHERE tenant_id = '{t}' AND seq = 4")).await;
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_broken"]["seq"], 4, "{report}");
    assert!(report["first_broken"]["reason"].as_str().unwrap_or_default().contains("changed"), "{report}");
    let (ok, lines) = keyroll::audit::check_all(&app.state.db, None, false).await.expect("check");
    assert!(!ok, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("BROKEN at entry 4")), "{lines:?}");

    // Recomputing that entry's hash does not help: the next entry still points at the old one.
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id FROM audit_events WHERE tenant_id = '{t}' AND seq = 4"),
        ))
        .await
        .expect("query")
        .expect("row");
    let id: String = row.try_get("", "id").expect("id");
    let model = {
        use sea_orm::EntityTrait;
        keyroll::store::entities::audit_event::Entity::find_by_id(id).one(db).await.expect("find").expect("row")
    };
    let forged = keyroll::audit::chain::hash_of(&model);
    sql(format!("UPDATE audit_events SET hash = '{forged}' WHERE tenant_id = '{t}' AND seq = 4")).await;
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(report["first_broken"]["seq"], 5, "{report}");
    assert!(report["first_broken"]["reason"].as_str().unwrap_or_default().contains("point"), "{report}");

    // A fresh install: deleting an entry in the middle, or the newest ones, is seen too.
    let globex = app.tenant("Globex").await;
    app.make_key(&globex, "glob", json!({})).await;
    let g = &globex.id;
    sql(format!("DELETE FROM audit_events WHERE tenant_id = '{g}' AND seq = 3")).await;
    let (_, report) = app.get("/v1/audit-events/verify", &globex.root).await;
    assert_eq!((report["intact"].clone(), report["first_broken"]["seq"].clone()), (json!(false), json!(3)), "{report}");
    let initech = app.tenant("Initech").await;
    app.make_key(&initech, "init", json!({})).await;
    let i = &initech.id;
    let (_, before) = app.get("/v1/audit-events/verify", &initech.root).await;
    let head = before["head_seq"].as_i64().unwrap_or_default();
    sql(format!("DELETE FROM audit_events WHERE tenant_id = '{i}' AND seq = {head}")).await;
    let (_, report) = app.get("/v1/audit-events/verify", &initech.root).await;
    assert_eq!(report["intact"], false, "{report}");
    assert!(report["first_broken"]["reason"].as_str().unwrap_or_default().contains("missing"), "{report}");
}
both_backends!(tamper, tampering_is_detected);

async fn no_audit_row_no_change(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    app.state.db.execute_unprepared("ALTER TABLE audit_events RENAME TO audit_events_away").await.expect("rename");
    let (st, v) =
        app.post("/v1/apis", &acme.root, json!({"name": "Ghost", "key_prefix": "ghost", "environment": "live"})).await;
    assert_eq!(st, 500, "{v}");
    assert_eq!(v["status"], 500, "a problem document: {v}");
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", k.key_id), &acme.root, json!({"reason": "test"})).await;
    assert_eq!(st, 500);
    app.state.db.execute_unprepared("ALTER TABLE audit_events_away RENAME TO audit_events").await.expect("rename back");
    // Neither change happened.
    let (_, list) = app.get("/v1/apis", &acme.root).await;
    assert!(list["data"].as_array().is_some_and(|a| a.iter().all(|x| x["name"] != "Ghost")), "{list}");
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(report["intact"], true, "{report}");
}
both_backends!(audit_required, no_audit_row_no_change);

async fn concurrent_writers_keep_one_chain(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (client, url, root) = (app.client.clone(), app.url("/v1/consumers"), acme.root.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"external_id": format!("cus_{i}"), "name": format!("Customer {i}")});
            client.post(url).bearer_auth(root).json(&body).send().await.map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("sent"), 201);
    }
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries"], 26, "{report}");
}
both_backends!(concurrent, concurrent_writers_keep_one_chain);

async fn exports_and_retention(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let (st, _) = app
        .post(
            "/v1/apis",
            &acme.root,
            json!({"name": "=HYPERLINK(\"x\"), \"quoted\"", "key_prefix": "acme", "environment": "live"}),
        )
        .await;
    assert_eq!(st, 201);
    let fetch = |q: &'static str| {
        let req = app.client.get(app.url(&format!("/v1/audit-events/export{q}"))).bearer_auth(&acme.root);
        async move {
            let res = req.send().await.expect("export");
            let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let cd =
                res.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            (ct, cd, res.text().await.unwrap_or_default())
        }
    };
    let (ct, cd, jsonl) = fetch("").await;
    assert!(ct.starts_with("application/x-ndjson") && cd.contains("attachment") && cd.contains(".jsonl"), "{ct} {cd}");
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("a JSON object per line")).collect();
    assert_eq!(lines.iter().map(|l| l["seq"].as_i64().unwrap_or_default()).collect::<Vec<_>>(), [1, 2, 3]);
    let (ct, _, csv) = fetch("?format=csv&action=api.created").await;
    assert!(ct.starts_with("text/csv"), "{ct}");
    let rows: Vec<&str> = csv.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert!(rows[0].starts_with("seq,id,occurred_at,actor,action"), "{}", rows[0]);
    assert_eq!(rows.len(), 2, "{csv}");
    // Quotes doubled; a value a spreadsheet would run as a formula is defused.
    assert!(rows[1].contains("\"Created the API =HYPERLINK(\"\"x\"\"), \"\"quoted\"\""), "{}", rows[1]);

    // Retention removes the oldest entries and says so in the chain, which stays checkable.
    let tenant = keyroll::domain::TenantId::from_trusted(acme.id.clone());
    let gone = keyroll::audit::export::prune(
        &app.state.db,
        &tenant,
        chrono::Utc::now() + chrono::TimeDelta::seconds(1),
        "system",
    )
    .await
    .expect("prune");
    assert_eq!(gone, 3);
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!(
        (report["intact"].clone(), report["first_seq"].clone(), report["entries"].clone()),
        (json!(true), json!(4), json!(1)),
        "{report}"
    );
    let log = entries(&app, &acme.root, "").await;
    assert_eq!(actions(&log), ["audit.pruned"]);
    assert_eq!(log[0]["data"]["removed"], 3);
    app.post("/v1/consumers", &acme.root, json!({"external_id": "c1", "name": "After"})).await;
    let (_, report) = app.get("/v1/audit-events/verify", &acme.root).await;
    assert_eq!((report["intact"].clone(), report["entries"].clone()), (json!(true), json!(2)), "{report}");
}
both_backends!(export, exports_and_retention);

/// Audit entries name the client: behind a trusted proxy the address it forwards (the
/// right-most that is not a proxy), and from any other peer the peer, whatever it claims.
async fn addresses_behind_proxies(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let trusting =
        crate::helpers::spawn_node_with(&app.shared, None, &[("trusted_proxies", "127.0.0.1/32, ::1")]).await;
    let create = |node: &TestApp, name: &'static str, xff: &'static str| {
        node.client
            .post(node.url("/v1/consumers"))
            .bearer_auth(&acme.root)
            .header("x-forwarded-for", xff)
            .json(&json!({"external_id": name, "name": name}))
            .send()
    };
    assert_eq!(create(&app, "direct", "198.51.100.7").await.expect("sent").status().as_u16(), 201);
    assert_eq!(create(&trusting, "proxied", "198.51.100.7, 203.0.113.9").await.expect("sent").status().as_u16(), 201);
    let (_, audit) = app.get("/v1/audit-events?action=consumer.created&limit=10", &acme.root).await;
    let ip_of = |external: &str| {
        audit["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|e| e["summary"].as_str().is_some_and(|s| s.contains(&format!("({external})"))))
            .map(|e| e["ip"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(ip_of("direct"), json!("127.0.0.1"), "{audit}");
    assert_eq!(ip_of("proxied"), json!("203.0.113.9"), "{audit}");
}
both_backends!(audit_addresses_behind_proxies, addresses_behind_proxies);

//! The management API: CRUD, pagination, idempotency, request ids, OpenAPI, health.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

async fn lists_paginate_with_cursors(app: TestApp) {
    let t = app.tenant("Acme").await;
    let mut created = Vec::new();
    for i in 0..7 {
        let (st, c) = app
            .post("/v1/consumers", &t.root, json!({"external_id": format!("cus_{i}"), "name": format!("Customer {i}")}))
            .await;
        assert_eq!(st, 201, "{c}");
        created.push(c["id"].as_str().expect("id").to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/consumers?limit=3".to_owned();
    loop {
        let (st, page) = app.get(&path, &t.root).await;
        assert_eq!(st, 200, "{page}");
        let data = page["data"].as_array().expect("data");
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap_or_default().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/consumers?limit=3&cursor={c}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "newest first, each exactly once");
    let (_, found) = app.get("/v1/consumers?external_id=cus_4", &t.root).await;
    assert_eq!(found["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["data"][0]["name"], "Customer 4");
    let (st, dup) = app.post("/v1/consumers", &t.root, json!({"external_id": "cus_4", "name": "Again"})).await;
    assert_eq!((st, dup["code"].as_str()), (409, Some("conflict")));
}
both_backends!(pagination, lists_paginate_with_cursors);

async fn keys_filter_by_consumer_lineage_and_state(app: TestApp) {
    let t = app.tenant("Acme").await;
    let a = app.make_key(&t, "acme", json!({})).await;
    let b = app.make_key(&t, "acme", json!({})).await;
    app.post(&format!("/v1/keys/{}/revoke", b.key_id), &t.root, json!({"reason": "test"})).await;
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .map(|a| a.iter().filter_map(|k| k["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (_, all) = app.get("/v1/keys", &t.root).await;
    assert_eq!(ids(&all), vec![b.key_id.clone(), a.key_id.clone()]);
    assert!(
        all["data"].as_array().is_some_and(|d| d.iter().all(|k| k.get("secret").is_none() && k.get("hash").is_none()))
    );
    assert!(!all.to_string().contains(&a.secret));
    let (_, valid) = app.get("/v1/keys?state=valid", &t.root).await;
    assert_eq!(ids(&valid), vec![a.key_id.clone()]);
    let (_, revoked) = app.get("/v1/keys?state=revoked", &t.root).await;
    assert_eq!(ids(&revoked), vec![b.key_id.clone()]);
    let (_, mine) = app.get(&format!("/v1/keys?consumer_id={}", a.consumer_id), &t.root).await;
    assert_eq!(ids(&mine), vec![a.key_id.clone()]);
    let (_, lineage) = app.get(&format!("/v1/keys?lineage_id={}", a.key_id), &t.root).await;
    assert_eq!(ids(&lineage), vec![a.key_id.clone()]);
    let (_, by_api) = app.get(&format!("/v1/keys?api_id={}&limit=1", a.api_id), &t.root).await;
    assert_eq!(ids(&by_api).len(), 1);
    assert!(by_api["next_cursor"].is_string());
    let (st, one) = app.get(&format!("/v1/keys/{}", a.key_id), &t.root).await;
    assert_eq!(st, 200);
    assert_eq!(one["start"].as_str().map(str::len), Some(14));
    assert!(a.secret.starts_with(one["start"].as_str().unwrap_or("-")));
    assert_eq!(one["version"], 1);
    assert_eq!(one["state"], "valid");
}
both_backends!(key_filters, keys_filter_by_consumer_lineage_and_state);

async fn idempotency_keys_replay_or_conflict(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let body = json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "name": "retry-safe"});
    let send = |b: Value, key: &'static str| {
        app.client.post(app.url("/v1/keys")).bearer_auth(&t.root).header("idempotency-key", key).json(&b).send()
    };
    let first = send(body.clone(), "idem-1").await.expect("sent");
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.expect("json");
    let again = send(body.clone(), "idem-1").await.expect("sent");
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let again: Value = again.json().await.expect("json");
    assert_eq!(again, first, "the same response, secret included");
    let other =
        send(json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "name": "other"}), "idem-1").await.expect("sent");
    assert_eq!(other.status().as_u16(), 409);
    let (_, list) = app.get(&format!("/v1/keys?consumer_id={}", k.consumer_id), &t.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "one key made by the retried request, plus the first");
    // The stored response does not hold the secret in clear.
    use keyroll::store::entities::idempotency_key;
    use sea_orm::EntityTrait;
    let rows = idempotency_key::Entity::find().all(&app.state.db).await.expect("rows");
    assert!(!rows.is_empty());
    let secret = first["secret"].as_str().expect("secret");
    assert!(rows.iter().all(|r| !r.body.clone().unwrap_or_default().contains(secret)));
    // A failed request frees its key for a corrected retry.
    let bad =
        send(json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "name": ""}), "idem-2").await.expect("sent");
    assert_eq!(bad.status().as_u16(), 400);
    let fixed =
        send(json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "name": "fixed"}), "idem-2").await.expect("sent");
    assert_eq!(fixed.status().as_u16(), 201);
}
both_backends!(idempotency, idempotency_keys_replay_or_conflict);

async fn apis_and_consumers_update_and_delete(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let (st, api) = app.call(reqwest::Method::PATCH, &format!("/v1/apis/{}", k.api_id), &t.root,
        Some(json!({"name": "Orders v2", "scope_catalogue": ["orders:read", "orders:write"], "default_ratelimit": {"limit": 10, "window_seconds": 60}}))).await;
    assert_eq!(st, 200, "{api}");
    assert_eq!(api["name"], "Orders v2");
    assert_eq!(api["default_ratelimit"]["limit"], 10);
    let (st, v) = app
        .post(
            "/v1/keys",
            &t.root,
            json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "scopes": ["billing:read"]}),
        )
        .await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("scopes[0]")), "outside the catalogue");
    let (st, _) = app
        .post(
            "/v1/keys",
            &t.root,
            json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "scopes": ["orders:read", "orders:*"]}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, dup) =
        app.post("/v1/apis", &t.root, json!({"name": "Again", "key_prefix": "acme", "environment": "live"})).await;
    assert_eq!(st, 409, "{dup}");
    let (st, _) =
        app.post("/v1/apis", &t.root, json!({"name": "Root", "key_prefix": "kr", "environment": "live"})).await;
    assert_eq!(st, 400, "kr is reserved");
    let path = format!("/v1/consumers/{}", k.consumer_id);
    let (st, con) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            &t.root,
            Some(json!({"email": "bob@example.test", "meta": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(st, 200, "{con}");
    assert_eq!(con["email"], "bob@example.test");
    let v = app.verify(json!({"key": k.secret})).await;
    assert_eq!(v["consumer"]["meta"]["tier"], "gold", "consumer changes reach the verify answer at once");
    // The external id can be changed too, to one not taken; the verify answer follows.
    let (_, other) = app.post("/v1/consumers", &t.root, json!({"external_id": "cus_taken", "name": "Other"})).await;
    let (st, taken) =
        app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"external_id": other["external_id"]}))).await;
    assert_eq!(st, 409, "{taken}");
    let (st, bad) = app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"external_id": "has space"}))).await;
    assert_eq!(st, 400, "{bad}");
    let (st, moved) = app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"external_id": "cus_new"}))).await;
    assert_eq!((st, moved["external_id"].as_str()), (200, Some("cus_new")), "{moved}");
    let v = app.verify(json!({"key": k.secret})).await;
    assert_eq!(v["consumer"]["external_id"], "cus_new");
    let (st, _) = app.call(reqwest::Method::DELETE, &path, &t.root, None).await;
    assert_eq!(st, 204);
    assert_eq!(app.get(&path, &t.root).await.0, 404);
    assert_eq!(app.verify_code(&k.secret).await, "REVOKED", "deleting a consumer revokes its keys");
    let (_, events) = app.get("/v1/events?type=key.revoked", &t.root).await;
    let announced = events["data"].as_array().is_some_and(|e| {
        e.iter().any(|e| e["data"]["key_id"] == k.key_id.as_str() && e["data"]["reason"] == "consumer deleted")
    });
    assert!(announced, "every revoked key is announced: {events}");
    let (st, _) = app.post("/v1/consumers", &t.root, json!({"external_id": con["external_id"], "name": "Back"})).await;
    assert_eq!(st, 201, "a deleted consumer's external id is free again");
}
both_backends!(updates_and_deletes, apis_and_consumers_update_and_delete);

async fn request_ids_openapi_and_health(app: TestApp) {
    let res = app.client.get(app.url("/healthz")).header("x-request-id", "trace-abc-123").send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-abc-123"));
    let res = app.client.get(app.url("/healthz")).send().await.expect("sent");
    let id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(id.starts_with("req_") && id.len() == 30, "{id}");
    let res = app.client.get(app.url("/nowhere")).header("x-request-id", "r-42").send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 404);
    let body: Value = res.json().await.expect("problem");
    assert_eq!(body["request_id"], "r-42", "the problem body carries the request id");
    let res = app.client.get(app.url("/readyz")).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let ready: Value = res.json().await.expect("json");
    assert_eq!(ready["checks"]["database"], "ok");
    if app.shared.redis_url.is_some() {
        assert_eq!(ready["checks"]["redis"], "ok");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("keyroll_verify_requests_total{code=\"VALID\"}"));
    assert!(metrics.contains("\nkeyroll_jobs_pending ") && metrics.contains("\nkeyroll_outbox_pending "), "{metrics}");
    assert!(metrics.contains("\nkeyroll_outbox_lag_seconds "), "{metrics}");
    assert!(metrics.contains("\nkeyroll_alerts_open 0"), "{metrics}");
    assert!(metrics.contains("keyroll_verify_duration_seconds_bucket{code=\"VALID\",le=\"+Inf\"}"), "{metrics}");
    assert!(metrics.contains("keyroll_verify_duration_seconds_count{code=\"NOT_FOUND\"} "), "{metrics}");
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.expect("sent").json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    let paths: HashSet<String> = doc["paths"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for p in [
        "/v1/verify",
        "/v1/apis",
        "/v1/apis/{id}",
        "/v1/consumers",
        "/v1/consumers/{id}",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/keys/{id}/revoke",
        "/v1/root-keys",
        "/v1/root-keys/{id}/revoke",
        "/v1/playbooks",
        "/v1/playbooks/{id}/runs",
        "/v1/playbook-runs/{id}",
        "/v1/billing/stripe/connection",
        "/v1/gateway/auth",
        "/v1/keys/import",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains(p), "OpenAPI lacks {p}");
    }
    let ops: usize = doc["paths"]
        .as_object()
        .map(|p| p.values().map(|v| v.as_object().map_or(0, serde_json::Map::len)).sum())
        .unwrap_or(0);
    assert_eq!(ops, 94, "every operation is documented");
    let home = app.client.get(app.url("/")).send().await.expect("sent");
    assert_eq!(home.url().path(), "/setup", "a fresh install leads to the first-run form");
    assert!(home.text().await.expect("html").contains("Create the first team"));
}
both_backends!(request_ids, request_ids_openapi_and_health);

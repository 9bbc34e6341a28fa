//! Tenant isolation on every route: another tenant's object is a 404, never a 403.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

async fn another_tenants_objects_do_not_exist(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (_, rk) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["keys:read"]})).await;
    let root_key_id = rk["key"]["id"].as_str().expect("root key id").to_owned();
    let alert_id = {
        use keyroll::domain::anomaly::{AlertKind, Finding};
        let txn = keyroll::store::begin_write(&app.state.db).await.expect("txn");
        let f = Finding { kind: AlertKind::RateSpike, summary: "spike".into(), evidence: json!({}) };
        let tenant = keyroll::domain::TenantId::from_trusted(acme.id.clone());
        let (a, _) = keyroll::alerts::raise(&txn, &tenant, &k.key_id, &f, chrono::Utc::now()).await.expect("alert");
        txn.commit().await.expect("commit");
        a.id
    };
    let cases: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/v1/apis/{}", k.api_id), None),
        (Method::PATCH, format!("/v1/apis/{}", k.api_id), Some(json!({"name": "mine now"}))),
        (Method::GET, format!("/v1/consumers/{}", k.consumer_id), None),
        (Method::PATCH, format!("/v1/consumers/{}", k.consumer_id), Some(json!({"name": "mine now"}))),
        (Method::DELETE, format!("/v1/consumers/{}", k.consumer_id), None),
        (Method::GET, format!("/v1/keys/{}", k.key_id), None),
        (Method::PATCH, format!("/v1/keys/{}", k.key_id), Some(json!({"enabled": false}))),
        (Method::POST, format!("/v1/keys/{}/revoke", k.key_id), Some(json!({"reason": "x"}))),
        (Method::POST, format!("/v1/root-keys/{root_key_id}/revoke"), Some(json!({"reason": "x"}))),
        (Method::POST, "/v1/keys".into(), Some(json!({"api_id": k.api_id, "consumer_id": k.consumer_id}))),
        (Method::GET, format!("/v1/keys/{}/usage", k.key_id), None),
        (Method::GET, format!("/v1/consumers/{}/usage", k.consumer_id), None),
        (Method::GET, format!("/v1/apis/{}/usage", k.api_id), None),
        (Method::GET, format!("/v1/apis/{}/migration", k.api_id), None),
        (Method::GET, format!("/v1/alerts/{alert_id}"), None),
        (Method::POST, format!("/v1/alerts/{alert_id}/acknowledge"), Some(json!({}))),
        (Method::POST, format!("/v1/alerts/{alert_id}/resolve"), Some(json!({}))),
    ];
    for (method, path, body) in cases {
        let (st, v) = app.call(method.clone(), &path, &globex.root, body).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
        assert_eq!(v["code"], "not_found");
    }
    for list in ["/v1/apis", "/v1/consumers", "/v1/keys", "/v1/alerts", "/v1/keys?api_id=".to_owned().as_str()] {
        let path = if list.ends_with('=') { format!("{list}{}", k.api_id) } else { list.to_owned() };
        let (st, v) = app.get(&path, &globex.root).await;
        assert_eq!((st, v["data"].clone()), (200, json!([])), "{path}");
    }
    let (_, roots) = app.get("/v1/root-keys", &globex.root).await;
    assert_eq!(roots["data"].as_array().map(Vec::len), Some(1), "only Globex's own root key");
    let (_, found) = app.get(&format!("/v1/consumers?external_id={}", "cus_"), &globex.root).await;
    assert_eq!(found["data"], json!([]));
    // Nothing changed for Acme.
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    let (st, con) = app.get(&format!("/v1/consumers/{}", k.consumer_id), &acme.root).await;
    assert_eq!((st, con["name"].as_str()), (200, Some("Bob")));
    assert_eq!(app.get("/v1/keys", rk["secret"].as_str().unwrap_or_default()).await.0, 200);
    // Globex may use the same key prefix for its own API.
    let g = app.make_key(&globex, "acme", json!({})).await;
    assert_eq!(app.verify(json!({"key": g.secret, "api_id": k.api_id})).await["code"], "NOT_FOUND");
    assert_eq!(app.verify(json!({"key": g.secret, "api_id": g.api_id})).await["code"], "VALID");
}
both_backends!(cross_tenant, another_tenants_objects_do_not_exist);

//! Rotation policies: the API, advance notices, scheduled rotation, and pickup of the new key.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use keyroll::store::entities::key;
use reqwest::Method;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

async fn policies_are_validated_and_tenant_scoped(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let (st, p) = app
        .post("/v1/policies", &t.root, json!({"api_id": k.api_id, "interval_days": 90, "overlap_seconds": 86400}))
        .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["notice_seconds"], json!([1_209_600, 86_400]));
    assert_eq!((p["max_active"].as_i64(), p["delivery"].as_str()), (Some(2), Some("pickup")));
    let preview: chrono::DateTime<Utc> =
        p["next_rotation_preview"].as_str().and_then(|s| s.parse().ok()).expect("preview");
    assert!((preview - Utc::now() - TimeDelta::days(90)).num_seconds().abs() < 10);
    let (st, _) = app.post("/v1/policies", &t.root, json!({"api_id": k.api_id, "interval_days": 30})).await;
    assert_eq!(st, 409, "one policy per API");
    let (st, o) = app.post("/v1/policies", &t.root, json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "cron": "0 3 * * MON", "window_seconds": 7200, "overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "a consumer override: {o}");
    let field = |v: &Value| v["errors"][0]["field"].as_str().unwrap_or_default().to_owned();
    for (body, expect) in [
        (json!({"api_id": k.api_id, "interval_days": 90, "cron": "* * * * *"}), "interval_days"),
        (json!({"api_id": k.api_id}), "interval_days"),
        (json!({"api_id": k.api_id, "cron": "every monday"}), "cron"),
        (json!({"api_id": k.api_id, "interval_days": 1, "overlap_seconds": 86_400}), "overlap_seconds"),
        (json!({"api_id": k.api_id, "interval_days": 30, "overlap_seconds": 60}), "overlap_seconds"),
        (json!({"api_id": k.api_id, "interval_days": 30, "notice_seconds": [5]}), "notice_seconds[0]"),
        (json!({"api_id": k.api_id, "interval_days": 30, "max_active": 0}), "max_active"),
        (json!({"api_id": k.api_id, "interval_days": 30, "retire_mode": "soon"}), "retire_mode"),
        (json!({"api_id": k.api_id, "interval_days": 30, "delivery": "email"}), "delivery"),
        (json!({"interval_days": 30}), "api_id"),
    ] {
        let (st, v) = app.post("/v1/policies", &t.root, body.clone()).await;
        assert_eq!((st, field(&v)), (400, expect.to_owned()), "{body}: {v}");
    }
    let path = format!("/v1/policies/{}", p["id"].as_str().unwrap_or_default());
    let (st, v) =
        app.call(Method::PATCH, &path, &t.root, Some(json!({"max_active": 3, "retire_mode": "when_drained"}))).await;
    assert_eq!((st, v["max_active"].as_i64(), v["retire_mode"].as_str()), (200, Some(3), Some("when_drained")));
    let (_, list) = app.get("/v1/policies", &t.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    let globex = app.tenant("Globex").await;
    for (m, b) in [(Method::GET, None), (Method::PATCH, Some(json!({"max_active": 1}))), (Method::DELETE, None)] {
        assert_eq!(app.call(m.clone(), &path, &globex.root, b).await.0, 404, "{m}");
    }
    let (st, _) = app.post("/v1/policies", &globex.root, json!({"api_id": k.api_id, "interval_days": 30})).await;
    assert_eq!(st, 404, "another tenant's API");
    assert_eq!(app.get("/v1/policies", &globex.root).await.1["data"], json!([]));
    assert_eq!(app.call(Method::DELETE, &path, &t.root, None).await.0, 204);
    assert_eq!(app.get(&path, &t.root).await.0, 404);
}
both_backends!(policy_api, policies_are_validated_and_tenant_scoped);

pub async fn backdate(app: &TestApp, key_id: &str, days: i64) {
    key::Entity::update_many()
        .col_expr(key::Column::CreatedAt, Expr::value(Utc::now() - TimeDelta::days(days)))
        .filter(key::Column::Id.eq(key_id))
        .exec(&app.state.db)
        .await
        .expect("backdated");
}

async fn events_of(app: &TestApp, root: &str, kind: &str) -> Vec<Value> {
    let (_, ev) = app.get(&format!("/v1/events?type={kind}&limit=100"), root).await;
    ev["data"].as_array().cloned().unwrap_or_default()
}

async fn policies_notify_then_rotate(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let app = spawn_node_with(&shared, dir, &[("jobs.tick_ms", "200"), ("jobs.poll_ms", "50")]).await;
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let other = app.make_key(&t, "acme", json!({})).await;
    let (st, _) = app.post("/v1/policies", &t.root, json!({"api_id": k.api_id, "interval_days": 30, "overlap_seconds": 7200, "notice_seconds": [1_296_000, 86_400]})).await;
    assert_eq!(st, 201);
    // The other consumer has its own, later schedule.
    let (st, _) = app.post("/v1/policies", &t.root, json!({"api_id": k.api_id, "consumer_id": other.consumer_id, "interval_days": 365, "overlap_seconds": 7200})).await;
    assert_eq!(st, 201);
    // 20 days old: the 15-day notice is due, the rotation is not.
    backdate(&app, &k.key_id, 20).await;
    backdate(&app, &other.key_id, 31).await;
    let started = Instant::now();
    while events_of(&app, &t.root, "key.expiring").await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "no key.expiring notice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let notices = events_of(&app, &t.root, "key.expiring").await;
    assert_eq!(notices.len(), 1, "sent once: {notices:?}");
    assert_eq!(notices[0]["data"]["key_id"], k.key_id.as_str());
    assert_eq!(notices[0]["data"]["lead_seconds"], 1_296_000);
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    assert!(app.verify(json!({"key": k.secret})).await["rotation"].is_null(), "not rotated yet");
    // 31 days old: rotated by the policy.
    backdate(&app, &k.key_id, 31).await;
    let started = Instant::now();
    let rotation = loop {
        let (_, list) = app.get("/v1/rotations", &t.root).await;
        if let Some(r) = list["data"].as_array().and_then(|a| a.first()).cloned() {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "policy did not rotate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (rotation["trigger"].as_str(), rotation["from_key_id"].as_str()),
        (Some("policy"), Some(k.key_id.as_str()))
    );
    let v = app.verify(json!({"key": k.secret})).await;
    assert_eq!((v["code"].as_str(), v["rotation"]["state"].as_str()), (Some("VALID"), Some("superseded")));
    assert!(
        app.verify(json!({"key": other.secret})).await["rotation"].is_null(),
        "the override keeps the other consumer"
    );
    // The consumer picks the new key up with its current one, once.
    let pickup = |key: &str| app.client.post(app.url("/v1/self/pickup")).bearer_auth(key.to_owned()).send();
    let res = pickup(&k.secret).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let got: Value = res.json().await.expect("json");
    let new_secret = got["secret"].as_str().expect("secret").to_owned();
    assert_eq!(got["key"]["id"], rotation["to_key_id"]);
    assert_eq!(app.verify_code(&new_secret).await, "VALID");
    assert_eq!(pickup(&k.secret).await.expect("sent").status().as_u16(), 404, "shown once");
    assert_eq!(pickup(&other.secret).await.expect("sent").status().as_u16(), 404, "nothing for another lineage");
    let started_events = events_of(&app, &t.root, "rotation.started").await;
    assert_eq!(started_events.len(), 1);
    assert!(!started_events[0].to_string().contains(&new_secret), "the secret is not in events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_sqlite() {
    policies_notify_then_rotate(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_postgres_redis() {
    policies_notify_then_rotate(Backend::Services).await;
}

//! Bulk rotation: a dry run that counts exactly, then a tracked job that rotates every match.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

async fn bulk_rotation_is_tracked(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let app: TestApp = spawn_node_with(&shared, dir, &[("jobs.poll_ms", "50")]).await;
    let t = app.tenant("Acme").await;
    let mut made = Vec::new();
    for _ in 0..30 {
        made.push(app.make_key(&t, "acme", json!({})).await);
    }
    let api_id = made[0].api_id.clone();
    let untouched = app.make_key(&t, "other", json!({})).await;
    app.post(&format!("/v1/keys/{}/revoke", made[29].key_id), &t.root, json!({"reason": "gone"})).await;
    // One lineage already mid-rotation: its old version ends, its current version rotates.
    let (_, mid) = app.post(&format!("/v1/keys/{}/rotate", made[28].key_id), &t.root, json!({})).await;

    let (st, dry) = app
        .post("/v1/rotations/bulk", &t.root, json!({"api_id": api_id, "overlap_seconds": 3600, "dry_run": true}))
        .await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["keys"].as_u64(), dry["consumer_count"].as_u64()),
        (Some(true), Some(29), Some(29))
    );
    assert!(dry["job_id"].is_null());
    let (_, none) = app.get("/v1/rotations?limit=100", &t.root).await;
    assert_eq!(none["data"].as_array().map(Vec::len), Some(1), "a dry run changes nothing");

    let (st, run) = app
        .post("/v1/rotations/bulk", &t.root, json!({"api_id": api_id, "overlap_seconds": 3600, "compromise": true}))
        .await;
    assert_eq!(st, 202, "{run}");
    let job_id = run["job_id"].as_str().expect("job id").to_owned();
    let started = Instant::now();
    let job: Value = loop {
        let (st, j) = app.get(&format!("/v1/jobs/{job_id}"), &t.root).await;
        assert_eq!(st, 200);
        if j["state"] == "done" {
            break j;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "bulk job stuck: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((job["progress"]["done"].as_u64(), job["progress"]["total"].as_u64()), (Some(29), Some(29)));

    for m in &made[..28] {
        let v = app.verify(json!({"key": m.secret})).await;
        assert_eq!((v["code"].as_str(), v["rotation"]["state"].as_str()), (Some("VALID"), Some("superseded")), "{v}");
    }
    assert_eq!(app.verify_code(&made[29].secret).await, "REVOKED");
    assert_eq!(app.verify_code(&made[28].secret).await, "EXPIRED", "the older version of a busy lineage ended");
    assert_eq!(app.verify(json!({"key": mid["secret"]})).await["rotation"]["state"], "superseded");
    assert!(app.verify(json!({"key": untouched.secret})).await["rotation"].is_null(), "other APIs untouched");
    let (_, list) = app.get("/v1/rotations?state=in_progress&limit=100", &t.root).await;
    let rotations = list["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(rotations.len(), 29);
    assert!(rotations.iter().all(|r| r["compromise"] == true));
    let rid = rotations[0]["id"].as_str().unwrap_or_default();
    assert_eq!(
        app.post(&format!("/v1/rotations/{rid}/rollback"), &t.root, json!({})).await.0,
        409,
        "compromise: no rollback"
    );
    // Consumers pick up their new keys.
    let res =
        app.client.post(app.url("/v1/self/pickup")).bearer_auth(made[0].secret.clone()).send().await.expect("sent");
    let got: Value = res.json().await.expect("json");
    assert_eq!(app.verify_code(got["secret"].as_str().unwrap_or_default()).await, "VALID");
    let (_, events) = app.get("/v1/events?type=rotation.started&limit=100", &t.root).await;
    assert_eq!(events["data"].as_array().map(Vec::len), Some(30), "29 bulk + 1 earlier");
    // The audit log: who started it, and an entry on every key, in the key's own trail.
    let (_, started_by) = app.get("/v1/audit-events?action=rotation.bulk_started", &t.root).await;
    assert_eq!(started_by["data"][0]["data"]["keys"], 29, "{started_by}");
    let (_, about) = app.get(&format!("/v1/audit-events?target_id={}", made[5].key_id), &t.root).await;
    let about = about["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(about.iter().filter_map(|e| e["action"].as_str()).collect::<Vec<_>>(), ["key.rotated", "key.created"]);
    assert!(about[0]["summary"].as_str().unwrap_or_default().ends_with("(bulk rotation)"), "{}", about[0]);
    // Another tenant sees none of it.
    let globex = app.tenant("Globex").await;
    assert_eq!(app.get(&format!("/v1/jobs/{job_id}"), &globex.root).await.0, 404);
    assert_eq!(app.post("/v1/rotations/bulk", &globex.root, json!({"api_id": api_id, "dry_run": true})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_sqlite() {
    bulk_rotation_is_tracked(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_postgres_redis() {
    bulk_rotation_is_tracked(Backend::Services).await;
}

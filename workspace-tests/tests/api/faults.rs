//! Redis goes away: verification keeps answering correctly from L1 (short lifetimes) and the
//! database, revocations still reach every node, and L1 is flushed when Redis comes back.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, Shared, fresh, services, spawn_node};
use crate::redis_faults::{OwnRedis, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_survives_redis_going_away() {
    if services().is_none() {
        return;
    }
    let port = free_port();
    let redis_dir = std::env::temp_dir().join(format!("kr-redis-{}", uuid::Uuid::now_v7().simple()));
    let Some(mut redis) = OwnRedis::start(port, redis_dir.clone(), false) else { return };
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let shared = Shared { redis_url: Some(format!("redis://127.0.0.1:{}", redis.port)), ..shared };
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    let t = a.tenant("Acme").await;
    let k = a.make_key(&t, "acme", json!({})).await;
    let k2 = a.make_key(&t, "acme", json!({})).await;
    for key in [&k.secret, &k2.secret] {
        assert_eq!(b.verify_code(key).await, "VALID");
    }

    redis.kill();
    // Still answering, from L1 and then the database.
    for _ in 0..5 {
        assert_eq!(b.verify_code(&k.secret).await, "VALID");
        assert_eq!(a.verify_code(&k.secret).await, "VALID");
    }
    let ready = b.client.get(b.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status().as_u16(), 503, "readiness names Redis");
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["redis"], "down");
    // A revocation made while Redis is down still reaches the other node (short L1 lifetime).
    let (st, _) = a.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "leak"})).await;
    assert_eq!(st, 200);
    assert_eq!(a.verify_code(&k.secret).await, "REVOKED", "at once on the node that revoked");
    let started = Instant::now();
    while b.verify_code(&k.secret).await != "REVOKED" {
        assert!(started.elapsed() < Duration::from_secs(3), "B kept a revoked key while Redis was down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation reached the other node without Redis after {:?}", started.elapsed());

    // Redis comes back on the same address: the bus resubscribes and flushes L1.
    let _redis = OwnRedis::start(port, redis_dir, false).expect("restart");
    let started = Instant::now();
    loop {
        let metrics = b.client.get(b.url("/metrics")).send().await.expect("sent").text().await.expect("text");
        if metrics.contains("keyroll_redis_up 1") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "bus did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.verify_code(&k2.secret).await, "VALID");
    let (st, _) = a.post(&format!("/v1/keys/{}/revoke", k2.key_id), &t.root, json!({"reason": "leak"})).await;
    assert_eq!(st, 200);
    let started = Instant::now();
    while b.verify_code(&k2.secret).await != "REVOKED" {
        assert!(started.elapsed() < Duration::from_secs(1), "invalidation bus not working after reconnect");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

//! Redis goes away: verification keeps answering correctly from L1 (short lifetimes) and the
//! database, revocations still reach every node, and L1 is flushed when Redis comes back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, Shared, fresh, services, spawn_node};

/// A Redis server of this test's own, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "redis-server cannot be started: {e}"
                );
                eprintln!("skipping the Redis fault test: redis-server cannot be started ({e})");
                return None;
            }
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { port, child: Some(child) })
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(16_379)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_survives_redis_going_away() {
    if services().is_none() {
        return;
    }
    let port = free_port();
    let Some(mut redis) = OwnRedis::start(port) else { return };
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

    redis.stop();
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
    let _redis = OwnRedis::start(port).expect("restart");
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

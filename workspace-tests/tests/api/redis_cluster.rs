//! Redis Cluster: three masters and three replicas of the test's own (`redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`), two nodes with
//! `KEYROLL_REDIS__CLUSTER=true` and the six seed addresses. Records spread over the masters,
//! the scripts (fills, rate limits, credits) run on the slot of their keys, the invalidation bus
//! carries revocations between the nodes, and when a master is killed and its replica takes
//! over, no revoked key is answered `VALID` past the bound and no verification fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, Made, Shared, TestApp, fresh, spawn_node_with};
use crate::redis_faults::{BOUND, FAULT_TESTS, free_port, verifier};

struct OwnCluster {
    dir: PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl OwnCluster {
    fn start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("kr-cluster-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf"), "--dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match child {
                Ok(c) => nodes.push((port, Some(c))),
                Err(e) => {
                    assert!(!crate::helpers::require_services(), "redis-server cannot be started: {e}");
                    eprintln!("skipping the Redis Cluster test: redis-server cannot be started ({e})");
                    return None;
                }
            }
        }
        let cluster = Self { dir, nodes };
        let started = Instant::now();
        for (port, _) in &cluster.nodes {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(started.elapsed() < Duration::from_secs(30), "redis-server did not come up");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|(p, _)| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_ok(&cluster.ports());
        // A replica takes over only once it has synced with its master.
        let started = Instant::now();
        loop {
            let synced = cluster.ports().iter().all(|p| {
                let info = cli(*p, &["info", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            if synced {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the replicas did not sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(cluster)
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|(_, c)| c.is_some()).map(|(p, _)| *p).collect()
    }

    fn url(&self) -> String {
        self.nodes.iter().map(|(p, _)| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Every live node says the cluster is whole, and every slot has a live master.
    fn wait_ok(&self, ports: &[u16]) {
        let started = Instant::now();
        loop {
            let ok = ports.iter().all(|p| cli(*p, &["cluster", "info"]).contains("cluster_state:ok"));
            if ok && self.masters().len() == 3 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the cluster did not become whole: {}\n{}",
                cli(ports[0], &["cluster", "info"]),
                cli(ports[0], &["cluster", "nodes"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The live masters, as a live node sees them.
    fn masters(&self) -> Vec<u16> {
        let Some(port) = self.ports().first().copied() else { return Vec::new() };
        cli(port, &["cluster", "nodes"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let flags = f.get(2)?;
                (flags.contains("master") && !flags.contains("fail")).then_some(())?;
                f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    fn kill(&mut self, port: u16) {
        for (p, child) in &mut self.nodes {
            if *p == port
                && let Some(mut c) = child.take()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Verifications of a fresh key alternating between the nodes, until one answers `code`.
async fn codes(a: &TestApp, b: &TestApp, secret: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let node = if i % 2 == 0 { a } else { b };
        out.push(node.verify(json!({"key": secret})).await["code"].as_str().unwrap_or_default().to_owned());
    }
    out
}

async fn wait_trusted(nodes: &[&TestApp]) {
    let started = Instant::now();
    while nodes.iter().any(|n| n.state.cache.live_l2().is_none()) {
        assert!(started.elapsed() < Duration::from_secs(30), "Redis is not used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)]
async fn a_cluster_serves_and_survives_a_failover() {
    let Some((shared, data)) = fresh(Backend::Services).await else { return };
    let _alone = FAULT_TESTS.lock().await;
    let Some(mut cluster) = OwnCluster::start() else { return };
    let shared = Shared { redis_url: Some(cluster.url()), ..shared };
    let on_cluster: &[(&str, &str)] = &[("redis.cluster", "true")];
    let a = spawn_node_with(&shared, data, on_cluster).await;
    let b = spawn_node_with(&shared, None, on_cluster).await;
    wait_trusted(&[&a, &b]).await;
    let t = a.tenant("Acme").await;
    let mut made: Vec<Made> = Vec::new();
    for _ in 0..8 {
        made.push(a.make_key(&t, "acme", json!({})).await);
    }
    for m in &made {
        assert_eq!(a.verify_code(&m.secret).await, "VALID");
        assert_eq!(b.verify_code(&m.secret).await, "VALID");
    }
    // The records went to more than one master: the slots of their hash tags.
    let holding = cluster.masters().iter().filter(|p| cli(**p, &["dbsize"]).trim() != "0").count();
    assert!(holding >= 2, "records on {holding} master(s)");

    // Scripts on the cluster: a shared rate limit and a shared balance stay exact.
    let limited = a.make_key(&t, "acme", json!({"ratelimit": {"limit": 5, "window_seconds": 60}})).await;
    crate::helpers::clear_of_window_end(60).await;
    let got = codes(&a, &b, &limited.secret, 12).await;
    assert_eq!(got.iter().filter(|c| *c == "VALID").count(), 5, "{got:?}");
    let credited = a.make_key(&t, "acme", json!({"credits": {"remaining": 7}})).await;
    let got = codes(&a, &b, &credited.secret, 12).await;
    assert_eq!(got.iter().filter(|c| *c == "VALID").count(), 7, "{got:?}");

    // The bus: a revocation on A reaches B at once.
    let first = made.remove(0);
    assert_eq!(b.verify_code(&first.secret).await, "VALID");
    let (st, _) = a.post(&format!("/v1/keys/{}/revoke", first.key_id), &t.root, json!({"reason": "leak"})).await;
    assert_eq!(st, 200);
    let revoked_at = Instant::now();
    while b.verify_code(&first.secret).await != "REVOKED" {
        assert!(revoked_at.elapsed() < BOUND, "B still answers VALID");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let propagation = revoked_at.elapsed();

    // A master dies while keys are revoked and both nodes are verified without pause.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let secrets: Vec<String> = made.iter().map(|m| m.secret.clone()).collect();
    let (va, vb) = (verifier(&a, 0, secrets.clone(), t0, stop.clone()), verifier(&b, 1, secrets, t0, stop.clone()));
    let masters = cluster.masters();
    let victim = masters[0];
    let driver = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.kill(victim);
        let mut revoked = Vec::new();
        for m in &made {
            let at = t0.elapsed();
            let (st, body) = a.post(&format!("/v1/keys/{}/revoke", m.key_id), &t.root, json!({"reason": "leak"})).await;
            assert_eq!(st, 200, "{body}");
            revoked.push(at);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // The replica takes over.
        let live = cluster.ports();
        tokio::task::block_in_place(|| cluster.wait_ok(&live));
        let failed_over = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Release);
        (revoked, failed_over)
    };
    let ((revoked, failed_over), (sa, ea), (sb, eb)) = tokio::join!(driver, va, vb);
    let (mut checked, mut valid_after, mut past_bound, mut worst) = (0, 0, 0, Duration::ZERO);
    for s in sa.iter().chain(&sb) {
        checked += 1;
        let Some(at) = revoked.get(s.key).copied() else { continue };
        if s.valid && s.at > at {
            valid_after += 1;
            worst = worst.max(s.at - at);
            if s.at > at + BOUND {
                past_bound += 1;
                eprintln!("node {} answered VALID for key {} {:?} after its revocation", s.node, s.key, s.at - at);
            }
        }
    }
    eprintln!(
        "cluster failover: master on {victim} killed at 0.3 s, cluster whole again at {failed_over:?}; {checked} \
         verifications, {} errors, {valid_after} VALID after a revocation (worst {worst:?}), {past_bound} past the \
         bound; bus propagation before the fault {propagation:?}",
        ea + eb
    );
    assert!(checked > 100, "the verifiers ran");
    assert_eq!((past_bound, ea + eb), (0, 0), "a revoked key past {BOUND:?}, or failed verifications");

    // After the failover, Redis is used again and still exact.
    wait_trusted(&[&a, &b]).await;
    let fresh_key = a.make_key(&t, "acme", json!({"ratelimit": {"limit": 3, "window_seconds": 60}})).await;
    let got = codes(&a, &b, &fresh_key.secret, 8).await;
    assert_eq!(got.iter().filter(|c| *c == "VALID").count(), 3, "{got:?}");
    let (st, _) = b.post(&format!("/v1/keys/{}/revoke", fresh_key.key_id), &t.root, json!({"reason": "leak"})).await;
    assert_eq!(st, 200);
    let revoked_at = Instant::now();
    while a.verify_code(&fresh_key.secret).await != "REVOKED" {
        assert!(revoked_at.elapsed() < BOUND, "A still answers VALID after the failover");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

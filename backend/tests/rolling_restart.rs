//! Three nodes behind real nginx (`deploy/nginx/keyroll-lb.conf`) on PostgreSQL and Redis, each
//! restarted in turn (SIGTERM, start again) under steady verification traffic and management
//! writes: no verification fails or answers wrong, the usage totals equal the verifications
//! sent, and the bulk-rotation jobs started across the restarts each finish once. Then one node
//! is killed (SIGKILL) under the same load: what is lost at most is that node's last flush
//! interval of usage counts. Through the same nginx, a client's forged `X-Forwarded-For` is not
//! believed.
//!
//! Needs `KEYROLL_TEST_DATABASE_URL`, `KEYROLL_TEST_REDIS_URL` and nginx; skipped (saying why)
//! without them, unless `KEYROLL_TEST_REQUIRE_SERVICES=1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// How often the nodes write their usage counts (what a SIGKILL loses at most).
const FLUSH_MS: u64 = 1_000;
const TRAFFIC_KEYS: usize = 12;
const JOB_KEYS: usize = 2_000;

fn require() -> bool {
    std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn skip(why: &str) -> Option<()> {
    assert!(!require(), "the rolling-restart test needs {why}");
    eprintln!("skipping the rolling-restart test: {why}");
    None
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("keyroll-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn keyroll(env: &[(String, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyroll"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// One node: a process started again on the same port.
struct Node {
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    fn new(env: &[(String, String)]) -> Self {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("KEYROLL_LISTEN".into(), format!("127.0.0.1:{port}")));
        Self { port, env, child: None }
    }

    async fn start(&mut self, http: &reqwest::Client, logs: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("node-{}.log", self.port)))
            .expect("a log file");
        let child =
            keyroll(&self.env).stdout(log.try_clone().expect("log")).stderr(log).spawn().expect("keyroll starts");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let ready = http.get(format!("http://127.0.0.1:{}/readyz", self.port)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "node on {} did not become ready", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        assert!(Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success()));
    }

    async fn stopped(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(code) = self.child.as_mut().expect("running").try_wait().expect("waited") {
                self.child = None;
                return code;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "node on {} did not stop", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx with the shipped load-balancer configuration, its node names replaced by the ports.
fn nginx(bin: &Path, nodes: &[u16], port: u16) -> Nginx {
    let dir = temp_dir("lb");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nginx/keyroll-lb.conf"))
        .expect("deploy/nginx/keyroll-lb.conf");
    assert!(shipped.contains("listen 8080;"), "the shipped configuration changed");
    let mut site = shipped.replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    for (i, p) in nodes.iter().enumerate() {
        let name = format!("keyroll-{}:8080", i + 1);
        assert!(site.contains(&name), "{name} in the shipped configuration");
        site = site.replace(&name, &format!("127.0.0.1:{p}"));
    }
    std::fs::write(dir.join("lb.conf"), site).expect("lb.conf");
    let d = dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/lb.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");
    let child = Command::new(bin)
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "nginx did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, dir }
}

/// The management API through nginx.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    root: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.root);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("sent through nginx");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (st, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&st), "{path}: {st} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (st, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(st, 200, "{path}: {v}");
        v
    }

    async fn key(&self, api_id: &str, consumer_id: &str) -> (String, String) {
        let k = self.post("/v1/keys", json!({"api_id": api_id, "consumer_id": consumer_id})).await;
        (k["key"]["id"].as_str().expect("key id").to_owned(), k["secret"].as_str().expect("secret").to_owned())
    }
}

/// What the traffic saw.
#[derive(Default)]
struct Seen {
    /// Answered `VALID`, per API.
    valid: Mutex<HashMap<String, u64>>,
    /// No answer, a status other than 200, or a wrong code.
    failures: Mutex<Vec<String>>,
    writes: AtomicU64,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failures.lock().expect("lock").push(what);
    }
}

/// Verifies the keys in turn until stopped; a revoked key must stay `REVOKED`.
async fn verifier(
    api: Api,
    keys: Arc<Vec<(String, String)>>,
    revoked: String,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    n: usize,
) {
    let mut i = n;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (key, api_id, want) = if i.is_multiple_of(25) {
            (revoked.as_str(), "", "REVOKED")
        } else {
            let (secret, api_id) = &keys[i % keys.len()];
            (secret.as_str(), api_id.as_str(), "VALID")
        };
        match api.http.post(format!("{}/v1/verify", api.base)).json(&json!({"key": key})).send().await {
            Ok(res) if res.status() == 200 => match res.json::<Value>().await {
                Ok(v) if v["code"] == want => {
                    if want == "VALID" {
                        *seen.valid.lock().expect("lock").entry(api_id.to_owned()).or_default() += 1;
                    }
                }
                Ok(v) => seen.fail(format!("wanted {want}, got {v}")),
                Err(e) => seen.fail(format!("unreadable answer: {e}")),
            },
            Ok(res) => seen.fail(format!("status {}", res.status())),
            Err(e) => seen.fail(format!("no answer: {e}")),
        }
    }
}

/// Six verifiers over the keys, each from its own place in the list.
fn verifiers(
    api: &Api,
    keys: &Arc<Vec<(String, String)>>,
    revoked: &str,
    seen: &Arc<Seen>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..6)
        .map(|n| {
            let task = verifier(api.clone(), keys.clone(), revoked.to_owned(), seen.clone(), stop.clone(), n * 7);
            tokio::spawn(task)
        })
        .collect()
}

/// Management writes until stopped: a consumer and a key, then the new key verified at once.
async fn writer(api: Api, api_id: String, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let body = json!({"external_id": format!("w_{}", uuid::Uuid::now_v7().simple()), "name": "W"});
        let (st, c) = api.call(reqwest::Method::POST, "/v1/consumers", Some(body)).await;
        if st != 201 {
            seen.fail(format!("consumer create: {st} {c}"));
            continue;
        }
        let body = json!({"api_id": api_id, "consumer_id": c["id"]});
        let (st, k) = api.call(reqwest::Method::POST, "/v1/keys", Some(body)).await;
        if st != 201 {
            seen.fail(format!("key create: {st} {k}"));
            continue;
        }
        let res = api.http.post(format!("{}/v1/verify", api.base)).json(&json!({"key": k["secret"]})).send().await;
        match res {
            Ok(r) if r.status() == 200 => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["code"] == "VALID" {
                    *seen.valid.lock().expect("lock").entry(api_id.clone()).or_default() += 1;
                } else {
                    seen.fail(format!("a new key verified as {v}"));
                }
            }
            Ok(r) => seen.fail(format!("new key verify: status {}", r.status())),
            Err(e) => seen.fail(format!("new key verify: {e}")),
        }
        seen.writes.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn usage_valid(api: &Api, api_id: &str) -> u64 {
    api.get(&format!("/v1/apis/{api_id}/usage?granularity=minute")).await["totals"]["VALID"].as_u64().unwrap_or(0)
}

/// Imports `n` keys into a new API, for a bulk rotation to work on.
async fn job_api(api: &Api, name: &str, n: usize) -> String {
    let a = api.post("/v1/apis", json!({"name": name, "key_prefix": name, "environment": "live"})).await;
    let api_id = a["id"].as_str().expect("api id").to_owned();
    let (st, _) = api
        .call(reqwest::Method::PATCH, &format!("/v1/apis/{api_id}"), Some(json!({"legacy_key_formats": true})))
        .await;
    assert_eq!(st, 200);
    let keys: Vec<Value> = (0..n)
        .map(|i| {
            json!({"plaintext": format!("legacy_{name}_{i:06}_{}", uuid::Uuid::now_v7().simple()),
                   "api_id": api_id, "external_id": format!("{name}_{}", i % 50)})
        })
        .collect();
    let report = api.post("/v1/keys/import", json!({"import_id": format!("jobs-{name}"), "keys": keys})).await;
    assert_eq!(report["imported"].as_u64(), u64::try_from(n).ok(), "{}", report["errors"][0]);
    api_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn rolling_restart_under_load_loses_nothing() {
    let (Ok(pg), Ok(redis)) = (std::env::var("KEYROLL_TEST_DATABASE_URL"), std::env::var("KEYROLL_TEST_REDIS_URL"))
    else {
        skip("KEYROLL_TEST_DATABASE_URL and KEYROLL_TEST_REDIS_URL");
        return;
    };
    let Some(nginx_bin) = find_nginx() else {
        skip("nginx (apt-get install nginx)");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = format!("kr_roll_{}", uuid::Uuid::now_v7().simple());
    let admin = Database::connect(pg.as_str()).await.expect("PostgreSQL");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("a test database");
    let (base, _) = pg.rsplit_once('/').expect("a database URL");
    let database_url = format!("{base}/{name}");
    let data = temp_dir("roll");
    let env: Vec<(String, String)> = [
        ("KEYROLL_DATABASE_URL", database_url.as_str()),
        ("KEYROLL_REDIS_URL", redis.as_str()),
        ("KEYROLL_REDIS_PREFIX", &format!("{name}:")),
        ("KEYROLL_MASTER_KEY", "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="),
        ("KEYROLL_DATA_DIR", &data.display().to_string()),
        // The shipped default: longer than nginx's idle keep-alive (4 s in the shipped
        // configuration), so nginx holds no idle connection to a node when it stops.
        ("KEYROLL_DRAIN_SECONDS", "5"),
        ("KEYROLL_MIGRATE_ON_START", "false"),
        ("KEYROLL_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("KEYROLL_USAGE_FLUSH_INTERVAL_MS", &FLUSH_MS.to_string()),
        ("KEYROLL_DATABASE_MAX_CONNECTIONS", "8"),
        ("KEYROLL_WORKERS", "2"),
        ("KEYROLL_JOBS__POLL_MS", "100"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // Migrated once, before any node starts (the nodes refuse a schema that is behind).
    let out = keyroll(&env).arg("migrate").output().expect("keyroll migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = keyroll(&env)
        .args(["tenant", "create", "--name", "Acme", "--owner-email", "ops@acme.test", "--json"])
        .output()
        .expect("tenant create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tenant: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let root = tenant["root_key"].as_str().expect("root key").to_owned();

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::new(&env)).collect();
    for n in &mut nodes {
        n.start(&http, &data).await;
    }
    let lb_port = free_port();
    let _lb = nginx(&nginx_bin, &nodes.iter().map(|n| n.port).collect::<Vec<_>>(), lb_port);
    let api = Api { http: http.clone(), base: format!("http://127.0.0.1:{lb_port}"), root };

    // Traffic keys on two APIs: one for the rolling restart, one for the SIGKILL.
    let mut keys = Vec::new();
    let mut apis = Vec::new();
    for name in ["roll", "kill"] {
        let a = api.post("/v1/apis", json!({"name": name, "key_prefix": name, "environment": "live"})).await;
        let api_id = a["id"].as_str().expect("api id").to_owned();
        let c = api.post("/v1/consumers", json!({"external_id": format!("{name}_c"), "name": "C"})).await;
        let consumer = c["id"].as_str().expect("consumer").to_owned();
        let mut list = Vec::new();
        for _ in 0..TRAFFIC_KEYS {
            list.push((api.key(&api_id, &consumer).await.1, api_id.clone()));
        }
        keys.push(Arc::new(list));
        apis.push((api_id, consumer));
    }
    let (revoked_id, revoked) = api.key(&apis[0].0, &apis[0].1).await;
    api.post(&format!("/v1/keys/{revoked_id}/revoke"), json!({"reason": "test"})).await;
    let job_apis = [
        job_api(&api, "jobone", JOB_KEYS).await,
        job_api(&api, "jobtwo", JOB_KEYS).await,
        job_api(&api, "jobthree", JOB_KEYS).await,
    ];

    // The forged client address is not believed through nginx: the node trusts nginx only, and
    // takes the address nginx saw (the client's own, 127.0.0.5).
    let from_elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 5]))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let res = from_elsewhere
        .post(format!("{}/v1/consumers", api.base))
        .bearer_auth(&api.root)
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"external_id": "behind_nginx", "name": "Proxied"}))
        .send()
        .await
        .expect("sent from 127.0.0.5");
    assert_eq!(res.status(), 201);
    let audit = api.get("/v1/audit-events?action=consumer.created&limit=5").await;
    let entry = audit["data"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["summary"].as_str().is_some_and(|s| s.contains("(behind_nginx)"))))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(entry["ip"], "127.0.0.5", "{audit}");

    // Phase 1: rolling restart under load.
    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let mut load = verifiers(&api, &keys[0], &revoked, &seen, &stop);
    load.push(tokio::spawn(writer(api.clone(), apis[0].0.clone(), seen.clone(), stop.clone())));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut jobs = Vec::new();
    let rolled = Instant::now();
    for (i, job_api_id) in job_apis.iter().enumerate() {
        let run = api.post("/v1/rotations/bulk", json!({"api_id": job_api_id, "overlap_seconds": 3600})).await;
        jobs.push(run["job_id"].as_str().expect("job id").to_owned());
        let node = &mut nodes[i];
        node.signal("-TERM");
        let code = node.stopped().await;
        assert!(code.success(), "node {i} exit {code:?}");
        node.start(&http, &data).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let roll_seconds = rolled.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let failures = seen.failures.lock().expect("lock").clone();
    let sent = seen.valid.lock().expect("lock").get(&apis[0].0).copied().unwrap_or(0);
    let writes = seen.writes.load(Ordering::Relaxed);
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(10)]);
    assert!(sent > 500 && writes > 10, "too little traffic to tell: {sent} verifications, {writes} writes");

    // Every node flushes at its stop and every FLUSH_MS: the totals equal what was answered.
    let started = Instant::now();
    let counted = loop {
        let counted = usage_valid(&api, &apis[0].0).await;
        if counted >= sent || started.elapsed() > Duration::from_millis(FLUSH_MS * 5) {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(counted, sent, "usage totals against VALID answers");

    // Each bulk rotation finished, once: every imported key has exactly one successor.
    for (job_id, job_api_id) in jobs.iter().zip(&job_apis) {
        let started = Instant::now();
        let job = loop {
            let j = api.get(&format!("/v1/jobs/{job_id}")).await;
            if j["state"] == "done" || j["state"] == "failed" {
                break j;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "job stuck: {j}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["progress"]["done"].as_u64(), u64::try_from(JOB_KEYS).ok(), "{job}");
        let db = Database::connect(database_url.as_str()).await.expect("the test database");
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!(
                    "SELECT COUNT(*) AS keys, COUNT(DISTINCT lineage_id) AS lineages, MAX(version) AS top \
                     FROM keys WHERE api_id = '{job_api_id}'"
                ),
            ))
            .await
            .expect("count")
            .expect("a row");
        let (n, lineages, top): (i64, i64, i32) = (
            row.try_get("", "keys").expect("keys"),
            row.try_get("", "lineages").expect("l"),
            row.try_get("", "top").expect("v"),
        );
        let want = i64::try_from(JOB_KEYS).expect("small");
        assert_eq!((n, lineages, top), (2 * want, want, 2), "each key rotated exactly once");
    }
    println!(
        "rolling restart of 3 nodes in {roll_seconds:.1} s: {sent} verifications answered VALID (0 failed, 0 wrong), \
         {writes} key creations, usage counted {counted}, {} bulk-rotation jobs of {JOB_KEYS} keys done once",
        jobs.len()
    );

    // Phase 2: one node killed under load. nginx sends what the dead node refused (and, for
    // verify, what it held) to the others; its unflushed counts are lost with it.
    let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
    let load = verifiers(&api, &keys[1], &revoked, &seen, &stop);
    let phase = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    nodes[1].signal("-KILL");
    let code = nodes[1].stopped().await;
    assert!(!code.success(), "killed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes[1].start(&http, &data).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("load task");
    }
    let phase_ms = u64::try_from(phase.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
    let failures = seen.failures.lock().expect("lock").clone();
    let sent = seen.valid.lock().expect("lock").get(&apis[1].0).copied().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(FLUSH_MS * 3)).await;
    let counted = usage_valid(&api, &apis[1].0).await;
    let lost = sent.saturating_sub(counted);
    println!(
        "SIGKILL of one node under load: {sent} verifications answered VALID, {} failed, usage counted {counted} \
         (lost {lost}, at most the dead node's last {FLUSH_MS} ms)",
        failures.len()
    );
    assert!(failures.is_empty(), "nginx retried what the dead node held: {failures:?}");
    assert!(counted <= sent, "nothing counted twice: {counted} of {sent}");
    // At most what one node of three answers in one flush interval (at the phase's mean rate;
    // doubled, for a node that answered faster than the others).
    let one_flush_of_one_node = sent * FLUSH_MS / phase_ms / 3;
    assert!(
        lost <= one_flush_of_one_node * 2,
        "lost {lost} of {sent}, one node's flush interval {one_flush_of_one_node}"
    );

    for n in &mut nodes {
        n.signal("-TERM");
        assert!(n.stopped().await.success());
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

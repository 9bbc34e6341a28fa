//! Real nginx (`auth_request`) and real Caddy (`forward_auth`) in front of a small upstream,
//! each with the ready-made configuration of `deploy/`, asking a Keyroll node about every
//! request: a valid key passes with the `X-Keyroll-*` headers for the upstream (forged ones
//! dropped), a wrong key gets 401, a missing scope 403, a rate-limited key 429 with
//! `Retry-After`; during a rotation both versions pass, the old one with `Deprecation` and
//! `Sunset`, and after it only the new one; a revoked key is refused at once.

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Tenant, TestApp, spawn_app};

/// A child process, stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tool, or why not (a failure with `KEYROLL_TEST_REQUIRE_SERVICES=1`).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "{name} is required (apt-get install {name})"
        );
        eprintln!("skipping the {name} gateway test: {name} not found (apt-get install {name})");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyroll-{name}-{}", crate::helpers::unique()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn upstream() -> (Running, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/echo_upstream.py");
    let mut child = Command::new("python3").arg(script).stdout(Stdio::piped()).spawn().expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its port");
    (Running(child), format!("127.0.0.1:{}", line.trim()))
}

/// The deploy file with its placeholders filled in.
fn deploy_file(path: &str, keyroll: &str, upstream: &str, listen: (&str, &str), api_id: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).expect(path);
    for placeholder in ["127.0.0.1:8080", "127.0.0.1:9000", listen.0, "api_REPLACE_ME"] {
        assert!(text.contains(placeholder), "{path} names {placeholder}");
    }
    text.replace("127.0.0.1:8080", keyroll)
        .replace("127.0.0.1:9000", upstream)
        .replace(listen.0, listen.1)
        .replace("api_REPLACE_ME", api_id)
}

async fn wait_for(port: u16, what: &str, log: &Path) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not start: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn nginx(bin: &Path, keyroll: &str, upstream: &str, api_id: &str) -> (Running, u16, PathBuf) {
    let dir = temp_dir("nginx");
    let port = free_port();
    let site = deploy_file(
        "deploy/nginx/keyroll-gateway.conf",
        keyroll,
        upstream,
        ("listen 8088;", &format!("listen 127.0.0.1:{port};")),
        api_id,
    );
    std::fs::write(dir.join("keyroll-gateway.conf"), site).expect("site");
    let d = dir.display();
    let main = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/keyroll-gateway.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");
    let child = Command::new(bin)
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs");
    (Running(child), port, dir.join("error.log"))
}

fn caddy(bin: &Path, keyroll: &str, upstream: &str, api_id: &str) -> (Running, u16, PathBuf) {
    let dir = temp_dir("caddy");
    let port = free_port();
    let site = deploy_file(
        "deploy/caddy/Caddyfile",
        keyroll,
        upstream,
        (":8089 {", &format!("http://127.0.0.1:{port} {{")),
        api_id,
    );
    let global = "{\n\tadmin off\n\tauto_https off\n}\n\n";
    std::fs::write(dir.join("Caddyfile"), format!("{global}{site}")).expect("Caddyfile");
    let log = dir.join("caddy.log");
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("caddy runs");
    (Running(child), port, log)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn call(base: &str, method: reqwest::Method, path: &str, key: Option<&str>) -> Answer {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{base}{path}")).header("x-keyroll-key-id", "key_forged");
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.expect("the gateway answers");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

/// One gateway's tour: every verdict a caller can meet.
async fn tour(app: &TestApp, t: &Tenant, api_id: &str, base: &str, gateway: &str) {
    let get = reqwest::Method::GET;
    let key = |extra: Value| async move {
        let (st, k) = app.post("/v1/keys", &t.root, extra).await;
        assert_eq!(st, 201, "{k}");
        (k["key"]["id"].as_str().expect("id").to_owned(), k["secret"].as_str().expect("secret").to_owned())
    };
    let (_, con) = app.get("/v1/consumers?limit=1", &t.root).await;
    let consumer = con["data"][0]["id"].as_str().expect("a consumer").to_owned();
    let base_key = json!({"api_id": api_id, "consumer_id": consumer, "scopes": ["orders:read"]});
    let (id, secret) = key(base_key.clone()).await;

    let ok = call(base, get.clone(), "/orders/7?x=1", Some(&secret)).await;
    assert_eq!(ok.status, 200, "{gateway}: {}", ok.body);
    let seen = &ok.body["headers"];
    assert_eq!(seen["x-keyroll-key-id"], id.as_str(), "{gateway} passes the verdict on, not the forged header");
    assert_eq!(seen["x-keyroll-consumer-id"], consumer.as_str(), "{gateway}: {seen}");
    assert_eq!(seen["x-keyroll-scopes"], "orders:read", "{gateway}: {seen}");
    assert_eq!(ok.body["path"], "/orders/7?x=1");
    assert!(ok.headers.get("deprecation").is_none(), "{gateway}: {:?}", ok.headers);

    let wrong =
        call(base, get.clone(), "/orders", Some("acme_live_0000000000000000000000000000000000000000000000")).await;
    assert_eq!(wrong.status, 401, "{gateway}");
    assert!(wrong.header("www-authenticate").contains("invalid_token"), "{gateway}: {:?}", wrong.headers);
    assert_eq!(call(base, get.clone(), "/orders", None).await.status, 401, "{gateway}: no key");
    let scope = call(base, reqwest::Method::POST, "/orders", Some(&secret)).await;
    assert_eq!(scope.status, 403, "{gateway}: POST /orders needs orders:write");

    let mut limited = base_key.clone();
    limited["ratelimit"] = json!({"limit": 1, "window_seconds": 60});
    let (_, limited) = key(limited).await;
    crate::helpers::clear_of_window_end(60).await;
    assert_eq!(call(base, get.clone(), "/orders", Some(&limited)).await.status, 200, "{gateway}");
    let over = call(base, get.clone(), "/orders", Some(&limited)).await;
    assert_eq!(over.status, 429, "{gateway}");
    let wait: u64 = over.header("retry-after").parse().unwrap_or(0);
    assert!((1..=60).contains(&wait), "{gateway}: Retry-After {:?}", over.headers);

    // A rotation: both versions pass during the overlap, the old one told when it ends.
    let (st, r) = app.post(&format!("/v1/keys/{id}/rotate"), &t.root, json!({"overlap_seconds": 600})).await;
    assert_eq!(st, 201, "{r}");
    let new = r["secret"].as_str().expect("secret").to_owned();
    let rotation = r["rotation"]["id"].as_str().expect("rotation").to_owned();
    let old = call(base, get.clone(), "/orders", Some(&secret)).await;
    assert_eq!(old.status, 200, "{gateway}");
    assert!(old.header("deprecation").starts_with('@'), "{gateway}: {:?}", old.headers);
    assert!(old.header("sunset").ends_with("GMT"), "{gateway}: {:?}", old.headers);
    let fresh = call(base, get.clone(), "/orders", Some(&new)).await;
    assert_eq!(fresh.status, 200, "{gateway}");
    assert!(fresh.headers.get("sunset").is_none(), "{gateway}: {:?}", fresh.headers);
    let (st, done) = app.post(&format!("/v1/rotations/{rotation}/complete"), &t.root, json!({})).await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(call(base, get.clone(), "/orders", Some(&secret)).await.status, 401, "{gateway}: old refused after");
    assert_eq!(call(base, get.clone(), "/orders", Some(&new)).await.status, 200, "{gateway}: new goes on");
    let new_id = r["key"]["id"].as_str().expect("new id");
    let (st, _) = app.post(&format!("/v1/keys/{new_id}/revoke"), &t.root, json!({"reason": "leaked"})).await;
    assert_eq!(st, 200);
    assert_eq!(call(base, get, "/orders", Some(&new)).await.status, 401, "{gateway}: revoked at once");
}

async fn protected_api(app: &TestApp) -> (Tenant, String) {
    let t = app.tenant("Acme").await;
    let made = app.make_key(&t, "acme", json!({})).await;
    let rules = json!({"gateway": {"routes": [
        {"method": "GET", "path_prefix": "/orders", "scopes": ["orders:read"]},
        {"method": "POST", "path_prefix": "/orders", "scopes": ["orders:write"]}
    ]}});
    let (st, api) = app.call(reqwest::Method::PATCH, &format!("/v1/apis/{}", made.api_id), &t.root, Some(rules)).await;
    assert_eq!(st, 200, "{api}");
    (t, made.api_id)
}

type Start = fn(&Path, &str, &str, &str) -> (Running, u16, PathBuf);

/// The tour through one gateway, started from its deploy file in front of the echo upstream.
async fn through(name: &str, start: Start) {
    let Some(bin) = tool(name) else { return };
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let (t, api_id) = protected_api(&app).await;
    let (_up, up) = upstream();
    let keyroll = app.address.trim_start_matches("http://").to_owned();
    let (_gateway, port, log) = start(&bin, &keyroll, &up, &api_id);
    wait_for(port, name, &log).await;
    tour(&app, &t, &api_id, &format!("http://127.0.0.1:{port}"), name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_front_of_an_api() {
    through("nginx", nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_in_front_of_an_api() {
    through("caddy", caddy).await;
}

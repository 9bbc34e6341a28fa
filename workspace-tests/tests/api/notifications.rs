//! Rotation events reach a real webhook receiver (signature checked with an independent HMAC)
//! and a real SMTP server, with retries and a delivery log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many calls first.
    fail_first: Arc<Mutex<u32>>,
}

async fn receive(req: HttpRequest, body: web::Bytes, r: web::Data<Receiver>) -> HttpResponse {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let rec = Received {
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signature: h("webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    r.got.lock().expect("lock").push(rec);
    let mut fail = r.fail_first.lock().expect("lock");
    if *fail > 0 {
        *fail -= 1;
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::NoContent().finish()
}

fn start_receiver(r: Receiver) -> String {
    let data = web::Data::new(r);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(receive)))
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind");
    let port = server.addrs()[0].port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}/hook")
}

/// A real SMTP server (Python's aiosmtpd, printing every message it receives).
pub(crate) struct Smtp {
    pub(crate) port: u16,
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Smtp {
    pub(crate) fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).ok()?;
        let child = std::process::Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return Self::unavailable(&e.to_string()),
        };
        let out = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let out = out.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut o = out.lock().expect("lock");
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().ok().flatten().is_some() || started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                return Self::unavailable("python3 -m aiosmtpd did not start (pip install aiosmtpd)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { port, child, out })
    }

    fn unavailable(why: &str) -> Option<Self> {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "an SMTP server is required: {why}"
        );
        eprintln!("skipping the notification test: no SMTP server ({why})");
        None
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        let out = self.out.lock().expect("lock").clone();
        out.split("---------- MESSAGE FOLLOWS ----------").skip(1).map(str::to_owned).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard Webhooks, checked by hand: HMAC-SHA256 over `id.timestamp.body` with the decoded secret.
fn signature_holds(secret: &str, r: &Received) -> bool {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).expect("secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.{}", r.id, r.timestamp, r.body).as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    r.signature.split(' ').any(|s| s == format!("v1,{expected}"))
}

/// Standard Webhooks, checked by an independent implementation: PyPI's `standardwebhooks`.
/// `None` when the package is missing (a failure with `KEYROLL_TEST_REQUIRE_SERVICES=1`).
fn python_verifies(secret: &str, r: &Received) -> Option<bool> {
    const CHECK: &str = "import os, sys\n\
from standardwebhooks.webhooks import Webhook\n\
h = {'webhook-id': os.environ['WID'], 'webhook-timestamp': os.environ['WTS'], 'webhook-signature': os.environ['WSIG']}\n\
Webhook(os.environ['WSECRET']).verify(sys.stdin.buffer.read(), h)\n";
    let has = std::process::Command::new("python3").args(["-c", "import standardwebhooks"]).status();
    if !has.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PyPI's standardwebhooks is required (pip install standardwebhooks)"
        );
        eprintln!("skipping the interop check: PyPI's standardwebhooks is not installed");
        return None;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", CHECK])
        .env("WID", &r.id)
        .env("WTS", &r.timestamp)
        .env("WSIG", &r.signature)
        .env("WSECRET", secret)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(r.body.as_bytes()).expect("body written");
    }
    Some(child.wait().expect("python3 ends").success())
}

async fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rotation_events_are_delivered(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let Some(mailbox) = Smtp::start() else { return };
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let receiver = Receiver::default();
    *receiver.fail_first.lock().expect("lock") = 1;
    let url = start_receiver(receiver.clone());
    let settings = [("smtp_url", smtp.as_str()), ("notify.retry_base_ms", "100"), ("notify.poll_ms", "50")];
    let app: TestApp = spawn_node_with(&shared, dir, &settings).await;
    let t = app.tenant("Acme").await;
    // The events this test follows (`*`, the default, also brings `key.created`).
    let types = json!(["rotation.started", "key.revoked", "alert.raised"]);
    let (st, ep) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": url, "event_types": types})).await;
    assert_eq!(st, 201, "{ep}");
    let secret = ep["secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, list) = app.get("/v1/webhook-endpoints", &t.root).await;
    assert!(list["data"][0].get("secret").is_none(), "never shown again");
    let (st, bad) =
        app.post("/v1/webhook-endpoints", &t.root, json!({"url": "ftp://x", "event_types": ["key.nope"]})).await;
    assert_eq!(st, 400);
    assert_eq!(bad["errors"].as_array().map(Vec::len), Some(2));

    let (_, api) =
        app.post("/v1/apis", &t.root, json!({"name": "Orders", "key_prefix": "acme", "environment": "live"})).await;
    let (_, con) = app
        .post("/v1/consumers", &t.root, json!({"external_id": "cus_1", "name": "Bob", "email": "bob@customer.test"}))
        .await;
    let (_, k) = app.post("/v1/keys", &t.root, json!({"api_id": api["id"], "consumer_id": con["id"]})).await;
    let key_id = k["key"]["id"].as_str().expect("id").to_owned();
    let (st, r) = app.post(&format!("/v1/keys/{key_id}/rotate"), &t.root, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201);

    // The first call failed with 500; the retry carries the same webhook-id.
    let got = wait_until("two webhook calls", || {
        let g = receiver.got.lock().expect("lock").clone();
        (g.len() >= 2).then_some(g)
    })
    .await;
    assert_eq!(got[0].id, got[1].id, "webhook-id is stable across retries");
    assert!(got[1].id.starts_with("evt_"));
    for g in &got {
        assert!(signature_holds(&secret, g), "signature of {g:?}");
        assert_ne!(python_verifies(&secret, g), Some(false), "standardwebhooks rejects {g:?}");
        let tampered = Received { body: g.body.replace("rotation", "rotatiom"), ..g.clone() };
        assert_ne!(python_verifies(&secret, &tampered), Some(true), "a changed body must not verify");
        let ts: i64 = g.timestamp.parse().expect("unix seconds");
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 300);
    }
    let body: Value = serde_json::from_str(&got[1].body).expect("json body");
    assert_eq!(body["type"], "rotation.started");
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(body["data"]["key_id"], key_id.as_str());
    assert_eq!(body["data"]["rotation_id"], r["rotation"]["id"]);
    assert!(!got[1].body.contains(r["secret"].as_str().unwrap_or("-")), "no secret in events");

    let mail = wait_until("an email", || mailbox.messages().first().cloned()).await;
    assert!(mail.contains("To: bob@customer.test"), "{mail}");
    assert!(mail.contains("is being rotated"), "{mail}");

    // Revocation is announced too.
    app.post(&format!("/v1/keys/{key_id}/revoke"), &t.root, json!({"reason": "leaked"})).await;
    wait_until("key.revoked", || {
        receiver.got.lock().expect("lock").iter().any(|g| g.body.contains("\"key.revoked\"")).then_some(())
    })
    .await;
    wait_until("a second email", || (mailbox.messages().len() >= 2).then_some(())).await;
    assert!(mailbox.messages()[1].contains("was revoked"));

    // The delivery log.
    let log = wait_until_delivered(&app, &t.root).await;
    let started =
        log["data"].as_array().and_then(|a| a.iter().find(|e| e["type"] == "rotation.started")).expect("event");
    let webhook =
        started["deliveries"].as_array().and_then(|d| d.iter().find(|d| d["channel"] == "webhook")).expect("webhook");
    assert_eq!(
        (webhook["state"].as_str(), webhook["attempts"].as_i64(), webhook["last_status"].as_i64()),
        (Some("delivered"), Some(2), Some(204))
    );
    let email =
        started["deliveries"].as_array().and_then(|d| d.iter().find(|d| d["channel"] == "email")).expect("email");
    assert_eq!(email["state"], "delivered");
    let created = log["data"].as_array().and_then(|a| a.iter().find(|e| e["type"] == "key.created")).expect("event");
    assert_eq!(created["data"]["key_id"], key_id.as_str());
    assert_eq!(created["deliveries"], json!([]), "not subscribed");
    let globex = app.tenant("Globex").await;
    assert_eq!(app.get("/v1/events", &globex.root).await.1["data"], json!([]), "events are the tenant's own");

    // The revoked key is still presented: the detector's alert reaches the team's owner by email
    // and the endpoint as `alert.raised`.
    let old_secret = k["secret"].as_str().expect("secret");
    assert_eq!(app.verify_code(old_secret).await, "REVOKED");
    wait_until_async(|| async {
        let (_, u) = app.get(&format!("/v1/keys/{key_id}/usage?granularity=minute"), &t.root).await;
        (u["totals"]["REVOKED"] == 1).then_some(())
    })
    .await;
    let later = chrono::Utc::now() + chrono::TimeDelta::minutes(2);
    while keyroll::alerts::scan::run(&app.state.db, later, chrono::TimeDelta::milliseconds(100)).await.expect("scan")
        > 0
    {}
    let mail =
        wait_until("the alert's email", || mailbox.messages().into_iter().find(|m| m.contains("To: ops@acme.test")))
            .await;
    assert!(mail.contains("critical: Revoked key still presented") && mail.contains(&key_id), "{mail}");
    wait_until("alert.raised", || {
        receiver.got.lock().expect("lock").iter().any(|g| g.body.contains("\"alert.raised\"")).then_some(())
    })
    .await;
}

async fn wait_until_delivered(app: &TestApp, root: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, log) = app.get("/v1/events", root).await;
        let all_done = log["data"].as_array().is_some_and(|events| {
            events
                .iter()
                .all(|e| e["deliveries"].as_array().is_some_and(|d| d.iter().all(|d| d["state"] == "delivered")))
        });
        if all_done {
            return log;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "deliveries not done: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_sqlite() {
    rotation_events_are_delivered(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_postgres_redis() {
    rotation_events_are_delivered(Backend::Services).await;
}

/// A policy that delivers by webhook: the consumer's own endpoint receives the new secret in
/// `rotation.started`; the tenant's endpoint and the event log never do; once handed over it
/// cannot be picked up again.
async fn policy_hands_the_new_key_to_the_consumer(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let tenant_hook = Receiver::default();
    let consumer_hook = Receiver::default();
    // The consumer's endpoint fails once: the secret survives the retry.
    *consumer_hook.fail_first.lock().expect("lock") = 1;
    let tenant_url = start_receiver(tenant_hook.clone());
    let consumer_url = start_receiver(consumer_hook.clone());
    let settings =
        [("jobs.tick_ms", "200"), ("jobs.poll_ms", "50"), ("notify.retry_base_ms", "100"), ("notify.poll_ms", "50")];
    let app: TestApp = spawn_node_with(&shared, dir, &settings).await;
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let consumer = k.consumer_id.clone();
    let (st, _) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": tenant_url})).await;
    assert_eq!(st, 201);
    let (st, ep) =
        app.post("/v1/webhook-endpoints", &t.root, json!({"url": consumer_url, "consumer_id": consumer})).await;
    assert_eq!(st, 201, "{ep}");
    let consumer_secret = ep["secret"].as_str().expect("secret").to_owned();
    let (st, bad) = app
        .post(
            "/v1/policies",
            &t.root,
            json!({"api_id": k.api_id, "interval_days": 30, "overlap_seconds": 7200, "delivery": "email"}),
        )
        .await;
    assert_eq!((st, bad["errors"][0]["field"].as_str()), (400, Some("delivery")), "{bad}");
    let (st, p) = app
        .post(
            "/v1/policies",
            &t.root,
            json!({"api_id": k.api_id, "interval_days": 30, "overlap_seconds": 7200, "delivery": "webhook"}),
        )
        .await;
    assert_eq!((st, p["delivery"].as_str()), (201, Some("webhook")), "{p}");
    crate::policies::backdate(&app, &k.key_id, 31).await;

    let got = wait_until("the new key at the consumer's endpoint", || {
        let g = consumer_hook.got.lock().expect("lock").clone();
        g.iter().any(|r| r.body.contains("new_key")).then_some(g)
    })
    .await;
    let delivered = got.iter().rev().find(|r| r.body.contains("new_key")).expect("delivered");
    assert!(signature_holds(&consumer_secret, delivered));
    let body: Value = serde_json::from_str(&delivered.body).expect("json");
    assert_eq!(
        (body["type"].as_str(), body["data"]["key_id"].as_str()),
        (Some("rotation.started"), Some(k.key_id.as_str()))
    );
    let new_key = body["data"]["new_key"].as_str().expect("the new secret").to_owned();
    assert_eq!(app.verify_code(&new_key).await, "VALID");
    assert_eq!(app.verify_code(&k.secret).await, "VALID", "the old key stays valid during the overlap");

    // Handed over once: no pickup afterwards, and nobody else ever saw it.
    let log = wait_until_delivered(&app, &t.root).await;
    assert!(!log.to_string().contains(&new_key), "the event log never holds a secret");
    let pickup = app.client.post(app.url("/v1/self/pickup")).bearer_auth(k.secret.clone()).send().await.expect("sent");
    assert_eq!(pickup.status().as_u16(), 404);
    wait_until("the tenant's copy of the event", || {
        tenant_hook.got.lock().expect("lock").iter().any(|r| r.body.contains("rotation.started")).then_some(())
    })
    .await;
    assert!(tenant_hook.got.lock().expect("lock").iter().all(|r| !r.body.contains(&new_key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_sqlite() {
    policy_hands_the_new_key_to_the_consumer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_postgres_redis() {
    policy_hands_the_new_key_to_the_consumer(Backend::Services).await;
}

/// An endpoint's own secret is rotated: both secrets sign during the overlap. An endpoint that
/// keeps failing is disabled, and turned back on with PATCH; endpoints are the tenant's own.
async fn endpoint_secrets_rotate_and_failing_endpoints_stop(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let good = Receiver::default();
    let bad = Receiver::default();
    *bad.fail_first.lock().expect("lock") = 1_000;
    let (good_url, bad_url) = (start_receiver(good.clone()), start_receiver(bad.clone()));
    let settings = [
        ("notify.retry_base_ms", "50"),
        ("notify.poll_ms", "50"),
        ("notify.max_attempts", "1"),
        ("notify.disable_after_failures", "2"),
        ("notify.disable_after_hours", "0"),
    ];
    let app: TestApp = spawn_node_with(&shared, dir, &settings).await;
    let t = app.tenant("Acme").await;
    let (_, ep) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": good_url})).await;
    let (_, failing) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": bad_url})).await;
    let old_secret = ep["secret"].as_str().expect("secret").to_owned();
    let path = format!("/v1/webhook-endpoints/{}", ep["id"].as_str().expect("id"));

    let (st, v) = app.post(&format!("{path}/rotate-secret"), &t.root, json!({"overlap_seconds": -1})).await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("overlap_seconds")));
    let (st, rotated) = app.post(&format!("{path}/rotate-secret"), &t.root, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("new secret shown once").to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_until"].is_string());
    assert!(app.get(&path, &t.root).await.1.get("secret").is_none(), "never shown again");

    let k = app.make_key(&t, "acme", json!({})).await;
    app.post(&format!("/v1/keys/{}/rotate", k.key_id), &t.root, json!({"overlap_seconds": 60})).await;
    let got = wait_until("a signed call", || good.got.lock().expect("lock").first().cloned()).await;
    assert_eq!(got.signature.split(' ').count(), 2, "old and new secret both sign: {}", got.signature);
    assert!(signature_holds(&new_secret, &got) && signature_holds(&old_secret, &got));
    for secret in [&new_secret, &old_secret] {
        assert_ne!(python_verifies(secret, &got), Some(false), "standardwebhooks accepts either secret");
    }

    // Two deliveries given up in a row: the failing endpoint is disabled.
    app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "test"})).await;
    let failing_path = format!("/v1/webhook-endpoints/{}", failing["id"].as_str().expect("id"));
    let disabled = wait_until_async(|| async {
        let (_, e) = app.get(&failing_path, &t.root).await;
        (e["enabled"] == false).then_some(e)
    })
    .await;
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    let (st, v) = app.call(Method::PATCH, &failing_path, &t.root, Some(json!({"url": "mailto:x"}))).await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("url")));
    let (st, back) = app.call(Method::PATCH, &failing_path, &t.root, Some(json!({"enabled": true}))).await;
    assert_eq!((st, back["enabled"].as_bool(), back["failures"].as_i64()), (200, Some(true), Some(0)), "{back}");

    // Another tenant sees none of it; delete removes it.
    let globex = app.tenant("Globex").await;
    assert_eq!(app.get(&path, &globex.root).await.0, 404);
    assert_eq!(app.call(Method::DELETE, &path, &globex.root, None).await.0, 404);
    assert_eq!(app.post(&format!("{path}/rotate-secret"), &globex.root, json!({})).await.0, 404);
    assert_eq!(app.get("/v1/webhook-endpoints/not-an-id", &t.root).await.0, 404);
    assert_eq!(app.call(Method::DELETE, &path, &t.root, None).await.0, 204);
    assert_eq!(app.get(&path, &t.root).await.0, 404);
}

async fn wait_until_async<T, F: std::future::Future<Output = Option<T>>>(mut f: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_sqlite() {
    endpoint_secrets_rotate_and_failing_endpoints_stop(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_postgres_redis() {
    endpoint_secrets_rotate_and_failing_endpoints_stop(Backend::Services).await;
}

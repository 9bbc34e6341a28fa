//! Rotation events reach a real webhook receiver (signature checked with an independent HMAC)
//! and a real SMTP server, with retries and a delivery log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
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
struct Smtp {
    port: u16,
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Smtp {
    fn start() -> Option<Self> {
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

    fn messages(&self) -> Vec<String> {
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
    let (st, ep) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": url})).await;
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
    let globex = app.tenant("Globex").await;
    assert_eq!(app.get("/v1/events", &globex.root).await.1["data"], json!([]), "events are the tenant's own");
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

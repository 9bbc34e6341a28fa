//! Found while probing from outside: numbers too large for time arithmetic, bodies that are not
//! JSON or never finish, a probe that read the body before the token, a world-readable database.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};

async fn numbers_are_bounded_before_arithmetic(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    for overlap in [9_223_372_036_854_775_807_i64, 9_300_000_000_000_000, 2_592_001, -1] {
        let (st, p) =
            app.post(&format!("/v1/keys/{}/rotate", k.key_id), &t.root, json!({"overlap_seconds": overlap})).await;
        assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("overlap_seconds")), "{overlap}: {p}");
    }
    let (_, roots) = app.get("/v1/root-keys", &t.root).await;
    let root_id = roots["data"][0]["id"].as_str().expect("root key").to_owned();
    let (st, p) = app
        .post(
            &format!("/v1/root-keys/{root_id}/rotate"),
            &t.root,
            json!({"overlap_seconds": 9_300_000_000_000_000_i64}),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("overlap_seconds")), "{p}");
    // Credits beyond 10^15 are refused, on creation and on change.
    let body = json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "credits": {"remaining": 9_223_372_036_854_775_808_u64}});
    let (st, p) = app.post("/v1/keys", &t.root, body).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("credits.remaining")), "{p}");
    let (st, p) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/keys/{}", k.key_id),
            &t.root,
            Some(json!({"credits": {"remaining": 5, "refill": {"interval": "daily", "amount": 2_000_000_000_000_000_u64}}})),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("credits.refill.amount")), "{p}");
    // Nothing changed.
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    assert_eq!(app.get(&format!("/v1/keys/{}", k.key_id), &t.root).await.1["credits"], json!(null));
}

crate::both_backends!(bounded_numbers, numbers_are_bounded_before_arithmetic);

async fn bodies_must_be_json(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let body = json!({"key": k.secret}).to_string();
    for ct in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let mut req = app.client.post(app.url("/v1/verify")).body(body.clone());
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.expect("sent");
        assert_eq!(res.status().as_u16(), 415, "{ct:?}");
        let p: serde_json::Value = res.json().await.expect("problem");
        assert_eq!(p["code"], "unsupported_media_type");
    }
    for ct in ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"] {
        let res = app.client.post(app.url("/v1/verify")).header("content-type", ct).body(body.clone()).send().await;
        assert_eq!(res.expect("sent").status().as_u16(), 200, "{ct}");
    }
}

crate::both_backends!(json_bodies, bodies_must_be_json);

async fn the_probe_checks_its_token_first(app: TestApp) {
    let res = app
        .client
        .post(app.url("/internal/probe"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 401, "no token: refused before the body is read");
}

crate::both_backends!(probe_token_first, the_probe_checks_its_token_first);

/// A body that stops short of its length is answered 408 within the body timeout, not held: on
/// the JSON routes, on the routes that read their body raw to check a signature (the leak
/// intake, Stripe's webhook), on the dashboard's forms and on OAuth's token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_times_out() {
    let Some((shared, dir)) = crate::helpers::fresh(Backend::Sqlite).await else { return };
    let app = crate::helpers::spawn_node_with(
        &shared,
        dir,
        &[
            ("leak.intake_secret", crate::leaks::INTAKE_SECRET),
            ("billing.stripe_secret_key", "sk_test_keyroll"),
            ("billing.stripe_webhook_secret", "whsec_keyroll"),
            // Never asked: the body is not read to the end.
            ("billing.stripe_api_base", "http://127.0.0.1:9"),
            ("billing.default_plan", "free"),
            ("billing.plans.free.name", "Free"),
        ],
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let routes = [
        ("/v1/verify", "Content-Type: application/json\r\n"),
        (
            "/v1/intake/leaks",
            "Content-Type: application/json\r\nwebhook-id: msg_1\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,x\r\n",
        ),
        ("/v1/billing/stripe/webhook", "Content-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\n"),
        ("/login", "Content-Type: application/x-www-form-urlencoded\r\n"),
        ("/v1/oauth/token", "Content-Type: application/x-www-form-urlencoded\r\n"),
    ];
    let calls = routes.map(|(path, headers)| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 100\r\n\r\n{{\"key\":");
            s.write_all(head.as_bytes()).expect("sent");
            let started = Instant::now();
            let mut buf = [0_u8; 512];
            let n = s.read(&mut buf).unwrap_or(0);
            (path, started.elapsed(), String::from_utf8_lossy(&buf[..n]).into_owned())
        })
    });
    for call in calls {
        let (path, took, answer) = call.await.expect("joined");
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(took < Duration::from_secs(15), "{path}: answered after {took:?}");
    }
}

/// The embedded database is readable by its owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let path = app.shared.database_url.trim_start_matches("sqlite://").split('?').next().expect("path").to_owned();
    let mode = std::fs::metadata(&path).expect("database file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{path}");
}

/// With private destinations not allowed (the default), no endpoint can make Keyroll call into
/// its own network: addresses are refused at registration, and names are judged on what they
/// resolve to at each delivery. Nothing is sent anywhere: the names used resolve to this
/// machine, where a listener counts what reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_never_reach_the_installs_own_network() {
    use std::net::ToSocketAddrs;
    let Some((shared, dir)) = crate::helpers::fresh(Backend::Sqlite).await else { return };
    let app = crate::helpers::spawn_node_with(
        &shared,
        dir,
        &[("webhooks.allow_private", "false"), ("notify.poll_ms", "50"), ("notify.max_attempts", "1")],
    )
    .await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let t = app.tenant("Acme").await;
    for url in [
        format!("http://127.0.0.1:{port}/h"),
        format!("http://[::1]:{port}/h"),
        format!("http://localhost:{port}/h"),
        format!("http://[::ffff:127.0.0.1]:{port}/h"),
        format!("http://127.0.0.2:{port}/h"),
    ] {
        let (st, p) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": url})).await;
        assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("url")), "{url}: {p}");
    }
    // A name that is not an address, resolving to this machine: accepted at registration (it
    // could point anywhere later), refused when it is resolved for a delivery.
    let host = std::process::Command::new("hostname")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let host = host.filter(|h| {
        !h.is_empty()
            && (h.as_str(), port)
                .to_socket_addrs()
                .is_ok_and(|mut a| a.all(|a| !keyroll::domain::net::is_public(a.ip())))
    });
    let Some(host) = host else {
        eprintln!("skipping the resolution part: this machine's name does not resolve to a private address");
        return;
    };
    let (st, ep) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": format!("http://{host}:{port}/h")})).await;
    assert_eq!(st, 201, "{ep}");
    app.make_key(&t, "acme", json!({})).await;
    let started = Instant::now();
    let error = loop {
        let (_, log) = app.get("/v1/events", &t.root).await;
        let errors: Vec<String> = log["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| e["deliveries"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d["last_error"].as_str().map(str::to_owned))
            .collect();
        if let Some(e) = errors.into_iter().next() {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no delivery was attempted: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.starts_with("refused:"), "{error}");
    assert!(listener.accept().is_err(), "nothing reached the listener");
}

/// Webhook signing secrets are sealed at rest with the master key (shown once, never stored as
/// written); deliveries still sign with them (checked by the notification tests).
async fn webhook_secrets_are_sealed(app: TestApp) {
    let t = app.tenant("Acme").await;
    let (st, ep) = app.post("/v1/webhook-endpoints", &t.root, json!({"url": "http://127.0.0.1:9/h"})).await;
    assert_eq!(st, 201, "{ep}");
    let shown = ep["secret"].as_str().expect("shown once").to_owned();
    let id = ep["id"].as_str().expect("id").to_owned();
    let (st, rotated) =
        app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret"), &t.root, json!({"overlap_seconds": 60})).await;
    assert_eq!(st, 200, "{rotated}");
    let row = keyroll::store::notify::endpoint(&app.state.db, &id).await.expect("db").expect("row");
    for stored in [Some(row.secret.as_str()), row.previous_secret.as_deref()] {
        let stored = stored.expect("both secrets kept");
        assert!(!stored.starts_with("whsec_") && !stored.contains(&shown[6..]), "stored sealed: {stored}");
    }
    let key = app.state.master_key.as_deref();
    assert_eq!(keyroll::notify::webhook::open_secret(key, row.previous_secret.as_deref().unwrap_or("")), Some(shown));
}

crate::both_backends!(sealed_webhook_secrets, webhook_secrets_are_sealed);

/// A bulk rotation taken over halfway by another node reports the whole job, not the share
/// that node did.
async fn a_taken_over_bulk_job_counts_the_whole_job(app: TestApp) {
    let t = app.tenant("Acme").await;
    let first = app.make_key(&t, "bulk", json!({})).await;
    for _ in 0..9 {
        app.make_key(&t, "bulk", json!({})).await;
    }
    // The first node had rotated 4 of the 10 keys (and said so) when it stopped.
    let (_, list) = app.get(&format!("/v1/keys?api_id={}&limit=100", first.api_id), &t.root).await;
    let ids: Vec<String> =
        list["data"].as_array().expect("keys").iter().map(|k| k["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(ids.len(), 10);
    let as_of = chrono::Utc::now();
    for id in &ids[..4] {
        let (st, _) = app.post(&format!("/v1/keys/{id}/rotate"), &t.root, json!({"overlap_seconds": 60})).await;
        assert_eq!(st, 201);
    }
    let mut job = keyroll::store::jobs::NewJob::now(keyroll::jobs::DIAGNOSTIC_SLEEP, json!({}));
    job.run_at = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let job_id = keyroll::store::jobs::enqueue(&app.state.db, job).await.expect("job").expect("id");
    let progress = json!({"done": 4, "total": 10, "api_id": first.api_id});
    keyroll::store::jobs::set_progress(&app.state.db, &job_id, progress).await.expect("progress");
    let req = keyroll::app::rotation::bulk::BulkRequest {
        tenant_id: t.id.clone(),
        api_id: first.api_id.clone(),
        filter: keyroll::app::rotation::bulk::BulkFilter::default(),
        overlap_seconds: 60,
        compromise: false,
        actor: "root_key:key_x".into(),
        as_of,
        playbook: false,
    };
    keyroll::app::rotation::bulk::run(&app.state, &job_id, &req).await.expect("the rest is rotated");
    let job = keyroll::store::jobs::get(&app.state.db, &job_id).await.expect("job");
    assert_eq!(
        (job.progress["done"].as_u64(), job.progress["total"].as_u64()),
        (Some(10), Some(10)),
        "{}",
        job.progress
    );
}

crate::both_backends!(bulk_takeover_progress, a_taken_over_bulk_job_counts_the_whole_job);

/// The OpenAPI document says what the server does: query parameters are in the query, errors
/// are `application/problem+json` (OAuth's token errors excepted), every operation that takes a key documents its 401,
/// and every one that takes a body its 408 and 413 (a body too slow, a body too large).
async fn the_openapi_document_is_faithful(app: TestApp) {
    let doc: serde_json::Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("sent").json().await.expect("json");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            operations += 1;
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or_default();
                if p["in"] == "path" {
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: {name} is not in the path");
                }
            }
            for (status, r) in op["responses"].as_object().expect("responses") {
                let content = r["content"].as_object();
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(c) = content
                {
                    let plain = c.contains_key("application/json") && !c.contains_key("application/problem+json");
                    // RFC 6749 §5.2 fixes the token endpoint's errors as plain JSON.
                    let exempt = path == "/readyz" || path == "/v1/oauth/token";
                    assert!(!plain || exempt, "{method} {path} {status}: {c:?}");
                }
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(op["responses"].get("401").is_some(), "{method} {path}: 401 undocumented");
            }
            if op.get("requestBody").is_some() {
                for status in ["408", "413"] {
                    let r = &op["responses"][status]["content"];
                    assert!(r.get("application/problem+json").is_some(), "{method} {path}: {status} undocumented");
                }
            }
        }
    }
    assert!(operations > 60);
    let keys = &doc["paths"]["/v1/keys"]["get"]["parameters"];
    assert!(keys.as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == "api_id" && p["in"] == "query")), "{keys}");
    let created = &doc["paths"]["/v1/keys"]["post"]["responses"]["400"]["content"];
    assert!(created.get("application/problem+json").is_some(), "{created}");
}

crate::both_backends!(openapi_document, the_openapi_document_is_faithful);

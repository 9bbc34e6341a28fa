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

/// A body that stops short of its length is answered 408 within the body timeout, not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_times_out() {
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let addr = app.address.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"key\":";
        s.write_all(head.as_bytes()).expect("sent");
        let started = Instant::now();
        let mut buf = [0_u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        (started.elapsed(), String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await
    .expect("joined");
    assert!(answer.1.starts_with("HTTP/1.1 408"), "{}", answer.1);
    assert!(answer.0 < Duration::from_secs(15), "answered after {:?}", answer.0);
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

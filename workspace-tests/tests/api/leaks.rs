//! Leak intake: GitHub's secret-scanning partner protocol, signed with a key pair made here,
//! and the generic Standard Webhooks intake. A reported key is contained as its API's leak
//! policy says; unknown and malformed tokens are answered and ignored.

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

pub(crate) const INTAKE_SECRET: &str = "whsec_a2V5cm9sbC1sZWFrLWludGFrZS10ZXN0LXNlY3JldA==";

pub(crate) fn key_pair() -> (SigningKey, String) {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let signing = SigningKey::from_slice(&bytes).expect("a P-256 private key");
    let pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).expect("pem");
    (signing, pem)
}

async fn app_with_github_key(backend: Backend) -> Option<(TestApp, SigningKey)> {
    let (signing, pem) = key_pair();
    let doc = json!({"public_keys": [
        {"key_identifier": "old-key", "key": key_pair().1, "is_current": false},
        {"key_identifier": "test-key-1", "key": pem, "is_current": true},
    ]})
    .to_string();
    let (shared, dir) = fresh(backend).await?;
    let app = spawn_node_with(
        &shared,
        dir,
        &[("leak.github_public_keys", doc.as_str()), ("leak.intake_secret", INTAKE_SECRET)],
    )
    .await;
    Some((app, signing))
}

async fn github(app: &TestApp, signing: &SigningKey, key_id: &str, body: &str) -> (u16, Value) {
    let sig: Signature = signing.sign(body.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
    let res = app
        .client
        .post(app.url("/v1/intake/github"))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", key_id)
        .header("Github-Public-Key-Signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn report(tokens: &[&str]) -> String {
    Value::Array(
        tokens
            .iter()
            .map(|t| json!({"token": t, "type": "keyroll_api_key", "url": "https://github.com/acme/app/blob/main/.env", "source": "content"}))
            .collect(),
    )
    .to_string()
}

async fn github_reports_are_contained(app: TestApp, signing: SigningKey) {
    let acme = app.tenant("Acme").await;
    let leaked = app.make_key(&acme, "acme", json!({})).await;
    let (_, root) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["keys:read"]})).await;
    let root_secret = root["secret"].as_str().expect("root secret").to_owned();
    // A well-formed key (right prefix and checksum) that was never issued, and garbage.
    let head = keyroll::domain::KeyHead::Api {
        prefix: keyroll::domain::KeyPrefix::parse("acme").expect("prefix"),
        env: keyroll::domain::Environment::Live,
    };
    let unknown = keyroll::domain::ApiKey::generate(&head).expose().to_owned();
    let body = report(&[&leaked.secret, &root_secret, &unknown, "not a key at all"]);
    let (st, verdicts) = github(&app, &signing, "test-key-1", &body).await;
    assert_eq!(st, 200, "{verdicts}");
    let labels: Vec<(&str, &str)> = verdicts
        .as_array()
        .expect("one verdict per token")
        .iter()
        .map(|v| (v["token_raw"].as_str().unwrap_or_default(), v["label"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        labels,
        [
            (leaked.secret.as_str(), "true_positive"),
            (root_secret.as_str(), "true_positive"),
            (unknown.as_str(), "false_positive"),
            ("not a key at all", "false_positive"),
        ]
    );
    assert_eq!(verdicts[0]["token_type"], "keyroll_api_key");

    // The leaked key was rotated with a short grace: it still works for now, carries the
    // rotation, and the rotation is a compromise (no rollback).
    let v = app.verify(json!({"key": leaked.secret})).await;
    assert_eq!(v["code"], "VALID");
    let grace_end =
        chrono::DateTime::parse_from_rfc3339(v["rotation"]["grace_ends_at"].as_str().expect("in grace")).expect("time");
    let left = grace_end.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((800..=900).contains(&left), "15 minutes of grace, {left} s left");
    let (_, rotations) = app.get("/v1/rotations?state=in_progress", &acme.root).await;
    let r = &rotations["data"][0];
    assert_eq!((r["trigger"].as_str(), r["compromise"].as_bool()), (Some("playbook"), Some(true)), "{r}");
    let (st, _) = app
        .post(&format!("/v1/rotations/{}/rollback", r["id"].as_str().unwrap_or_default()), &acme.root, json!({}))
        .await;
    assert_eq!(st, 409, "no rollback to a leaked key");
    // The leaked root key is refused at once.
    assert_eq!(app.get("/v1/keys", &root_secret).await.0, 401);

    // The tenant hears about it, and the audit log says who reported what.
    let (_, events) = app.get("/v1/events?type=leak.reported", &acme.root).await;
    let events = events["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().any(|e| e["data"]["action"] == "rotated" && e["data"]["key_id"] == leaked.key_id.as_str()));
    assert!(events.iter().any(|e| e["data"]["action"] == "revoked"));
    assert!(events.iter().all(|e| e["data"]["url"] == "https://github.com/acme/app/blob/main/.env"));
    assert!(!events.iter().any(|e| e.to_string().contains(&leaked.secret)), "the secret is never repeated");
    let (_, audit) = app.get("/v1/audit-events?action=key.leaked", &acme.root).await;
    assert_eq!(audit["data"].as_array().map(Vec::len), Some(2));
    assert!(audit["data"].as_array().into_iter().flatten().all(|e| e["actor"] == "scanner:github"));

    // GitHub sends the same report again: answered, not acted on twice.
    let (st, again) = github(&app, &signing, "test-key-1", &report(&[&leaked.secret])).await;
    assert_eq!((st, again[0]["label"].as_str()), (200, Some("true_positive")));
    let (_, rotations) = app.get("/v1/rotations", &acme.root).await;
    let compromise = rotations["data"].as_array().into_iter().flatten().filter(|r| r["compromise"] == true).count();
    assert_eq!(compromise, 1, "one rotation only");

    // Not signed by a configured key: refused, nothing done.
    let fresh_key = app.make_key(&acme, "acme", json!({})).await;
    let body = report(&[&fresh_key.secret]);
    let (st, v) = github(&app, &signing, "old-key", &body).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthenticated")), "signed with another key than named");
    let (st, _) = github(&app, &signing, "no-such-key", &body).await;
    assert_eq!(st, 401);
    let (other, _) = key_pair();
    assert_eq!(github(&app, &other, "test-key-1", &body).await.0, 401, "a forged signature");
    let unsigned = app.client.post(app.url("/v1/intake/github")).body(body.clone()).send().await.expect("sent");
    assert_eq!(unsigned.status().as_u16(), 401);
    assert_eq!(app.verify(json!({"key": fresh_key.secret})).await["rotation"], Value::Null, "untouched");
    // Signed but not a report.
    let (st, v) = github(&app, &signing, "test-key-1", "{\"token\": \"x\"}").await;
    assert_eq!((st, v["code"].as_str()), (400, Some("validation_failed")));

    // Leak policies per API: revoke at once, or only tell.
    let (st, api) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{}", fresh_key.api_id),
            &acme.root,
            Some(json!({"leak_policy": {"action": "revoke"}})),
        )
        .await;
    assert_eq!((st, api["leak_policy"]["action"].as_str()), (200, Some("revoke")), "{api}");
    let (st, _) = github(&app, &signing, "test-key-1", &report(&[&fresh_key.secret])).await;
    assert_eq!(st, 200);
    assert_eq!(app.verify_code(&fresh_key.secret).await, "REVOKED");
    let (st, v) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{}", fresh_key.api_id),
            &acme.root,
            Some(json!({"leak_policy": {"action": "shrug"}})),
        )
        .await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("leak_policy.action")));
    app.call(
        reqwest::Method::PATCH,
        &format!("/v1/apis/{}", fresh_key.api_id),
        &acme.root,
        Some(json!({"leak_policy": {"action": "notify"}})),
    )
    .await;
    let told = app.make_key(&acme, "acme", json!({})).await;
    github(&app, &signing, "test-key-1", &report(&[&told.secret])).await;
    assert_eq!(app.verify_code(&told.secret).await, "VALID");
    let (_, events) = app.get("/v1/events?type=leak.reported", &acme.root).await;
    assert!(
        events["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["data"]["key_id"] == told.key_id.as_str() && e["data"]["action"] == "notified")
    );
}

async fn generic_intake(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let body = report(&[&k.secret]);
    let hook = standardwebhooks::Webhook::new(INTAKE_SECRET).expect("secret");
    let now = chrono::Utc::now().timestamp();
    let send = |ts: i64, secret_ok: bool| {
        let sig = if secret_ok {
            hook.sign("msg_1", ts, body.as_bytes()).expect("sign")
        } else {
            standardwebhooks::Webhook::new("whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
                .expect("w")
                .sign("msg_1", ts, body.as_bytes())
                .expect("sign")
        };
        app.client
            .post(app.url("/v1/intake/leaks"))
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(send(now, false).await.expect("sent").status().as_u16(), 401, "wrong secret");
    assert_eq!(send(now - 3_600, true).await.expect("sent").status().as_u16(), 401, "an hour-old replay");
    let res = send(now, true).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v[0]["label"], "true_positive");
    assert!(app.verify(json!({"key": k.secret})).await["rotation"].is_object(), "rotated with a grace");
    let (_, audit) = app.get("/v1/audit-events?action=key.leaked", &acme.root).await;
    assert_eq!(audit["data"][0]["actor"], "scanner:scanner");
}

async fn unconfigured_intake_says_so(app: TestApp) {
    let res = app.client.post(app.url("/v1/intake/github")).body("[]").send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 503);
    let v: Value = res.json().await.expect("problem");
    assert!(v["detail"].as_str().unwrap_or_default().contains("KEYROLL_LEAK__GITHUB_PUBLIC_KEYS"), "{v}");
}

mod github_intake {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        if let Some((app, key)) = app_with_github_key(Backend::Sqlite).await {
            github_reports_are_contained(app, key).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        if let Some((app, key)) = app_with_github_key(Backend::Services).await {
            github_reports_are_contained(app, key).await;
        }
    }
}

mod generic {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        if let Some((app, _)) = app_with_github_key(Backend::Sqlite).await {
            generic_intake(app).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        if let Some((app, _)) = app_with_github_key(Backend::Services).await {
            generic_intake(app).await;
        }
    }
}

crate::both_backends!(intake_unconfigured, unconfigured_intake_says_so);

/// A leak reported to one node is obeyed by another node, which had the key cached, within a
/// second: revoked under a `revoke` policy, in grace (with its rotation) under `rotate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_reported_to_one_node_is_obeyed_by_another() {
    let (signing, pem) = key_pair();
    let doc = json!({"public_keys": [{"key_identifier": "k1", "key": pem, "is_current": true}]}).to_string();
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let extra = [("leak.github_public_keys", doc.as_str())];
    let a = spawn_node_with(&shared, dir, &extra).await;
    let b = spawn_node_with(&shared, None, &extra).await;
    let acme = a.tenant("Acme").await;
    let rotated = a.make_key(&acme, "acme", json!({})).await;
    let revoked = a.make_key(&acme, "acme", json!({})).await;
    let (st, _) = a
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{}", revoked.api_id),
            &acme.root,
            Some(json!({"leak_policy": {"action": "revoke"}})),
        )
        .await;
    assert_eq!(st, 200);
    for k in [&rotated, &revoked] {
        assert_eq!(b.verify_code(&k.secret).await, "VALID", "cached on B");
    }
    let (st, _) = github(&a, &signing, "k1", &report(&[&revoked.secret])).await;
    assert_eq!(st, 200);
    let started = std::time::Instant::now();
    while b.verify_code(&revoked.secret).await != "REVOKED" {
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "not revoked on B within 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    eprintln!("leaked key revoked on the other node after {:?}", started.elapsed());

    // Under `rotate` the key keeps working for its grace, and B says so.
    a.call(
        reqwest::Method::PATCH,
        &format!("/v1/apis/{}", rotated.api_id),
        &acme.root,
        Some(json!({"leak_policy": {"action": "rotate", "grace_seconds": 600}})),
    )
    .await;
    let (st, _) = github(&a, &signing, "k1", &report(&[&rotated.secret])).await;
    assert_eq!(st, 200);
    let started = std::time::Instant::now();
    while !b.verify(json!({"key": rotated.secret})).await["rotation"].is_object() {
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "rotation not seen on B within 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

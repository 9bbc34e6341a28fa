//! Zero-downtime rotation through the API: overlap, headers, complete, roll back, extend,
//! max_active, self-service, isolation, and propagation to other nodes.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, fresh, spawn_node};

async fn rotate(app: &TestApp, root: &str, key_id: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/v1/keys/{key_id}/rotate"), root, body).await
}

async fn overlap_keeps_both_versions_valid(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({"meta": {"plan": "pro"}, "scopes": ["orders:read"]})).await;
    let (st, r) = rotate(&app, &t.root, &k.key_id, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "{r}");
    let new_secret = r["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, k.secret);
    assert_eq!(r["key"]["lineage_id"], k.key_id.as_str());
    assert_eq!(r["key"]["version"], 2);
    assert_eq!(r["key"]["scopes"], json!(["orders:read"]), "scopes copied");
    assert_eq!(r["key"]["meta"]["plan"], "pro", "meta copied");
    assert_eq!(r["rotation"]["state"], "in_progress");
    assert_eq!(r["rotation"]["from_key_id"], k.key_id.as_str());
    let grace: DateTime<Utc> = r["rotation"]["grace_ends_at"].as_str().and_then(|s| s.parse().ok()).expect("grace");
    assert!((grace - Utc::now() - TimeDelta::hours(1)).num_seconds().abs() < 10);
    // Both verify; the old one says it is superseded, with the headers a gateway passes on.
    let res = app.client.post(app.url("/v1/verify")).json(&json!({"key": k.secret})).send().await.expect("sent");
    let sunset = res.headers().get("sunset").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let deprecation = res.headers().get("deprecation").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let old: Value = res.json().await.expect("json");
    assert_eq!(old["code"], "VALID");
    assert_eq!(old["rotation"]["state"], "superseded");
    assert_eq!(old["rotation"]["successor_version"], 2);
    assert_eq!(sunset, Some(grace.format("%a, %d %b %Y %H:%M:%S GMT").to_string()));
    assert!(deprecation.is_some_and(|d| d.starts_with('@')));
    let new = app.verify(json!({"key": new_secret})).await;
    assert_eq!((new["code"].as_str(), new["key"]["version"].as_i64()), (Some("VALID"), Some(2)));
    assert!(new["rotation"].is_null());
    // A key in grace cannot be rotated again.
    let (st, v) = rotate(&app, &t.root, &k.key_id, json!({})).await;
    assert_eq!((st, v["code"].as_str()), (409, Some("conflict")));
    // The rotation shows progress.
    app.verify(json!({"key": new_secret})).await;
    let rid = r["rotation"]["id"].as_str().expect("rotation id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (st, got) = app.get(&format!("/v1/rotations/{rid}"), &t.root).await;
        assert_eq!(st, 200);
        // Counts arrive with the usage flushes, not necessarily in the same one.
        if got["progress"]["new"]["uses_since_start"].as_i64() >= Some(2)
            && got["progress"]["old"]["uses_since_start"].as_i64() >= Some(1)
        {
            assert_eq!(got["progress"]["new"]["uses_since_start"], 2);
            assert_eq!(got["progress"]["old"]["uses_since_start"], 1);
            assert!(got["progress"]["new_share"].as_f64().is_some_and(|s| s > 0.6));
            break;
        }
        assert!(Instant::now() < deadline, "progress never counted: {got}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, list) = app.get("/v1/rotations?state=in_progress", &t.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    // Complete: the old version is retired at once, everywhere.
    let (st, done) = app.post(&format!("/v1/rotations/{rid}/complete"), &t.root, json!({})).await;
    assert_eq!((st, done["state"].as_str()), (200, Some("completed")), "{done}");
    assert_eq!(app.verify_code(&k.secret).await, "EXPIRED");
    assert_eq!(app.verify_code(&new_secret).await, "VALID");
    let (st, _) = app.post(&format!("/v1/rotations/{rid}/complete"), &t.root, json!({})).await;
    assert_eq!(st, 409, "a completed rotation is final");
    let (st, _) = app.post(&format!("/v1/rotations/{rid}/rollback"), &t.root, json!({})).await;
    assert_eq!(st, 409);
}
both_backends!(overlap, overlap_keeps_both_versions_valid);

async fn overlap_zero_and_max_active(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let (st, r) = rotate(&app, &t.root, &k.key_id, json!({"overlap_seconds": 0})).await;
    assert_eq!(st, 201);
    assert_eq!(r["rotation"]["state"], "completed");
    assert_eq!(app.verify_code(&k.secret).await, "EXPIRED", "overlap 0 retires at once");
    // v2 → v3 with v2 in grace, then v3 → v4: v2 must end to stay within two active versions.
    let v2 = r["key"]["id"].as_str().expect("id").to_owned();
    let v2_secret = r["secret"].as_str().expect("secret").to_owned();
    let (_, r3) = rotate(&app, &t.root, &v2, json!({"overlap_seconds": 3600})).await;
    let v3 = r3["key"]["id"].as_str().expect("id").to_owned();
    let v3_secret = r3["secret"].as_str().expect("secret").to_owned();
    assert_eq!(app.verify_code(&v2_secret).await, "VALID");
    let (st, r4) = rotate(&app, &t.root, &v3, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "{r4}");
    assert_eq!(r4["key"]["version"], 4);
    assert_eq!(app.verify_code(&v2_secret).await, "EXPIRED", "the oldest ended");
    assert_eq!(app.verify_code(&v3_secret).await, "VALID");
    assert_eq!(app.verify_code(r4["secret"].as_str().unwrap_or_default()).await, "VALID");
    let (_, lineage) = app.get(&format!("/v1/keys?lineage_id={}", k.key_id), &t.root).await;
    let states: Vec<(i64, String)> = lineage["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|k| (k["version"].as_i64().unwrap_or(0), k["state"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        states,
        vec![(4, "valid".into()), (3, "superseded".into()), (2, "expired".into()), (1, "expired".into())]
    );
    // Bad input.
    let (st, v) =
        rotate(&app, &t.root, r4["key"]["id"].as_str().unwrap_or_default(), json!({"overlap_seconds": -5})).await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("overlap_seconds")));
    let (st, v) =
        rotate(&app, &t.root, r4["key"]["id"].as_str().unwrap_or_default(), json!({"overlap_seconds": 99_999_999}))
            .await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("overlap_seconds")));
    let (st, v) =
        rotate(&app, &t.root, r4["key"]["id"].as_str().unwrap_or_default(), json!({"retire_mode": "whenever"})).await;
    assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("retire_mode")));
}
both_backends!(overlap_zero_and_max_active, overlap_zero_and_max_active);

async fn rollback_and_extend(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let (_, r) = rotate(&app, &t.root, &k.key_id, json!({"overlap_seconds": 600})).await;
    let rid = r["rotation"]["id"].as_str().expect("id").to_owned();
    let new_secret = r["secret"].as_str().expect("secret").to_owned();
    // Extend within the limit.
    let later = Utc::now() + TimeDelta::hours(2);
    let (st, ext) = app.post(&format!("/v1/rotations/{rid}/extend"), &t.root, json!({"grace_ends_at": later})).await;
    assert_eq!(st, 200, "{ext}");
    let got: DateTime<Utc> = ext["grace_ends_at"].as_str().and_then(|s| s.parse().ok()).expect("grace");
    assert!((got - later).num_seconds().abs() < 1);
    let (_, key) = app.get(&format!("/v1/keys/{}", k.key_id), &t.root).await;
    assert_eq!(
        key["grace_ends_at"]
            .as_str()
            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
            .map(|g| (g - later).num_seconds().abs() < 1),
        Some(true)
    );
    for bad in [Utc::now() - TimeDelta::hours(1), Utc::now() + TimeDelta::days(40), Utc::now() + TimeDelta::minutes(5)]
    {
        let (st, v) = app.post(&format!("/v1/rotations/{rid}/extend"), &t.root, json!({"grace_ends_at": bad})).await;
        assert_eq!((st, v["errors"][0]["field"].as_str()), (400, Some("grace_ends_at")), "{bad}: {v}");
    }
    // Roll back: the old key is current again, the new one is ended.
    let (st, rb) = app.post(&format!("/v1/rotations/{rid}/rollback"), &t.root, json!({})).await;
    assert_eq!((st, rb["state"].as_str()), (200, Some("rolled_back")), "{rb}");
    let old = app.verify(json!({"key": k.secret})).await;
    assert_eq!(old["code"], "VALID");
    assert!(old["rotation"].is_null(), "no longer superseded");
    assert_eq!(app.verify_code(&new_secret).await, "REVOKED");
    // It can be rotated again.
    let (st, _) = rotate(&app, &t.root, &k.key_id, json!({})).await;
    assert_eq!(st, 201);
    // Revoking a version cancels its rotation.
    let k2 = app.make_key(&t, "acme", json!({})).await;
    let (_, r2) = rotate(&app, &t.root, &k2.key_id, json!({})).await;
    app.post(
        &format!("/v1/keys/{}/revoke", r2["key"]["id"].as_str().unwrap_or_default()),
        &t.root,
        json!({"reason": "bad deploy"}),
    )
    .await;
    let (_, cancelled) =
        app.get(&format!("/v1/rotations/{}", r2["rotation"]["id"].as_str().unwrap_or_default()), &t.root).await;
    assert_eq!(cancelled["state"], "cancelled");
}
both_backends!(rollback_and_extend, rollback_and_extend);

async fn consumers_rotate_their_own_keys(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let me = |key: &str| app.client.get(app.url("/v1/self")).bearer_auth(key.to_owned()).send();
    let res = me(&k.secret).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!((v["key"]["id"].as_str(), v["key"]["state"].as_str()), (Some(k.key_id.as_str()), Some("valid")));
    assert!(v["rotation"].is_null());
    let rotate_self = |key: &str, body: Value| {
        app.client.post(app.url("/v1/self/rotate")).bearer_auth(key.to_owned()).json(&body).send()
    };
    let res = rotate_self(&k.secret, json!({"overlap_seconds": 99_999_999})).await.expect("sent");
    assert_eq!(res.status().as_u16(), 400, "policy bounds apply");
    let res = rotate_self(&k.secret, json!({})).await.expect("sent");
    assert_eq!(res.status().as_u16(), 201);
    let r: Value = res.json().await.expect("json");
    assert_eq!(r["rotation"]["trigger"], "self_service");
    let grace: DateTime<Utc> = r["rotation"]["grace_ends_at"].as_str().and_then(|s| s.parse().ok()).expect("grace");
    assert!((grace - Utc::now() - TimeDelta::hours(1)).num_seconds().abs() < 10, "one hour by default");
    let new_secret = r["secret"].as_str().expect("secret").to_owned();
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    assert_eq!(app.verify_code(&new_secret).await, "VALID");
    let res = rotate_self(&k.secret, json!({})).await.expect("sent");
    assert_eq!(res.status().as_u16(), 409, "a key in grace cannot start another rotation");
    let v: Value = me(&new_secret).await.expect("sent").json().await.expect("json");
    assert_eq!(v["rotation"]["id"], r["rotation"]["id"]);
    for bad in ["", "nope", t.root.as_str()] {
        assert_eq!(me(bad).await.expect("sent").status().as_u16(), 401, "{bad}");
    }
    app.post(
        &format!("/v1/keys/{}/revoke", r["key"]["id"].as_str().unwrap_or_default()),
        &t.root,
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(me(&new_secret).await.expect("sent").status().as_u16(), 401, "a revoked key has no self");
}
both_backends!(self_service, consumers_rotate_their_own_keys);

async fn root_keys_rotate_and_rotations_are_tenant_scoped(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    let (_, rk) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["keys:read"]})).await;
    let rk_id = rk["key"]["id"].as_str().expect("id").to_owned();
    let (st, r) = app.post(&format!("/v1/root-keys/{rk_id}/rotate"), &acme.root, json!({"overlap_seconds": 600})).await;
    assert_eq!(st, 201, "{r}");
    let new_root = r["secret"].as_str().expect("secret").to_owned();
    assert!(new_root.starts_with("kr_root_"));
    assert_eq!(app.get("/v1/keys", &new_root).await.0, 200);
    assert_eq!(
        app.get("/v1/keys", rk["secret"].as_str().unwrap_or_default()).await.0,
        200,
        "old root key valid in grace"
    );
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (_, kr) = rotate(&app, &acme.root, &k.key_id, json!({})).await;
    let rid = kr["rotation"]["id"].as_str().expect("id").to_owned();
    for (method, path, body) in [
        (Method::POST, format!("/v1/keys/{}/rotate", kr["key"]["id"].as_str().unwrap_or_default()), Some(json!({}))),
        (Method::POST, format!("/v1/root-keys/{rk_id}/rotate"), Some(json!({}))),
        (Method::GET, format!("/v1/rotations/{rid}"), None),
        (Method::POST, format!("/v1/rotations/{rid}/complete"), Some(json!({}))),
        (Method::POST, format!("/v1/rotations/{rid}/rollback"), Some(json!({}))),
        (
            Method::POST,
            format!("/v1/rotations/{rid}/extend"),
            Some(json!({"grace_ends_at": Utc::now() + TimeDelta::hours(30)})),
        ),
    ] {
        let (st, v) = app.call(method.clone(), &path, &globex.root, body).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
    }
    let (_, list) = app.get("/v1/rotations", &globex.root).await;
    assert_eq!(list["data"], json!([]));
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["keys:read"]})).await;
    let (st, _) = rotate(&app, narrow["secret"].as_str().unwrap_or_default(), &k.key_id, json!({})).await;
    assert_eq!(st, 403, "rotation needs keys:rotate");
    assert_eq!(app.verify_code(&k.secret).await, "VALID", "nothing changed for Acme");
}
both_backends!(root_keys_and_isolation, root_keys_rotate_and_rotations_are_tenant_scoped);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_steps_reach_every_node_within_a_second() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    let c = spawn_node(&shared, None).await;
    let t = a.tenant("Acme").await;
    let k = a.make_key(&t, "acme", json!({})).await;
    for n in [&b, &c] {
        assert!(n.verify(json!({"key": k.secret})).await["rotation"].is_null());
    }
    let (_, r) = rotate(&a, &t.root, &k.key_id, json!({"overlap_seconds": 3600})).await;
    let new_secret = r["secret"].as_str().expect("secret").to_owned();
    for n in [&b, &c] {
        let started = Instant::now();
        while n.verify(json!({"key": k.secret})).await["rotation"]["state"] != "superseded" {
            assert!(started.elapsed() < Duration::from_secs(1), "rotation not seen within 1 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(n.verify_code(&new_secret).await, "VALID");
    }
    a.post(&format!("/v1/rotations/{}/complete", r["rotation"]["id"].as_str().unwrap_or_default()), &t.root, json!({}))
        .await;
    for n in [&b, &c] {
        let started = Instant::now();
        while n.verify_code(&k.secret).await != "EXPIRED" {
            assert!(started.elapsed() < Duration::from_secs(1), "completion not seen within 1 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

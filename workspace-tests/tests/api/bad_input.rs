//! Bad input gets a clear error and loses nothing: never a 500.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

async fn raw(app: &TestApp, path: &str, root: Option<&str>, body: Vec<u8>) -> (u16, Value, Option<String>) {
    let mut req = app.client.post(app.url(path)).header("content-type", "application/json").body(body);
    if let Some(r) = root {
        req = req.bearer_auth(r);
    }
    let res = req.send().await.expect("sent");
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), ct)
}

fn field(v: &Value) -> &str {
    v["errors"][0]["field"].as_str().unwrap_or_default()
}

async fn garbage_keys_are_malformed(app: TestApp) {
    let long = "x".repeat(10_000);
    for key in [
        "",
        long.as_str(),
        "acme_live_ünïcødé",
        "acme_live_\u{0}abc",
        "' OR 1=1 --",
        "acme_live_'; DROP TABLE keys; --",
    ] {
        let v = app.verify(json!({"key": key})).await;
        assert_eq!(v["code"], "MALFORMED", "{key:?}: {v}");
        assert_eq!(v["valid"], false);
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(3));
    }
    // One changed character of a real key.
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let mut chars: Vec<char> = k.secret.chars().collect();
    let i = chars.len() - 8;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    assert_eq!(app.verify_code(&flipped).await, "MALFORMED");
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
}
both_backends!(garbage_keys, garbage_keys_are_malformed);

async fn bad_bodies_are_400_problems_naming_the_field(app: TestApp) {
    let t = app.tenant("Acme").await;
    let (st, v, ct) = raw(&app, "/v1/verify", None, b"{not json".to_vec()).await;
    assert_eq!(st, 400);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert_eq!((v["code"].as_str(), v["status"].as_u64(), field(&v)), (Some("validation_failed"), Some(400), "body"));
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(v["type"].as_str().is_some_and(|t| t.starts_with("https://")));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{"key":"x","bogus":1}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "bogus"));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{"key":5}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "key"));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{"key":"x","scopes":["a:b","NOPE"]}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "scopes[1]"));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{"key":"x","ip":"nowhere"}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "ip"));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{"key":"x","api_id":"con_123"}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "api_id"));
    let (st, v, _) = raw(&app, "/v1/verify", None, Vec::new()).await;
    assert_eq!((st, field(&v)), (400, "body"));
    let (st, v, _) = raw(&app, "/v1/verify", None, br#"{}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "key"));
    // Oversized bodies.
    let mut big = br#"{"a":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 70_000));
    big.extend(br#""}"#);
    let (st, v, _) = raw(&app, "/v1/keys", Some(&t.root), big.clone()).await;
    assert_eq!((st, v["code"].as_str()), (413, Some("payload_too_large")));
    let (st, _, _) = raw(&app, "/v1/verify", None, big).await;
    assert_eq!(st, 413);
    // Management bodies name nested fields.
    let k = app.make_key(&t, "acme", json!({})).await;
    let base = json!({"api_id": k.api_id, "consumer_id": k.consumer_id});
    let with = |extra: Value| {
        let mut b = base.clone();
        if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::to_vec(&b).expect("json")
    };
    for (extra, expect) in [
        (json!({"scopes": ["orders:read", "Bad Scope"]}), "scopes[1]"),
        (json!({"ratelimit": {"limit": 0, "window_seconds": 60}}), "ratelimit.limit"),
        (json!({"ratelimit": {"limit": "ten", "window_seconds": 60}}), "ratelimit.limit"),
        (json!({"meta": [1, 2]}), "meta"),
        (json!({"meta": {"x": "y".repeat(17_000)}}), "meta"),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"expires_at": "tomorrow"}), "expires_at"),
        (json!({"ip_allowlist": ["10.0.0.0/8", "nope"]}), "ip_allowlist[1]"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"name": ""}), "name"),
        (json!({"bogus": 1}), "bogus"),
    ] {
        let (st, v, _) = raw(&app, "/v1/keys", Some(&t.root), with(extra.clone())).await;
        assert_eq!((st, field(&v)), (400, expect), "{extra}: {v}");
    }
    let (st, v, _) = raw(
        &app,
        "/v1/apis",
        Some(&t.root),
        br#"{"name":"X","key_prefix":"Bad-Prefix","environment":"live"}"#.to_vec(),
    )
    .await;
    assert_eq!((st, field(&v)), (400, "key_prefix"));
    let (st, v, _) =
        raw(&app, "/v1/apis", Some(&t.root), br#"{"name":"X","key_prefix":"ok","environment":"prod"}"#.to_vec()).await;
    assert_eq!((st, field(&v)), (400, "environment"));
    let (st, v, _) =
        raw(&app, "/v1/consumers", Some(&t.root), br#"{"external_id":"a b","name":"X","email":"nope"}"#.to_vec()).await;
    assert_eq!(st, 400);
    let fields: Vec<&str> =
        v["errors"].as_array().map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect()).unwrap_or_default();
    assert_eq!(fields, vec!["external_id", "email"], "every bad field is named at once");
    // Lists reject bad paging.
    let (st, v) = app.get("/v1/keys?limit=0", &t.root).await;
    assert_eq!((st, field(&v)), (400, "limit"));
    let (st, v) = app.get("/v1/keys?limit=101", &t.root).await;
    assert_eq!((st, field(&v)), (400, "limit"));
    let (st, v) = app.get("/v1/keys?cursor=%27%20OR%201%3D1", &t.root).await;
    assert_eq!((st, field(&v)), (400, "cursor"));
    let (st, v) = app.get("/v1/keys?state=sleepy", &t.root).await;
    assert_eq!((st, field(&v)), (400, "state"));
    // Nothing was lost: the key still verifies.
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
}
both_backends!(bad_bodies, bad_bodies_are_400_problems_naming_the_field);

async fn authentication_is_required_and_scoped(app: TestApp) {
    let t = app.tenant("Acme").await;
    let res = app.client.get(app.url("/v1/keys")).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    for bad in ["kr_root_bogus", "Basic abc", "", "acme_live_nope"] {
        let (st, v) = app.get("/v1/keys", bad).await;
        assert_eq!(st, 401, "{bad}: {v}");
        assert_eq!(v["code"], "unauthenticated");
    }
    // A regular API key is not a root key.
    let k = app.make_key(&t, "acme", json!({})).await;
    assert_eq!(app.get("/v1/keys", &k.secret).await.0, 401);
    // A narrow root key is refused what it lacks.
    let (st, rk) = app.post("/v1/root-keys", &t.root, json!({"name": "ci", "scopes": ["keys:read"]})).await;
    assert_eq!(st, 201, "{rk}");
    let narrow = rk["secret"].as_str().expect("secret").to_owned();
    assert!(narrow.starts_with("kr_root_"));
    assert_eq!(app.get("/v1/keys", &narrow).await.0, 200);
    let (st, v) = app.post("/v1/keys", &narrow, json!({"api_id": k.api_id, "consumer_id": k.consumer_id})).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(app.get("/v1/root-keys", &narrow).await.0, 403, "only * may manage root keys");
    let (st, v) = app.post("/v1/root-keys", &t.root, json!({"scopes": ["keys:fly"]})).await;
    assert_eq!((st, field(&v)), (400, "scopes[0]"));
    // Revoking a root key locks it out at once.
    let (st, _) = app
        .post(
            &format!("/v1/root-keys/{}/revoke", rk["key"]["id"].as_str().unwrap_or_default()),
            &t.root,
            json!({"reason": "rotated out"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(app.get("/v1/keys", &narrow).await.0, 401);
    let (st, list) = app.get("/v1/root-keys", &t.root).await;
    assert_eq!(st, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
    assert!(!list.to_string().contains(&narrow));
}
both_backends!(authentication, authentication_is_required_and_scoped);

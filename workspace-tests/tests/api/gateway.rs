//! `/v1/gateway/auth` as a gateway calls it: the API's header and route rules, the original
//! request from the forwarding headers, and the answers a gateway acts on (200 with headers for
//! the upstream, 401, 403, 429), over both backends.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, spawn_node_with};

/// Asks as nginx does: GET, the original method and URI in headers.
async fn ask(app: &TestApp, api: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
    let mut req = app.client.get(app.url(&format!("/v1/gateway/auth?api_id={api}")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("sent");
    let status = res.status().as_u16();
    let h = res.headers().clone();
    let body = res.text().await.unwrap_or_default();
    (status, h, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn gateways_get_a_verdict_per_request(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({"scopes": ["orders:read"]})).await;
    let patch = |body: Value| {
        let (app, root, api) = (&app, t.root.clone(), k.api_id.clone());
        async move { app.call(reqwest::Method::PATCH, &format!("/v1/apis/{api}"), &root, Some(body)).await }
    };
    for (bad, field) in [
        (json!({"gateway": {"header": "x api key"}}), "gateway.header"),
        (json!({"gateway": {"routes": [{"method": "FETCH", "path_prefix": "/a"}]}}), "gateway.routes[0].method"),
        (json!({"gateway": {"routes": [{"path_prefix": "orders"}]}}), "gateway.routes[0].path_prefix"),
        (json!({"gateway": {"routes": [{"path_prefix": "/a", "scopes": ["a b"]}]}}), "gateway.routes[0].scopes[0]"),
        (json!({"gateway": {"header": "x-api-key", "rules": []}}), "rules"),
    ] {
        let (st, p) = patch(bad.clone()).await;
        assert_eq!(st, 400, "{bad} → {p}");
        assert!(p["detail"].as_str().unwrap_or_default().contains(field), "{bad} → {p}");
    }
    let (_, api) = app.get(&format!("/v1/apis/{}", k.api_id), &t.root).await;
    assert_eq!(api["gateway"], json!({"header": "authorization", "routes": []}), "the defaults");

    // The defaults: the Bearer scheme, no route rules.
    let bearer = format!("Bearer {}", k.secret);
    let (st, hd, _) = ask(&app, &k.api_id, &[("authorization", &bearer), ("x-original-uri", "/anything")]).await;
    assert_eq!(st, 200);
    assert_eq!(h(&hd, "x-keyroll-key-id"), k.key_id);
    assert_eq!(h(&hd, "x-keyroll-consumer-id"), k.consumer_id);
    assert!(h(&hd, "x-keyroll-external-id").starts_with("cus_"));
    assert_eq!(h(&hd, "x-keyroll-scopes"), "orders:read");

    let rules = json!({"gateway": {"header": "X-API-Key", "routes": [
        {"method": "GET", "path_prefix": "/orders", "scopes": ["orders:read"]},
        {"method": "POST", "path_prefix": "/orders", "scopes": ["orders:write"]},
        {"path_prefix": "/health"}
    ]}});
    let (st, api) = patch(rules).await;
    assert_eq!(st, 200, "{api}");
    assert_eq!(api["gateway"]["header"], "x-api-key", "{api}");
    assert_eq!(api["gateway"]["routes"][2]["method"], "*");
    let key = k.secret.as_str();
    let get = |uri: &'static str| [("x-api-key", key), ("x-original-method", "GET"), ("x-original-uri", uri)];
    let (st, hd, _) = ask(&app, &k.api_id, &get("/orders/7?full=1")).await;
    assert_eq!((st, h(&hd, "x-keyroll-key-id")), (200, k.key_id.as_str()));
    assert_eq!(ask(&app, &k.api_id, &get("/health")).await.0, 200, "a route without scopes");

    // A missing scope, a route without rules, no key, a wrong key.
    let post = [("x-api-key", key), ("x-original-method", "POST"), ("x-original-uri", "/orders")];
    let (st, hd, p) = ask(&app, &k.api_id, &post).await;
    assert_eq!((st, &p["code"]), (403, &json!("INSUFFICIENT_SCOPE")), "{p}");
    assert!(h(&hd, "www-authenticate").contains("error=\"insufficient_scope\", scope=\"orders:write\""));
    let (st, _, p) = ask(&app, &k.api_id, &get("/admin")).await;
    assert_eq!((st, &p["code"]), (403, &json!("NO_ROUTE")), "{p}");
    let (st, hd, p) = ask(&app, &k.api_id, &[("x-original-uri", "/orders")]).await;
    assert_eq!((st, &p["code"]), (401, &json!("MISSING")));
    assert_eq!(h(&hd, "www-authenticate"), "Bearer realm=\"keyroll\"", "no credentials, no error code");
    let wrong = "acme_live_0000000000000000000000000000000000000000000000";
    let (st, hd, _) = ask(&app, &k.api_id, &[("x-api-key", wrong), ("x-original-uri", "/orders")]).await;
    assert_eq!(st, 401);
    assert!(h(&hd, "www-authenticate").contains("error=\"invalid_token\""), "{hd:?}");
    assert_eq!(ask(&app, &k.api_id, &[("authorization", &bearer), ("x-original-uri", "/orders")]).await.0, 401);

    // The forwarded headers of Caddy and Traefik; the API in a header; Envoy's appended path.
    let caddy = [("x-api-key", key), ("x-forwarded-method", "POST"), ("x-forwarded-uri", "/orders")];
    assert_eq!(ask(&app, &k.api_id, &caddy).await.0, 403);
    let res = app
        .client
        .post(app.url("/v1/gateway/auth/orders/7"))
        .header("x-keyroll-api", &k.api_id)
        .header("x-api-key", key)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 403, "Envoy's POST /orders/7 needs orders:write");
    let res = app
        .client
        .get(app.url("/v1/gateway/auth/orders/7"))
        .header("x-keyroll-api", &k.api_id)
        .header("x-api-key", key)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let none = app.client.get(app.url("/v1/gateway/auth")).header("x-api-key", key).send().await.expect("sent");
    assert_eq!(none.status().as_u16(), 404, "no API named");
    let other = "api_00000000000000000000000000";
    assert_eq!(ask(&app, other, &get("/orders")).await.0, 404, "no such API");

    // Another API's key is not found here.
    let theirs = app.make_key(&t, "beta", json!({})).await;
    let (st, _, _) = ask(&app, &k.api_id, &[("x-api-key", &theirs.secret), ("x-original-uri", "/health")]).await;
    assert_eq!(st, 401);

    // Rotation: both versions pass during the overlap, the old one with Deprecation and Sunset.
    let (st, r) = app.post(&format!("/v1/keys/{}/rotate", k.key_id), &t.root, json!({"overlap_seconds": 600})).await;
    assert_eq!(st, 201, "{r}");
    let new = r["secret"].as_str().expect("secret").to_owned();
    let (st, hd, _) = ask(&app, &k.api_id, &get("/orders")).await;
    assert_eq!(st, 200);
    assert!(h(&hd, "deprecation").starts_with('@') && h(&hd, "sunset").ends_with("GMT"), "{hd:?}");
    let (st, hd, _) =
        ask(&app, &k.api_id, &[("x-api-key", &new), ("x-original-method", "GET"), ("x-original-uri", "/orders")]).await;
    assert_eq!(st, 200);
    assert!(hd.get("deprecation").is_none());
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "gone"})).await;
    assert_eq!(st, 200);
    let (st, _, p) = ask(&app, &k.api_id, &get("/orders")).await;
    assert_eq!((st, &p["code"]), (401, &json!("REVOKED")), "the old version refused after");

    // Rate limits: 429 with Retry-After; an address outside the allowlist: 403.
    let limited = app
        .make_key(&t, "acme", json!({"scopes": ["orders:read"], "ratelimit": {"limit": 1, "window_seconds": 60}}))
        .await;
    let once = [("x-api-key", limited.secret.as_str()), ("x-original-method", "GET"), ("x-original-uri", "/orders")];
    crate::helpers::clear_of_window_end(60).await;
    assert_eq!(ask(&app, &k.api_id, &once).await.0, 200);
    let (st, hd, p) = ask(&app, &k.api_id, &once).await;
    assert_eq!((st, &p["code"]), (429, &json!("RATE_LIMITED")), "{p}");
    let wait: u64 = h(&hd, "retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let fenced = app.make_key(&t, "acme", json!({"scopes": ["orders:read"], "ip_allowlist": ["10.0.0.0/8"]})).await;
    let from = |ip: &'static str| {
        [
            ("x-api-key", fenced.secret.as_str()),
            ("x-original-uri", "/orders"),
            ("x-original-method", "GET"),
            ("x-real-ip", ip),
        ]
    };
    // From a caller that is not a trusted proxy, forwarding headers change nothing: the
    // caller's own address (loopback) is outside the allowlist.
    let (st, _, p) = ask(&app, &k.api_id, &from("10.1.2.3")).await;
    assert_eq!((st, &p["code"]), (403, &json!("IP_NOT_ALLOWED")), "{p}");
    // A node that trusts the gateway's address reads them: the right-most untrusted address.
    let trusting = spawn_node_with(&app.shared, None, &[("trusted_proxies", "127.0.0.1, ::1")]).await;
    assert_eq!(ask(&trusting, &k.api_id, &from("10.1.2.3")).await.0, 200);
    let (st, _, p) = ask(&trusting, &k.api_id, &from("203.0.113.9")).await;
    assert_eq!((st, &p["code"]), (403, &json!("IP_NOT_ALLOWED")), "{p}");
    let chain = |xff: &'static str| {
        [
            ("x-api-key", fenced.secret.as_str()),
            ("x-original-uri", "/orders"),
            ("x-original-method", "GET"),
            ("x-forwarded-for", xff),
        ]
    };
    assert_eq!(ask(&trusting, &k.api_id, &chain("203.0.113.9, 10.1.2.3")).await.0, 200);
    let (st, _, p) = ask(&trusting, &k.api_id, &chain("10.9.9.9, 203.0.113.9")).await;
    assert_eq!((st, &p["code"]), (403, &json!("IP_NOT_ALLOWED")), "a forged entry to the left is ignored: {p}");
}
both_backends!(gateway_auth, gateways_get_a_verdict_per_request);

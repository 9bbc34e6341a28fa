//! The `keyroll-client` crate against a running node: the verify client and its cache, the
//! actix-web middleware in front of a real actix server, the tower layer, and the key holder
//! picking up a policy's rotation and rotating itself.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use keyroll_client::actix::KeyrollAuth;
use keyroll_client::tower::KeyrollLayer;
use keyroll_client::{
    CallbackSink, Check, FileSink, HolderOptions, KeyHolder, Outcome, Sink, Verification, VerifyClient,
};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

async fn node_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let (shared, dir) = fresh(backend).await?;
    Some(spawn_node_with(&shared, dir, extra).await)
}

/// A node that lets clients keep valid answers for 30 s.
async fn caching(backend: Backend) {
    let Some(app) = node_with(backend, &[("cache.client_ttl_seconds", "30")]).await else { return };
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "shop", json!({})).await;
    let client = VerifyClient::new(&app.address).expect("client");
    let check = Check::default().api(k.api_id.clone()).scopes(["orders:read"]);
    let first = client.verify(&k.secret, &check).await.expect("verified");
    assert!(first.valid && !first.cached, "{first:?}");
    assert_eq!(first.consumer.as_ref().map(|c| c.id.as_str()), Some(k.consumer_id.as_str()));
    let second = client.verify(&k.secret, &check).await.expect("verified");
    assert!(second.valid && second.cached, "kept as the server allows");
    // Another question about the same key is asked anew.
    let other = client.verify(&k.secret, &Check::default().scopes(["billing:read"])).await.expect("verified");
    assert_eq!((other.code.as_str(), other.cached), ("INSUFFICIENT_SCOPE", false));
    let again = client.verify(&k.secret, &Check::default().scopes(["billing:read"])).await.expect("verified");
    assert!(!again.cached, "refusals are never kept");
    // A revocation reaches this client when its answer runs out (or the cache is cleared).
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "test"})).await;
    assert_eq!(st, 200);
    assert!(client.verify(&k.secret, &check).await.expect("verified").cached);
    client.clear_cache();
    assert_eq!(client.verify(&k.secret, &check).await.expect("verified").code, "REVOKED");

    // Keys whose rate limit or credits every verification counts against are never kept.
    let limited = app.make_key(&t, "shop", json!({"credits": {"remaining": 10}})).await;
    for _ in 0..2 {
        let v = client.verify(&limited.secret, &Check::default()).await.expect("verified");
        assert!(v.valid && !v.cached, "{v:?}");
    }
    // A superseded key is kept no longer than its overlap.
    let old = app.make_key(&t, "shop", json!({})).await;
    let (st, _) = app.post(&format!("/v1/keys/{}/rotate", old.key_id), &t.root, json!({"overlap_seconds": 2})).await;
    assert_eq!(st, 201);
    let res = app.client.post(app.url("/v1/verify")).json(&json!({"key": old.secret})).send().await.expect("sent");
    let cc = res.headers()["cache-control"].to_str().expect("ascii").to_owned();
    assert!(cc == "private, max-age=2" || cc == "private, max-age=1", "{cc}");
    let v = client.verify(&old.secret, &Check::default()).await.expect("verified");
    assert!(v.sunset.is_some() && v.deprecation.is_some(), "{v:?}");
}
mod client_cache_follows_the_server {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::caching(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        super::caching(super::Backend::Services).await;
    }
}

/// The default node says `no-store`: every verification asks, so a revocation is seen at once.
async fn no_store(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "shop", json!({})).await;
    let res = app.client.post(app.url("/v1/verify")).json(&json!({"key": k.secret})).send().await.expect("sent");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let client = VerifyClient::new(&app.address).expect("client");
    assert!(!client.verify(&k.secret, &Check::default()).await.expect("verified").cached);
    assert!(!client.verify(&k.secret, &Check::default()).await.expect("verified").cached);
    assert_eq!(client.cached_len(), 0);
    app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "test"})).await;
    assert_eq!(client.verify(&k.secret, &Check::default()).await.expect("verified").code, "REVOKED");
}
both_backends!(client_asks_every_time_by_default, no_store);

async fn whoami(req: HttpRequest) -> HttpResponse {
    let v = req.extensions().get::<Arc<Verification>>().cloned();
    HttpResponse::Ok().body(v.and_then(|v| v.consumer.clone()).map(|c| c.external_id).unwrap_or_default())
}

/// A real actix-web server on its own thread, protected by `KeyrollAuth`.
fn protected_server(keyroll: &str, api_id: &str) -> String {
    let client = Arc::new(VerifyClient::new(keyroll).expect("client"));
    let api_id = api_id.to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bound");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .service(
                        web::scope("/orders")
                            .wrap(KeyrollAuth::new(Arc::clone(&client)).api(api_id.clone()).scopes(["orders:read"]))
                            .route("", web::get().to(whoami)),
                    )
                    .service(
                        web::scope("/x")
                            .wrap(KeyrollAuth::new(Arc::clone(&client)).header("x-api-key"))
                            .route("", web::get().to(whoami)),
                    )
            })
            .workers(1)
            .listen(listener)
            .expect("listening")
            .run()
            .await
            .expect("served");
        });
    });
    format!("http://127.0.0.1:{port}")
}

async fn actix_middleware(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "shop", json!({"scopes": ["orders:read"]})).await;
    let narrow = app.make_key(&t, "shop", json!({"scopes": ["billing:read"]})).await;
    let limited = app.make_key(&t, "shop", json!({"ratelimit": {"limit": 1, "window_seconds": 60}})).await;
    let (_, con) = app.get(&format!("/v1/consumers/{}", k.consumer_id), &t.root).await;
    let server = protected_server(&app.address, &k.api_id);
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut r = http.get(format!("{server}{path}"));
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        r.send()
    };
    let res = get("/orders", Some(&k.secret)).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.text().await.expect("body"), con["external_id"].as_str().expect("external id"));
    let res = get("/orders", None).await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"keyroll\"");
    let res = get("/orders", Some("shop_live_nope")).await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    assert!(res.headers()["www-authenticate"].to_str().expect("ascii").contains("invalid_token"));
    let res = get("/orders", Some(&narrow.secret)).await.expect("sent");
    assert_eq!(res.status().as_u16(), 403);
    let body: serde_json::Value = res.json().await.expect("problem");
    assert_eq!(body["code"], "INSUFFICIENT_SCOPE");
    crate::helpers::clear_of_window_end(60).await;
    // The other route takes the key from X-API-Key and needs no scope.
    let res = http.get(format!("{server}/x")).header("x-api-key", &limited.secret).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let res = http.get(format!("{server}/x")).header("x-api-key", &limited.secret).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // Rotated: the old key passes during the overlap, and its caller hears of the rotation.
    let (st, rotated) =
        app.post(&format!("/v1/keys/{}/rotate", k.key_id), &t.root, json!({"overlap_seconds": 600})).await;
    assert_eq!(st, 201, "{rotated}");
    let res = get("/orders", Some(&k.secret)).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().contains_key("sunset") && res.headers().contains_key("deprecation"));
    let new_secret = rotated["secret"].as_str().expect("secret");
    let res = get("/orders", Some(new_secret)).await.expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    assert!(!res.headers().contains_key("sunset"));
    app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "done"})).await;
    assert_eq!(get("/orders", Some(&k.secret)).await.expect("sent").status().as_u16(), 401);
}
both_backends!(client_actix_middleware, actix_middleware);

#[derive(Clone)]
struct Hello;

impl tower_service::Service<http::Request<String>> for Hello {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<String>) -> Self::Future {
        let v = req.extensions().get::<Arc<Verification>>().cloned();
        std::future::ready(Ok(http::Response::new(v.and_then(|v| v.key.clone()).map(|k| k.id).unwrap_or_default())))
    }
}

async fn tower_layer(app: TestApp) {
    use tower_layer::Layer;
    use tower_service::Service;
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "shop", json!({"scopes": ["orders:read"]})).await;
    let client = Arc::new(VerifyClient::new(&app.address).expect("client"));
    let mut service = KeyrollLayer::new(client).api(k.api_id.clone()).scopes(["orders:read"]).layer(Hello);
    let mut ask = async |key: Option<&str>| {
        let mut req = http::Request::builder().uri("/orders");
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        std::future::poll_fn(|cx| service.poll_ready(cx)).await.expect("ready");
        service.call(req.body(String::new()).expect("request")).await.expect("answered")
    };
    let res = ask(Some(&k.secret)).await;
    assert_eq!((res.status().as_u16(), res.body().as_str()), (200, k.key_id.as_str()));
    let res = ask(None).await;
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = ask(Some("shop_live_nope")).await;
    assert_eq!(res.status().as_u16(), 401);
    // Keyroll out of reach: refused, never let through.
    let down = Arc::new(VerifyClient::new("http://127.0.0.1:9").expect("client"));
    let mut closed = KeyrollLayer::new(down).layer(Hello);
    let req = http::Request::builder().header("authorization", format!("Bearer {}", k.secret)).body(String::new());
    let res = closed.call(req.expect("request")).await.expect("answered");
    assert_eq!(res.status().as_u16(), 503);
}
both_backends!(client_tower_layer, tower_layer);

async fn holder(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "shop", json!({})).await;
    let dir = std::env::temp_dir().join(format!("keyroll-holder-{}", crate::helpers::unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("key");
    FileSink::new(&file).store(&k.secret).expect("stored");
    let options = HolderOptions {
        rotate_before: Duration::from_secs(2 * 86_400),
        overlap_seconds: 600,
        ..HolderOptions::default()
    };
    let holder = KeyHolder::from_sink(&app.address, FileSink::new(&file), options.clone()).expect("holder");
    assert_eq!(&*holder.current(), k.secret.as_str());
    // No policy: nothing to do.
    assert_eq!(holder.check().await.expect("checked"), Outcome::Unchanged);

    // A policy that rotates every 30 days: 29 days in, the holder rotates first.
    let (st, p) = app
        .post("/v1/policies", &t.root, json!({"api_id": k.api_id, "interval_days": 30, "overlap_seconds": 3600}))
        .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(holder.check().await.expect("checked"), Outcome::Unchanged, "30 days away");
    crate::policies::backdate(&app, &k.key_id, 29).await;
    let Outcome::Rotated { key_id: second_id } = holder.check().await.expect("checked") else {
        panic!("the holder rotates before the policy would")
    };
    let second = holder.current().to_string();
    assert_ne!(second, k.secret);
    assert_eq!(FileSink::new(&file).load().expect("read").as_deref(), Some(second.as_str()), "kept in the file");
    assert_eq!(app.verify_code(&second).await, "VALID");
    let old = app.verify(json!({"key": k.secret})).await;
    assert_eq!(old["rotation"]["state"], "superseded", "the old key works through the overlap: {old}");
    assert_eq!(holder.check().await.expect("checked"), Outcome::Unchanged, "the new version starts afresh");

    // The policy rotates the version when it is due: the holder picks the new one up.
    crate::policies::backdate(&app, &second_id, 31).await;
    keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("scanned");
    let (_, list) = app.get(&format!("/v1/keys?lineage_id={}", k.key_id), &t.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(3), "{list}");
    holder.observe(&{
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("sunset", "Tue, 01 Dec 2026 00:00:00 GMT".parse().expect("value"));
        h
    });
    let Outcome::PickedUp { key_id: third_id } = holder.check().await.expect("checked") else {
        panic!("the holder picks up the policy's new version")
    };
    let third = holder.current().to_string();
    assert!(third != second && app.verify_code(&third).await == "VALID");
    assert_eq!(app.verify(json!({"key": third})).await["key"]["id"], json!(third_id));
    assert_eq!(FileSink::new(&file).load().expect("read").as_deref(), Some(third.as_str()));

    // A sink that fails: the new key is used anyway, and kept at the next check.
    let fails = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let kept = Arc::new(std::sync::Mutex::new(String::new()));
    let (f, s) = (Arc::clone(&fails), Arc::clone(&kept));
    let sink = CallbackSink(move |key: &str| {
        if f.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("disk full".to_owned());
        }
        *s.lock().expect("lock") = key.to_owned();
        Ok(())
    });
    let flaky = KeyHolder::new(&app.address, &third, sink, options).expect("holder");
    crate::policies::backdate(&app, &third_id, 29).await;
    assert!(flaky.check().await.is_err(), "the sink's refusal is reported");
    let fourth = flaky.current().to_string();
    assert_ne!(fourth, third, "the new key is held anyway");
    assert_eq!(app.verify_code(&fourth).await, "VALID");
    fails.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(flaky.check().await.expect("checked"), Outcome::Unchanged);
    assert_eq!(*kept.lock().expect("lock"), fourth, "kept at the next check");
    std::fs::remove_dir_all(&dir).ok();
}
both_backends!(client_key_holder, holder);

/// A settings value this test file depends on is refused when out of range.
#[tokio::test]
async fn client_ttl_is_bounded() {
    if let Some(app) = node_with(Backend::Sqlite, &[("cache.client_ttl_seconds", "300")]).await {
        assert_eq!(app.state.settings.cache.client_ttl_seconds, 300);
    }
    let e = keyroll::config::Settings::from_pairs(vec![("cache.client_ttl_seconds", "301")]).expect_err("refused");
    assert!(e.to_string().contains("KEYROLL_CACHE__CLIENT_TTL_SECONDS"), "{e}");
}

//! Rate limits on the verify path: counted per key, the answer says what is left and when the
//! window ends, and nodes sharing Redis share the count.

use serde_json::json;

use crate::helpers::{Backend, TestApp, fresh, spawn_node};

/// A window of 31 days: no test runs across its end.
const LONG: u32 = 2_678_400;

async fn rate_limited_keys(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let limited = app.make_key(&acme, "acme", json!({"ratelimit": {"limit": 3, "window_seconds": LONG}})).await;
    let free = app.make_key(&acme, "acme", json!({})).await;
    for left in [2, 1, 0] {
        let v = app.verify(json!({"key": limited.secret})).await;
        assert_eq!(v["code"], "VALID", "{v}");
        assert_eq!(v["ratelimit"]["limit"], 3);
        assert_eq!(v["ratelimit"]["remaining"], left);
        assert!(v["ratelimit"]["reset_at"].as_str().is_some_and(|s| s.ends_with('Z')), "{v}");
    }
    let v = app.verify(json!({"key": limited.secret})).await;
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(false), Some("RATE_LIMITED")), "{v}");
    assert_eq!(v["ratelimit"]["remaining"], 0);
    assert!(v["key"].is_object(), "the key is still named");
    // A verification that fails for another reason does not count.
    let v = app.verify(json!({"key": limited.secret, "scopes": ["admin:*"]})).await;
    assert_eq!(v["code"], "INSUFFICIENT_SCOPE");
    assert!(v["ratelimit"].is_null());
    let v = app.verify(json!({"key": free.secret})).await;
    assert_eq!(v["code"], "VALID");
    assert!(v["ratelimit"].is_null() && v.as_object().is_some_and(|o| o.contains_key("ratelimit")), "{v}");
}

crate::both_backends!(rate_limits, rate_limited_keys);

/// Two nodes, one Redis: 40 verifications at once, half on each node, against a limit of 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_count() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"ratelimit": {"limit": 10, "window_seconds": LONG}})).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, url) =
            if i % 2 == 0 { (a.client.clone(), a.url("/v1/verify")) } else { (b.client.clone(), b.url("/v1/verify")) };
        let body = json!({"key": k.secret});
        calls.spawn(async move {
            let v: serde_json::Value =
                client.post(url).json(&body).send().await.expect("sent").json().await.expect("json");
            v["code"].as_str().unwrap_or_default().to_owned()
        });
    }
    let codes = calls.join_all().await;
    let valid = codes.iter().filter(|c| *c == "VALID").count();
    let limited = codes.iter().filter(|c| *c == "RATE_LIMITED").count();
    assert_eq!((valid, limited), (10, 30), "{codes:?}");
}

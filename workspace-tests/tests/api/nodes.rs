//! Several nodes sharing PostgreSQL and Redis: a change on one is obeyed by the others at once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cache::{acme_key, insert_silently};
use crate::helpers::{Backend, TestApp, fresh, spawn_node};

async fn two_nodes() -> Option<(TestApp, TestApp)> {
    let (shared, dir) = fresh(Backend::Services).await?;
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    Some((a, b))
}

async fn wait_for(node: &TestApp, key: &str, code: &str) -> Duration {
    let started = Instant::now();
    loop {
        if node.verify_code(key).await == code {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(1), "{code} not seen on the other node within 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_node_is_obeyed_by_the_other_within_a_second() {
    let Some((a, b)) = two_nodes().await else { return };
    let t = a.tenant("Acme").await;
    let k = a.make_key(&t, "acme", json!({})).await;
    // B caches the key (L1), and keeps answering from its cache.
    for _ in 0..3 {
        assert_eq!(b.verify_code(&k.secret).await, "VALID");
    }
    let (st, _) = a.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "leaked"})).await;
    assert_eq!(st, 200);
    let took = wait_for(&b, &k.secret, "REVOKED").await;
    eprintln!("revocation seen on the other node after {took:?}");
    // The same for a disable, and for a root key.
    let k2 = a.make_key(&t, "acme", json!({})).await;
    assert_eq!(b.verify_code(&k2.secret).await, "VALID");
    a.call(reqwest::Method::PATCH, &format!("/v1/keys/{}", k2.key_id), &t.root, Some(json!({"enabled": false}))).await;
    wait_for(&b, &k2.secret, "DISABLED").await;
    let (_, rk) = a.post("/v1/root-keys", &t.root, json!({"scopes": ["keys:read"]})).await;
    let narrow = rk["secret"].as_str().expect("secret").to_owned();
    assert_eq!(b.get("/v1/keys", &narrow).await.0, 200);
    a.post(
        &format!("/v1/root-keys/{}/revoke", rk["key"]["id"].as_str().unwrap_or_default()),
        &t.root,
        json!({"reason": "x"}),
    )
    .await;
    let started = Instant::now();
    while b.get("/v1/keys", &narrow).await.0 != 401 {
        assert!(started.elapsed() < Duration::from_secs(1), "root key revocation not obeyed within 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_on_one_node_is_not_hidden_by_anothers_negative_cache() {
    let Some((a, b)) = two_nodes().await else { return };
    let t = a.tenant("Acme").await;
    let made = a.make_key(&t, "acme", json!({})).await;
    let k = acme_key();
    assert_eq!(b.verify_code(k.expose()).await, "NOT_FOUND");
    insert_silently(&a, &t, &made, k.clone()).await;
    a.state.cache.announce_created(&[k.hash()]).await;
    wait_for(&b, k.expose(), "VALID").await;
    // A key created through the API verifies on the other node straight away.
    let fresh_key = a.make_key(&t, "acme", json!({})).await;
    assert_eq!(b.verify_code(&fresh_key.secret).await, "VALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_the_redis_tier() {
    let Some((a, b)) = two_nodes().await else { return };
    let t = a.tenant("Acme").await;
    let k = a.make_key(&t, "acme", json!({})).await;
    assert_eq!(a.verify_code(&k.secret).await, "VALID");
    let l2 = a.state.cache.l2().expect("redis tier");
    let cached = l2.get(&keyroll::domain::KeyHash::of(&k.secret)).await.expect("redis answers");
    assert!(cached.is_some_and(|d| d.id == k.key_id), "the record is in Redis after a miss");
    assert_eq!(b.verify_code(&k.secret).await, "VALID");
    let metrics = b.client.get(b.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("keyroll_cache_lookups_total{tier=\"l2\",result=\"hit\"} 1"), "{metrics}");
    assert!(metrics.contains("keyroll_redis_up 1"));
}

/// Nodes starting together on an empty PostgreSQL database migrate one at a time (an advisory
/// lock): all come up. With `migrate_on_start` off, a node refuses a schema that is behind, and
/// starts once `keyroll migrate` (here: one migration run) has brought it up to date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_never_migrate_at_the_same_time() {
    let Some((shared, _)) = fresh(Backend::Services).await else { return };
    let settings = |extra: &[(&'static str, &'static str)]| {
        let mut pairs: Vec<(&str, &str)> =
            vec![("listen", "127.0.0.1:0"), ("database_url", shared.database_url.as_str()), ("workers", "1")];
        pairs.extend_from_slice(extra);
        keyroll::config::Settings::from_pairs(pairs).expect("settings")
    };
    let refused = keyroll::startup::Application::build(settings(&[("migrate_on_start", "false")])).await;
    let message = format!("{:#}", refused.err().expect("a schema that is behind is refused"));
    assert!(message.contains("run `keyroll migrate` first"), "{message}");
    let build = || keyroll::startup::Application::build(settings(&[]));
    let (a, b, c) = tokio::join!(build(), build(), build());
    for built in [a, b, c] {
        let app = built.expect("every node comes up");
        assert_eq!(keyroll::store::pending_migrations(&app.state().db).await.expect("read"), 0);
    }
    let app = keyroll::startup::Application::build(settings(&[("migrate_on_start", "false")])).await;
    assert!(app.is_ok(), "an up-to-date schema is accepted without migrating");
}

//! Negative caching never hides a newly created key.

use keyroll::domain::{ApiId, ApiKey, ConsumerId, Environment, KeyHead, KeyPrefix, ScopeSet, TenantId};
use keyroll::store::keys::{NewKey, insert_with_secret};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Made, Tenant, TestApp};

pub fn acme_key() -> ApiKey {
    ApiKey::generate(&KeyHead::Api { prefix: KeyPrefix::parse("acme").expect("prefix"), env: Environment::Live })
}

/// Inserts `secret` as a key of `made`'s API and consumer, as `POST /v1/keys` does, but without
/// telling any cache.
pub async fn insert_silently(app: &TestApp, t: &Tenant, made: &Made, secret: ApiKey) {
    let new = NewKey {
        tenant_id: TenantId::from_trusted(t.id.clone()),
        api_id: ApiId::from_trusted(made.api_id.clone()),
        consumer_id: Some(ConsumerId::from_trusted(made.consumer_id.clone())),
        is_root: false,
        lineage: None,
        name: None,
        scopes: ScopeSet::default(),
        meta: json!({}),
        enabled: true,
        expires_at: None,
        ratelimit: None,
        credits: None,
        ip_allowlist: None,
        created_by: None,
    };
    insert_with_secret(&app.state.db, new, secret).await.expect("inserted");
}

async fn negative_entries_are_dropped_on_creation(app: TestApp) {
    let t = app.tenant("Acme").await;
    let made = app.make_key(&t, "acme", json!({})).await;
    let k = acme_key();
    // A miss read while an invalidation arrives (here: the bus echoing the key just made) is
    // rightly not cached, so the lookup is repeated until the miss is held.
    let mut held = false;
    for _ in 0..50 {
        assert_eq!(app.verify_code(k.expose()).await, "NOT_FOUND");
        if app.state.cache.cached(&k.hash()) == Some(false) {
            held = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(held, "the miss is cached");
    insert_silently(&app, &t, &made, k.clone()).await;
    // What key creation does after commit:
    app.state.cache.announce_created(&[k.hash()]).await;
    assert_eq!(app.verify_code(k.expose()).await, "VALID");
}
both_backends!(negative_cache, negative_entries_are_dropped_on_creation);

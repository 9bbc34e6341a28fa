//! `POST /v1/verify`: codes, scopes, API scoping, state changes, response shape.

use chrono::{TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

async fn valid_key_verifies_with_key_and_consumer(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({"meta": {"plan": "pro"}})).await;
    assert!(k.secret.starts_with("acme_live_"));
    let v = app.verify(json!({"key": k.secret})).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["code"], "VALID");
    assert!(v["request_id"].as_str().is_some_and(|r| r.starts_with("req_")));
    assert_eq!(v["key"]["id"], k.key_id.as_str());
    assert_eq!(v["key"]["lineage_id"], k.key_id.as_str());
    assert_eq!(v["key"]["version"], 1);
    assert_eq!(v["key"]["meta"]["plan"], "pro");
    assert_eq!(v["key"]["scopes"], json!(["orders:*"]));
    assert_eq!(v["consumer"]["id"], k.consumer_id.as_str());
    assert!(v["consumer"]["external_id"].as_str().is_some_and(|e| e.starts_with("cus_")));
    assert_eq!(v["api_id"], k.api_id.as_str());
    assert!(v["rotation"].is_null() && v["ratelimit"].is_null() && v["credits"].is_null());
    assert!(v.get("rotation").is_some(), "rotation is present as null");
    // The secret never appears in the answer.
    assert!(!v.to_string().contains(&k.secret));
}
both_backends!(valid_key, valid_key_verifies_with_key_and_consumer);

async fn scopes_and_api_are_checked(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({"scopes": ["orders:*", "billing:read"]})).await;
    let code = |v: serde_json::Value| v["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code(app.verify(json!({"key": k.secret, "scopes": ["orders:read", "orders:write"]})).await), "VALID");
    assert_eq!(code(app.verify(json!({"key": k.secret, "scopes": ["billing:read"]})).await), "VALID");
    let v = app.verify(json!({"key": k.secret, "scopes": ["billing:write"]})).await;
    assert_eq!(code(v.clone()), "INSUFFICIENT_SCOPE");
    assert_eq!(v["valid"], false);
    assert_eq!(v["key"]["id"], k.key_id.as_str(), "a found key is described even when refused");
    assert_eq!(code(app.verify(json!({"key": k.secret, "api_id": k.api_id})).await), "VALID");
    // A key of another API of the same tenant is NOT_FOUND, with the short body.
    let (_, other) =
        app.post("/v1/apis", &t.root, json!({"name": "Other", "key_prefix": "other", "environment": "test"})).await;
    let v = app.verify(json!({"key": k.secret, "api_id": other["id"]})).await;
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(v.as_object().map(serde_json::Map::len), Some(3), "only valid, code, request_id: {v}");
}
both_backends!(scopes_and_api, scopes_and_api_are_checked);

async fn state_changes_take_effect_at_once(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    let path = format!("/v1/keys/{}", k.key_id);
    let (st, body) = app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"enabled": false}))).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"], "disabled");
    assert_eq!(app.verify_code(&k.secret).await, "DISABLED");
    app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"enabled": true, "scopes": ["billing:read"]}))).await;
    let v = app.verify(json!({"key": k.secret, "scopes": ["billing:read"]})).await;
    assert_eq!(v["code"], "VALID", "new scopes are seen at once: {v}");
    // Expiry is derived from time: a key whose expires_at passed is EXPIRED with no job running.
    use keyroll::store::entities::key;
    key::Entity::update_many()
        .col_expr(key::Column::ExpiresAt, Expr::value(Utc::now() + TimeDelta::milliseconds(300)))
        .filter(key::Column::Id.eq(k.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("expiry set");
    app.state.cache.invalidate(&[keyroll::domain::KeyHash::of(&k.secret)]).await;
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(app.verify_code(&k.secret).await, "EXPIRED", "expiry needs no invalidation");
    // Revocation is final.
    let (st, body) =
        app.post(&format!("/v1/keys/{}/revoke", k.key_id), &t.root, json!({"reason": "leaked in a log"})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"], "revoked");
    assert_eq!(body["revoked_reason"], "leaked in a log");
    let v = app.verify(json!({"key": k.secret})).await;
    assert_eq!((v["code"].as_str(), v["valid"].as_bool()), (Some("REVOKED"), Some(false)));
    let (st, _) = app.call(reqwest::Method::PATCH, &path, &t.root, Some(json!({"enabled": true}))).await;
    assert_eq!(st, 409, "a revoked key cannot be re-enabled");
    assert_eq!(app.verify_code(&k.secret).await, "REVOKED");
}
both_backends!(state_changes, state_changes_take_effect_at_once);

async fn ip_allowlist_is_enforced(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({"ip_allowlist": ["203.0.113.0/24", "2001:db8::1"]})).await;
    let code = |v: serde_json::Value| v["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code(app.verify(json!({"key": k.secret, "ip": "203.0.113.9"})).await), "VALID");
    assert_eq!(code(app.verify(json!({"key": k.secret, "ip": "2001:db8::1"})).await), "VALID");
    assert_eq!(code(app.verify(json!({"key": k.secret, "ip": "198.51.100.7"})).await), "IP_NOT_ALLOWED");
    assert_eq!(code(app.verify(json!({"key": k.secret})).await), "IP_NOT_ALLOWED");
}
both_backends!(ip_allowlist, ip_allowlist_is_enforced);

async fn root_keys_and_unknown_keys_are_not_found(app: TestApp) {
    let t = app.tenant("Acme").await;
    assert_eq!(app.verify_code(&t.root).await, "NOT_FOUND", "root keys are not verifiable");
    let stranger = keyroll::domain::ApiKey::generate(&keyroll::domain::KeyHead::Api {
        prefix: keyroll::domain::KeyPrefix::parse("acme").expect("prefix"),
        env: keyroll::domain::Environment::Live,
    });
    assert_eq!(app.verify_code(stranger.expose()).await, "NOT_FOUND");
    assert_eq!(app.verify_code(stranger.expose()).await, "NOT_FOUND", "again, from the negative cache");
}
both_backends!(not_found, root_keys_and_unknown_keys_are_not_found);

async fn usage_is_counted_and_flushed(app: TestApp) {
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    for _ in 0..3 {
        app.verify(json!({"key": k.secret})).await;
    }
    app.verify(json!({"key": k.secret, "scopes": ["x:y"]})).await;
    let (_, before) = app.get(&format!("/v1/keys/{}", k.key_id), &t.root).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last_used = before["last_used_at"].clone();
    while last_used.is_null() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last_used = app.get(&format!("/v1/keys/{}", k.key_id), &t.root).await.1["last_used_at"].clone();
    }
    assert!(last_used.is_string(), "last_used_at set by the flush");
    use keyroll::store::entities::usage_rollup;
    let rows = usage_rollup::Entity::find()
        .filter(usage_rollup::Column::KeyId.eq(k.key_id.as_str()))
        .all(&app.state.db)
        .await
        .expect("rollups");
    let count = |code: &str| rows.iter().filter(|r| r.code == code).map(|r| r.count).sum::<i64>();
    assert_eq!(count("VALID"), 3);
    assert_eq!(count("INSUFFICIENT_SCOPE"), 1);
    assert!(rows.iter().all(|r| r.tenant_id == t.id && r.granularity == "minute"));
}
both_backends!(usage_counters, usage_is_counted_and_flushed);

async fn last_use_moves_forward_only_for_many_keys_at_once(app: TestApp) {
    // A flush names thousands of keys; they are written 5 000 to a statement, and a time never
    // goes back (another node may have written a later one).
    use keyroll::store::entities::key;
    use sea_orm::{PaginatorTrait, QuerySelect};
    let t = app.tenant("Acme").await;
    let (_, api) =
        app.post("/v1/apis", &t.root, json!({"name": "Bulk", "key_prefix": "bulk", "environment": "live"})).await;
    let keys: Vec<_> = (0..5_203)
        .map(|i| {
            let hash = keyroll::domain::KeyHash::of(&format!("last-use-{i}-{}", crate::helpers::unique())).to_hex();
            json!({"sha256": hash, "api_id": api["id"], "external_id": format!("cus_{}", i % 50)})
        })
        .collect();
    let (st, r) = app.post("/v1/keys/import", &t.root, json!({"import_id": "last-use", "keys": keys})).await;
    assert_eq!((st, r["imported"].as_u64()), (200, Some(5_203)), "{r}");
    let ids: Vec<String> =
        r["key_ids"].as_array().expect("ids").iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let at = |secs: i64| chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time");
    let touch = |uses: Vec<(String, chrono::DateTime<Utc>)>| {
        let db = app.state.db.clone();
        async move { keyroll::store::usage::touch_last_used(&db, &uses).await.expect("touched") }
    };
    let tenant = t.id.clone();
    let used_at = |t: chrono::DateTime<Utc>| {
        key::Entity::find()
            .filter(key::Column::TenantId.eq(tenant.as_str()))
            .filter(key::Column::LastUsedAt.eq(t))
            .count(&app.state.db)
    };
    touch(ids.iter().map(|id| (id.clone(), at(10))).collect()).await;
    assert_eq!(used_at(at(10)).await.expect("count"), 5_203);
    // Earlier for all, later for every other key: only the later ones move.
    touch(ids.iter().map(|id| (id.clone(), at(5))).collect()).await;
    touch(ids.iter().step_by(2).map(|id| (id.clone(), at(20))).collect()).await;
    assert_eq!(used_at(at(10)).await.expect("count"), 2_601);
    assert_eq!(used_at(at(20)).await.expect("count"), 2_602);
    let last: Option<Option<chrono::DateTime<Utc>>> = key::Entity::find_by_id(ids[5_202].as_str())
        .select_only()
        .column(key::Column::LastUsedAt)
        .into_tuple()
        .one(&app.state.db)
        .await
        .expect("key");
    assert_eq!(last, Some(Some(at(20))), "the last key of the second statement");
}
both_backends!(last_use_batches, last_use_moves_forward_only_for_many_keys_at_once);

async fn minute_counts_add_up_for_many_cells_at_once(app: TestApp) {
    // A flush names thousands of cells, 5 000 to a statement; a cell already there (written by
    // an earlier flush, or by another node) is added to, never written twice or over.
    use keyroll::store::entities::usage_rollup;
    use keyroll::store::usage::{UsageCount, add_minute_counts};
    use sea_orm::{ActiveValue::Set, PaginatorTrait};
    let t = app.tenant("Acme").await;
    let minute = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a whole minute");
    let cell = |i: usize, code: &'static str, count: i64| UsageCount {
        bucket_start: if i.is_multiple_of(2) { minute } else { minute + TimeDelta::minutes(1) },
        key_id: format!("key_counted_{i:05}"),
        tenant_id: t.id.clone(),
        code,
        count,
    };
    // One cell as any other writer of the table leaves it.
    usage_rollup::Entity::insert(usage_rollup::ActiveModel {
        bucket_start: Set(minute),
        granularity: Set("minute".into()),
        key_id: Set("key_counted_00000".into()),
        code: Set("VALID".into()),
        tenant_id: Set(t.id.clone()),
        count: Set(1_000),
    })
    .exec_without_returning(&app.state.db)
    .await
    .expect("a cell");
    let first: Vec<UsageCount> = (0..6_001).map(|i| cell(i, "VALID", 2)).collect();
    add_minute_counts(&app.state.db, first).await.expect("counts");
    let mut second: Vec<UsageCount> = (0..6_001).step_by(3).map(|i| cell(i, "VALID", 5)).collect();
    second.push(cell(7, "RATE_LIMITED", 4));
    add_minute_counts(&app.state.db, second).await.expect("counts");
    let rows = usage_rollup::Entity::find()
        .filter(usage_rollup::Column::TenantId.eq(t.id.as_str()))
        .all(&app.state.db)
        .await
        .expect("rollups");
    assert_eq!(rows.len(), 6_002, "one row per cell");
    let count = |key: &str, code: &str| {
        rows.iter().filter(|r| r.key_id == key && r.code == code).map(|r| (r.count, r.bucket_start)).collect::<Vec<_>>()
    };
    assert_eq!(count("key_counted_00000", "VALID"), vec![(1_007, minute)], "the earlier cell added to");
    assert_eq!(count("key_counted_00001", "VALID"), vec![(2, minute + TimeDelta::minutes(1))]);
    assert_eq!(count("key_counted_06000", "VALID"), vec![(7, minute)], "the last of the second statement");
    assert_eq!(count("key_counted_00007", "RATE_LIMITED"), vec![(4, minute + TimeDelta::minutes(1))]);
    let total: i64 = rows.iter().map(|r| r.count).sum();
    assert_eq!(total, 1_000 + 6_001 * 2 + 2_001 * 5 + 4);
    let in_first_minute = usage_rollup::Entity::find()
        .filter(usage_rollup::Column::TenantId.eq(t.id.as_str()))
        .filter(usage_rollup::Column::BucketStart.eq(minute))
        .count(&app.state.db)
        .await
        .expect("count");
    assert_eq!(in_first_minute, 3_001, "cells are found by their minute as the other queries write it");
}
both_backends!(minute_count_batches, minute_counts_add_up_for_many_cells_at_once);

async fn superseded_keys_carry_rotation_headers(app: TestApp) {
    // Rotation itself is its own feature; here the verify contract for a superseded version.
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let grace = Utc::now() + TimeDelta::days(7);
    let superseded = Utc::now() - TimeDelta::minutes(5);
    use keyroll::store::entities::key;
    key::Entity::update_many()
        .col_expr(key::Column::GraceEndsAt, Expr::value(grace))
        .col_expr(key::Column::SupersededAt, Expr::value(superseded))
        .filter(key::Column::Id.eq(k.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("superseded");
    app.state.cache.invalidate(&[keyroll::domain::KeyHash::of(&k.secret)]).await;
    let res = app.client.post(app.url("/v1/verify")).json(&json!({"key": k.secret})).send().await.expect("sent");
    let dep = res.headers().get("deprecation").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let sunset = res.headers().get("sunset").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["rotation"]["state"], "superseded");
    assert_eq!(dep, Some(format!("@{}", superseded.timestamp())));
    assert_eq!(sunset, Some(grace.format("%a, %d %b %Y %H:%M:%S GMT").to_string()));
}
both_backends!(superseded_headers, superseded_keys_carry_rotation_headers);

//! Rate limits and credits on the verify path — counted per key, the answer says what is left,
//! nodes share the count, and a balance never goes below zero, however many nodes spend it —
//! and the usage they leave behind, by key, consumer and API.

use serde_json::json;

use crate::helpers::{Backend, TestApp, fresh, spawn_node, verify_on_both};

/// A window of 31 days: no test runs across its end.
const LONG: u32 = 2_678_400;

/// The events of `event_type` in the tenant's log, once `n` of them are there (they are queued
/// off the verification's path).
async fn events_of(app: &TestApp, root: &str, event_type: &str, n: usize) -> Vec<serde_json::Value> {
    let started = std::time::Instant::now();
    loop {
        let (_, events) = app.get("/v1/events?limit=100", root).await;
        let found: Vec<serde_json::Value> = events["data"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["type"] == event_type).cloned().collect())
            .unwrap_or_default();
        if found.len() >= n {
            return found;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no {event_type} event: {events}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

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
    assert_eq!(app.verify_code(&limited.secret).await, "RATE_LIMITED");
    // The first refusal of the window, and only it, is announced.
    let exceeded = events_of(&app, &acme.root, "ratelimit.exceeded", 1).await;
    assert_eq!(exceeded[0]["data"]["key_id"], limited.key_id.as_str());
    assert_eq!(exceeded[0]["data"]["limit"], 3);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(events_of(&app, &acme.root, "ratelimit.exceeded", 1).await.len(), 1, "once per window");
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
    let answers = verify_on_both(&a, &b, &k.secret, 40).await;
    let codes: Vec<&str> = answers.iter().map(|v| v["code"].as_str().unwrap_or_default()).collect();
    let valid = codes.iter().filter(|c| **c == "VALID").count();
    let limited = codes.iter().filter(|c| **c == "RATE_LIMITED").count();
    assert_eq!((valid, limited), (10, 30), "{codes:?}");
}

async fn credits(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({"credits": {"remaining": 5}})).await;
    let spend = |cost: u64| {
        let secret = k.secret.clone();
        let app = &app;
        async move { app.verify(json!({"key": secret, "cost": cost})).await }
    };
    let v = spend(2).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("VALID"), Some(3)), "{v}");
    assert!(
        app.get("/v1/events?limit=100", &acme.root).await.1["data"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["type"] != "credits.low"))
    );
    let v = spend(3).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("VALID"), Some(0)), "{v}");
    let v = spend(1).await;
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(false), Some("USAGE_EXCEEDED")), "{v}");
    assert_eq!(v["credits"]["remaining"], 0);
    let v = spend(0).await;
    assert_eq!(v["code"], "VALID", "a free call passes with nothing left: {v}");
    // Reaching a tenth of the balance it was set to (here 0 of 5) is announced once.
    let low = events_of(&app, &acme.root, "credits.low", 1).await;
    assert_eq!(
        (low[0]["data"]["key_id"].as_str(), low[0]["data"]["remaining"].as_u64()),
        (Some(k.key_id.as_str()), Some(0))
    );

    // A balance set again is the new baseline: topped up to 1 000, it is low again at 100.
    let (st, _) = app.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 1000}})).await;
    assert_eq!(st, 200);
    let v = spend(899).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("VALID"), Some(101)), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(events_of(&app, &acme.root, "credits.low", 1).await.len(), 1, "not low above a tenth of 1 000");
    assert_eq!(spend(1).await["credits"]["remaining"], 100);
    let low = events_of(&app, &acme.root, "credits.low", 2).await;
    assert_eq!(low[0]["data"]["remaining"], 100, "{low:?}");

    // A rotation does not refill: both versions spend from one balance.
    let (st, _) = app.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 4}})).await;
    assert_eq!(st, 200);
    assert_eq!(spend(1).await["credits"]["remaining"], 3);
    let (st, rotated) =
        app.post(&format!("/v1/keys/{}/rotate", k.key_id), &acme.root, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();
    let v = app.verify(json!({"key": new_secret, "cost": 2})).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("VALID"), Some(1)), "{v}");
    assert_eq!(spend(1).await["credits"]["remaining"], 0, "the old version spends the same balance");

    // A daily refill happens once, at the first verification of a new day.
    let daily = app
        .make_key(&acme, "acme", json!({"credits": {"remaining": 0, "refill": {"interval": "daily", "amount": 5}}}))
        .await;
    let v = app.verify(json!({"key": daily.secret})).await;
    assert_eq!(v["code"], "USAGE_EXCEEDED", "no refill within the day it was set: {v}");
    use sea_orm::ConnectionTrait;
    let sql = format!("UPDATE key_credits SET period = '2000-01-01' WHERE lineage_id = '{}'", daily.key_id);
    app.state.db.execute_unprepared(&sql).await.expect("yesterday");
    // A balance Redis holds is read again from the database once dropped.
    app.state.credits.forget(&app.state.cache, std::slice::from_ref(&daily.key_id)).await;
    let v = app.verify(json!({"key": daily.secret})).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("VALID"), Some(4)), "{v}");
    assert_eq!(app.verify(json!({"key": daily.secret})).await["credits"]["remaining"], 3, "refilled once");
    let (st, err) = app
        .post(
            "/v1/keys",
            &acme.root,
            json!({"api_id": k.api_id, "consumer_id": k.consumer_id, "credits": {"remaining": -1}}),
        )
        .await;
    assert_eq!(st, 400, "{err}");
}

crate::both_backends!(credit_balances, credits);

/// Two nodes spend one balance of 50 with 200 verifications at once: exactly 50 pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_never_go_below_zero_across_nodes() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 50}})).await;
    let answers: Vec<(String, Option<u64>)> = verify_on_both(&a, &b, &k.secret, 200)
        .await
        .iter()
        .map(|v| (v["code"].as_str().unwrap_or_default().to_owned(), v["credits"]["remaining"].as_u64()))
        .collect();
    let valid = answers.iter().filter(|(c, _)| c == "VALID").count();
    let exceeded = answers.iter().filter(|(c, _)| c == "USAGE_EXCEEDED").count();
    assert_eq!((valid, exceeded), (50, 150));
    assert!(answers.iter().all(|(_, left)| left.is_some()), "every answer says what is left");
    let v = b.verify(json!({"key": k.secret})).await;
    assert_eq!((v["code"].as_str(), v["credits"]["remaining"].as_u64()), (Some("USAGE_EXCEEDED"), Some(0)));
    // One spend of all 200 took the balance to a tenth of 50: one `credits.low`, from either node.
    events_of(&a, &acme.root, "credits.low", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let low = events_of(&a, &acme.root, "credits.low", 1).await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0]["data"]["remaining"], 5);
}

async fn usage_by_key_consumer_and_api(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let quiet = app.make_key(&acme, "acme", json!({})).await;
    for _ in 0..3 {
        assert_eq!(app.verify_code(&k.secret).await, "VALID");
    }
    let v = app.verify(json!({"key": k.secret, "scopes": ["admin:*"]})).await;
    assert_eq!(v["code"], "INSUFFICIENT_SCOPE");
    // Counts reach the database at the next flush (every 100 ms in tests).
    let path = format!("/v1/keys/{}/usage?granularity=minute", k.key_id);
    let started = std::time::Instant::now();
    let usage = loop {
        let (st, u) = app.get(&path, &acme.root).await;
        assert_eq!(st, 200, "{u}");
        if u["totals"]["VALID"] == 3 && u["totals"]["INSUFFICIENT_SCOPE"] == 1 {
            break u;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{u}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(usage["granularity"], "minute");
    let buckets = usage["data"].as_array().expect("buckets");
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{usage}");
    assert_eq!(buckets.iter().map(|b| b["total"].as_i64().unwrap_or(0)).sum::<i64>(), 4);
    let (_, hourly) = app.get(&format!("/v1/keys/{}/usage", k.key_id), &acme.root).await;
    assert_eq!(hourly["granularity"], "hour");
    assert!(hourly["data"][0]["bucket_start"].as_str().is_some_and(|s| s.ends_with(":00:00Z")), "{hourly}");
    for path in
        [format!("/v1/consumers/{}/usage?granularity=day", k.consumer_id), format!("/v1/apis/{}/usage", k.api_id)]
    {
        let (st, u) = app.get(&path, &acme.root).await;
        assert_eq!(st, 200, "{u}");
        assert_eq!(
            (u["totals"]["VALID"].as_i64(), u["totals"]["INSUFFICIENT_SCOPE"].as_i64()),
            (Some(3), Some(1)),
            "{path}: {u}"
        );
    }
    let (_, none) = app.get(&format!("/v1/keys/{}/usage", quiet.key_id), &acme.root).await;
    assert_eq!(none["data"], json!([]));
    for (query, field) in [
        ("granularity=week", "granularity"),
        ("from=yesterday", "from"),
        ("from=2026-11-30T10:00:00Z&to=2026-11-30T09:00:00Z", "from"),
        ("granularity=minute&from=2026-01-01T00:00:00Z&to=2026-11-30T00:00:00Z", "from"),
    ] {
        let (st, err) = app.get(&format!("/v1/keys/{}/usage?{query}", k.key_id), &acme.root).await;
        assert_eq!((st, err["errors"][0]["field"].as_str()), (400, Some(field)), "{query}: {err}");
    }
    let other = app.tenant("Other").await;
    let (st, _) = app.get(&format!("/v1/keys/{}/usage", k.key_id), &other.root).await;
    assert_eq!(st, 404);
}

crate::both_backends!(usage, usage_by_key_consumer_and_api);

/// Minute counts roll up into hours and days; retention removes old minutes but their hours and
/// days still answer; rolling again counts nothing twice.
async fn usage_rolls_up(app: TestApp) {
    use chrono::{DurationRound, TimeDelta, Utc};
    use keyroll::store::usage::{UsageCount, add_minute_counts, roll_up};
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let day = (Utc::now() - TimeDelta::days(3)).duration_trunc(TimeDelta::days(1)).expect("day");
    let old = (Utc::now() - TimeDelta::days(10)).duration_trunc(TimeDelta::days(1)).expect("day");
    let count = |at, code, n| UsageCount {
        bucket_start: at,
        key_id: k.key_id.clone(),
        tenant_id: acme.id.clone(),
        code,
        count: n,
    };
    let ten = day + TimeDelta::hours(10);
    let rfc = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    add_minute_counts(
        &app.state.db,
        vec![
            count(ten + TimeDelta::minutes(1), "VALID", 5),
            count(ten + TimeDelta::minutes(2), "VALID", 7),
            count(ten + TimeDelta::minutes(2), "REVOKED", 1),
            count(ten + TimeDelta::minutes(65), "VALID", 3),
            count(old + TimeDelta::hours(8), "VALID", 11),
            // Past the minutes' retention, beyond what one run rolls up.
            count(old + TimeDelta::hours(56), "VALID", 2),
        ],
    )
    .await
    .expect("counts");
    let settings = app.state.settings.usage;
    // One run rolls at most two days: minutes past their retention but not rolled up yet stay.
    roll_up(&app.state.db, Utc::now(), settings).await.expect("roll up");
    let (_, backlog) = app
        .get(
            &format!(
                "/v1/keys/{}/usage?granularity=minute&from={}&to={}",
                k.key_id,
                rfc(old + TimeDelta::hours(50)),
                rfc(old + TimeDelta::hours(60))
            ),
            &acme.root,
        )
        .await;
    assert_eq!(backlog["totals"]["VALID"], 2, "{backlog}");
    for _ in 0..2 {
        while roll_up(&app.state.db, Utc::now(), settings).await.expect("roll up") > 2 {}
    }
    let path =
        format!("/v1/keys/{}/usage?granularity=hour&from={}&to={}", k.key_id, rfc(ten), rfc(ten + TimeDelta::hours(3)));
    let (st, hours) = app.get(&path, &acme.root).await;
    assert_eq!(st, 200, "{hours}");
    assert_eq!(hours["data"][0]["bucket_start"], rfc(ten).as_str(), "{hours}");
    assert_eq!(hours["data"][0]["counts"], json!({"VALID": 12, "REVOKED": 1}), "{hours}");
    assert_eq!(hours["data"][1]["total"], 3, "{hours}");
    // Ten days back: the minutes are gone (7 days kept), the hour and the day remain.
    let (_, minutes) = app
        .get(
            &format!(
                "/v1/keys/{}/usage?granularity=minute&from={}&to={}",
                k.key_id,
                rfc(old),
                rfc(old + TimeDelta::days(1))
            ),
            &acme.root,
        )
        .await;
    assert_eq!(minutes["data"], json!([]), "{minutes}");
    let (_, days) =
        app.get(&format!("/v1/keys/{}/usage?granularity=day&from={}", k.key_id, rfc(old)), &acme.root).await;
    assert_eq!(days["totals"], json!({"VALID": 28, "REVOKED": 1}), "{days}");
    assert_eq!(days["data"][0]["bucket_start"], rfc(old).as_str());
}

crate::both_backends!(usage_rollups, usage_rolls_up);

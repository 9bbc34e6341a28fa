//! Anomaly alerts: synthetic traffic that must raise (a rate spike, a failure spike, a revoked
//! key still presented, an old version back from a new address, a `NOT_FOUND` burst after a
//! rotation) and ordinary traffic that must not; per-tenant thresholds; acknowledging and
//! resolving; `alert.raised` delivered to webhooks and the team's email.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use keyroll::alerts::scan;
use keyroll::store::usage::{ClientSeen, UsageCount, add_minute_counts, touch_clients};
use serde_json::{Value, json};

use crate::helpers::{Made, Tenant, TestApp};

/// Reads every closed minute up to `now` for anomalies, as the periodic job does.
async fn detect(app: &TestApp, now: DateTime<Utc>) {
    for _ in 0..10 {
        if scan::run(&app.state.db, now, TimeDelta::milliseconds(100)).await.expect("scan") == 0 {
            return;
        }
    }
    panic!("the detector did not catch up");
}

async fn alerts_of(app: &TestApp, t: &Tenant, query: &str) -> Vec<Value> {
    let (st, list) = app.get(&format!("/v1/alerts?limit=100{query}"), &t.root).await;
    assert_eq!(st, 200, "{list}");
    list["data"].as_array().cloned().unwrap_or_default()
}

fn kinds_about(alerts: &[Value], subject: &str) -> Vec<String> {
    let mut k: Vec<String> = alerts
        .iter()
        .filter(|a| a["subject_id"] == subject)
        .map(|a| a["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    k.sort();
    k
}

fn cell(t: &Tenant, k: &Made, at: DateTime<Utc>, code: &'static str, count: i64) -> UsageCount {
    UsageCount { bucket_start: at, key_id: k.key_id.clone(), tenant_id: t.id.clone(), code, count }
}

/// An hour of ordinary traffic (90–120 a minute, 1–3 % failures, deterministic noise).
fn ordinary(t: &Tenant, k: &Made, start: DateTime<Utc>, minutes: i64, seed: i64) -> Vec<UsageCount> {
    let mut out = Vec::new();
    for i in 0..minutes {
        let at = start + TimeDelta::minutes(i);
        let n = 90 + (i * 37 + seed * 11) % 31;
        let failed = 1 + (i * 7 + seed) % 3;
        out.push(cell(t, k, at, "VALID", n - failed));
        out.push(cell(t, k, at, "INSUFFICIENT_SCOPE", failed));
    }
    out
}

async fn synthetic_traffic(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let beta = app.tenant("Beta").await;
    // Beta watches its keys more closely than the defaults.
    let (st, t) = app
        .call(
            reqwest::Method::PATCH,
            "/v1/alert-thresholds",
            &beta.root,
            Some(json!({"rate_factor": 1.5, "rate_min": 10})),
        )
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (t["rate_factor"].as_f64(), t["rate_min"].as_u64(), t["warmup_minutes"].as_u64()),
        (Some(1.5), Some(10), Some(30))
    );
    let steady = app.make_key(&acme, "acme", json!({})).await;
    let spiking = app.make_key(&acme, "acme", json!({})).await;
    let failing = app.make_key(&acme, "acme", json!({})).await;
    let watched = app.make_key(&beta, "beta", json!({})).await;

    let now = Utc::now();
    let start = (now - TimeDelta::minutes(75)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
    let mut cells = Vec::new();
    for (i, (t, k)) in
        [(&acme, &steady), (&acme, &spiking), (&acme, &failing), (&beta, &watched)].into_iter().enumerate()
    {
        cells.extend(ordinary(t, k, start, 60, i64::try_from(i).unwrap_or(0)));
    }
    // Then one minute of trouble: 900 verifications, 70 % failures, and 1.8× for Beta's key.
    let trouble = start + TimeDelta::minutes(60);
    cells.extend(ordinary(&acme, &steady, trouble, 1, 9));
    cells.push(cell(&acme, &spiking, trouble, "VALID", 900));
    cells.push(cell(&acme, &failing, trouble, "VALID", 30));
    cells.push(cell(&acme, &failing, trouble, "INSUFFICIENT_SCOPE", 70));
    cells.push(cell(&beta, &watched, trouble, "VALID", 190));
    add_minute_counts(&app.state.db, cells).await.expect("counts");
    scan::set_mark(&app.state.db, start.timestamp() / 60).await.expect("mark");
    detect(&app, now).await;

    let raised = alerts_of(&app, &acme, "").await;
    assert!(kinds_about(&raised, &steady.key_id).is_empty(), "ordinary traffic raises nothing: {raised:?}");
    assert_eq!(kinds_about(&raised, &spiking.key_id), vec!["rate_spike"], "{raised:?}");
    assert_eq!(kinds_about(&raised, &failing.key_id), vec!["failure_spike"], "{raised:?}");
    assert_eq!(raised.len(), 2, "{raised:?}");
    let spike = raised.iter().find(|a| a["kind"] == "rate_spike").expect("spike");
    let summary = spike["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("900 verifications") && summary.contains("the baseline of"), "{summary}");
    let baseline = spike["evidence"]["baseline_per_minute"].as_f64().unwrap_or_default();
    assert!((90.0..=120.0).contains(&baseline), "explained by its baseline: {spike}");
    assert_eq!((spike["severity"].as_str(), spike["state"].as_str()), (Some("warning"), Some("open")));
    // The same traffic is trouble for Beta's thresholds, and only Beta sees its alert.
    let beta_alerts = alerts_of(&app, &beta, "").await;
    assert_eq!(kinds_about(&beta_alerts, &watched.key_id), vec!["rate_spike"], "{beta_alerts:?}");
    assert_eq!(beta_alerts.len(), 1);

    // Each new alert was announced once, to webhooks and to the team's owners by email.
    let events = events_of(&app, &acme, "alert.raised").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e["deliveries"].as_array().is_some_and(|d| d.iter().any(|d| d["channel"] == "email")))
    );
    // Another spiking minute adds to the live alert instead of raising a second one.
    // (a minute the detector has not read yet: it reads each minute once)
    let next = (now + TimeDelta::minutes(1)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
    add_minute_counts(&app.state.db, vec![cell(&acme, &spiking, next, "VALID", 1_200)]).await.expect("counts");
    detect(&app, now + TimeDelta::minutes(3)).await;
    let again = alerts_of(&app, &acme, "&kind=rate_spike").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["occurrences"], 2);
    assert!(again[0]["summary"].as_str().is_some_and(|s| s.contains("1200 verifications")), "{again:?}");
    assert_eq!(events_of(&app, &acme, "alert.raised").await.len(), 2, "announced once");

    // Acknowledge, then resolve; each once.
    let id = again[0]["id"].as_str().expect("id");
    let (st, a) = app.post(&format!("/v1/alerts/{id}/acknowledge"), &acme.root, json!({})).await;
    assert_eq!((st, a["state"].as_str()), (200, Some("acknowledged")), "{a}");
    assert!(a["acknowledged_by"].as_str().is_some_and(|s| s.starts_with("root_key:")), "{a}");
    let (st, _) = app.post(&format!("/v1/alerts/{id}/acknowledge"), &acme.root, json!({})).await;
    assert_eq!(st, 409);
    let (st, _) = app.post(&format!("/v1/alerts/{id}/resolve"), &beta.root, json!({})).await;
    assert_eq!(st, 404, "another tenant's alert");
    let (st, a) = app.post(&format!("/v1/alerts/{id}/resolve"), &acme.root, json!({})).await;
    assert_eq!((st, a["state"].as_str()), (200, Some("resolved")), "{a}");
    let (st, _) = app.post(&format!("/v1/alerts/{id}/resolve"), &acme.root, json!({})).await;
    assert_eq!(st, 409);
    assert_eq!(events_of(&app, &acme, "alert.resolved").await.len(), 1);
    let (_, audit) = app.get("/v1/audit-events?action=alert.", &acme.root).await;
    let actions: Vec<&str> =
        audit["data"].as_array().expect("audit").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, vec!["alert.resolved", "alert.acknowledged"], "{audit}");
    assert_eq!(alerts_of(&app, &acme, "&state=resolved").await.len(), 1);
    assert_eq!(alerts_of(&app, &acme, "&state=live").await.len(), 1);
    let (st, got) = app.get(&format!("/v1/alerts/{id}"), &acme.root).await;
    assert_eq!((st, got["state"].as_str()), (200, Some("resolved")));

    // Bad input is named.
    for (query, field) in [("state=bogus", "state"), ("kind=meteor", "kind"), ("limit=0", "limit")] {
        let (st, err) = app.get(&format!("/v1/alerts?{query}"), &acme.root).await;
        assert_eq!((st, err["errors"][0]["field"].as_str()), (400, Some(field)), "{query}: {err}");
    }
    let (st, _) = app.get("/v1/alerts/alr_nope", &acme.root).await;
    assert_eq!(st, 404);
    for (body, field) in [
        (json!({"rate_factor": 1.0}), "rate_factor"),
        (json!({"meteor": 1}), "meteor"),
        (json!({"rate_min": "many"}), "rate_min"),
        (json!({"half_life_minutes": 0}), "half_life_minutes"),
    ] {
        let (st, err) = app.call(reqwest::Method::PATCH, "/v1/alert-thresholds", &acme.root, Some(body.clone())).await;
        assert_eq!((st, err["errors"][0]["field"].as_str()), (400, Some(field)), "{body}: {err}");
    }
    let (_, t) = app.get("/v1/alert-thresholds", &acme.root).await;
    assert_eq!((t["rate_factor"].as_f64(), t["rate_min"].as_u64()), (Some(5.0), Some(60)), "nothing was lost: {t}");
}

crate::both_backends!(anomalies_in_synthetic_traffic, synthetic_traffic);

async fn events_of(app: &TestApp, t: &Tenant, event_type: &str) -> Vec<Value> {
    let (_, events) = app.get("/v1/events?limit=100", &t.root).await;
    events["data"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["type"] == event_type).cloned().collect())
        .unwrap_or_default()
}

/// Real verifications: a revoked key still presented, an old version back from an address it
/// never used after an hour's silence, unknown keys right after a rotation, credits running low.
async fn traffic_through_verify(app: TestApp) {
    use keyroll::domain::{ApiKey, Environment, KeyHead, KeyPrefix};
    let acme = app.tenant("Acme").await;
    // Lower than the default, so a burst split across two minutes is still one in each.
    let (st, _) =
        app.call(reqwest::Method::PATCH, "/v1/alert-thresholds", &acme.root, Some(json!({"not_found_min": 10}))).await;
    assert_eq!(st, 200);
    let revoked = app.make_key(&acme, "acme", json!({})).await;
    let old = app.make_key(&acme, "acme", json!({})).await;
    let ordinary = app.make_key(&acme, "acme", json!({})).await;
    let credits = app.make_key(&acme, "acme", json!({"credits": {"remaining": 10}})).await;
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", revoked.key_id), &acme.root, json!({"reason": "test"})).await;
    assert_eq!(st, 200);
    // `old` was last used two hours ago, from one address; then it was rotated.
    let before = (Utc::now() - TimeDelta::hours(2)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
    add_minute_counts(&app.state.db, vec![cell(&acme, &old, before, "VALID", 40)]).await.expect("counts");
    let seen = ClientSeen {
        key_id: old.key_id.clone(),
        tenant_id: acme.id.clone(),
        ip: "198.51.100.7".into(),
        first: before,
        last: before,
    };
    touch_clients(&app.state.db, &[seen]).await.expect("clients");
    let (st, rotated) =
        app.post(&format!("/v1/keys/{}/rotate", old.key_id), &acme.root, json!({"overlap_seconds": 86_400})).await;
    assert_eq!(st, 201, "{rotated}");

    for _ in 0..2 {
        assert_eq!(app.verify_code(&revoked.secret).await, "REVOKED");
    }
    let v = app.verify(json!({"key": old.secret, "ip": "203.0.113.50"})).await;
    assert_eq!(v["code"], "VALID", "still in its grace: {v}");
    for _ in 0..3 {
        let v = app.verify(json!({"key": ordinary.secret, "ip": "198.51.100.20"})).await;
        assert_eq!(v["code"], "VALID");
    }
    let head = KeyHead::Api { prefix: KeyPrefix::parse("acme").expect("prefix"), env: Environment::Live };
    for i in 0..25 {
        let unknown = ApiKey::generate(&head);
        let body = if i % 5 == 0 {
            json!({"key": unknown.expose(), "api_id": old.api_id})
        } else {
            json!({"key": unknown.expose()})
        };
        assert_eq!(app.verify(body).await["code"], "NOT_FOUND");
    }
    // The consumer hears of low credits by email too.
    let (st, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/consumers/{}", credits.consumer_id),
            &acme.root,
            Some(json!({"email": "bob@example.test"})),
        )
        .await;
    assert_eq!(st, 200);
    // Mistyped keys fail their checksum, and still count for the API their head names.
    for _ in 0..5 {
        let last = if old.secret.ends_with('x') { 'y' } else { 'x' };
        let typo = format!("{}{last}", &old.secret[..old.secret.len() - 1]);
        assert_eq!(app.verify(json!({"key": typo})).await["code"], "MALFORMED");
    }
    for _ in 0..9 {
        assert_eq!(app.verify_code(&credits.secret).await, "VALID");
    }
    // The counts reach the database at the next flush.
    let started = std::time::Instant::now();
    loop {
        let (_, u) = app.get(&format!("/v1/apis/{}/usage?granularity=minute", old.api_id), &acme.root).await;
        let (_, c) = app.get(&format!("/v1/keys/{}/usage?granularity=minute", credits.key_id), &acme.root).await;
        if u["totals"]["NOT_FOUND"] == 25
            && u["totals"]["MALFORMED"] == 5
            && u["totals"]["REVOKED"] == 2
            && c["totals"]["VALID"] == 9
        {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{u}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    detect(&app, Utc::now() + TimeDelta::minutes(2)).await;

    let raised = alerts_of(&app, &acme, "").await;
    assert_eq!(kinds_about(&raised, &revoked.key_id), vec!["revoked_key_used"], "{raised:?}");
    assert_eq!(kinds_about(&raised, &old.key_id), vec!["old_version_new_ip"], "{raised:?}");
    assert_eq!(kinds_about(&raised, &old.api_id), vec!["not_found_burst"], "{raised:?}");
    assert!(kinds_about(&raised, &ordinary.key_id).is_empty(), "{raised:?}");
    let leak = raised.iter().find(|a| a["kind"] == "old_version_new_ip").expect("leak");
    assert_eq!((leak["severity"].as_str(), leak["evidence"]["ip"].as_str()), (Some("critical"), Some("203.0.113.50")));
    assert!(leak["evidence"]["silent_minutes"].as_i64().is_some_and(|m| m >= 119), "{leak}");
    let burst = raised.iter().find(|a| a["kind"] == "not_found_burst").expect("burst");
    assert_eq!(burst["evidence"]["rotation_id"], rotated["rotation"]["id"], "{burst}");
    assert!(burst["evidence"]["unknown_keys"].as_u64().is_some_and(|n| (15..=30).contains(&n)), "{burst}");
    // `credits.low` keeps its own event and is listed beside the detector's alerts.
    let started = std::time::Instant::now();
    loop {
        let low = alerts_of(&app, &acme, "&kind=credits_low").await;
        if let Some(a) = low.first() {
            assert_eq!(
                (a["subject_id"].as_str(), a["severity"].as_str()),
                (Some(credits.key_id.as_str()), Some("info"))
            );
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no credits_low alert");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let low = events_of(&app, &acme, "credits.low").await;
    assert_eq!(low.len(), 1, "{low:?}");
    assert!(low[0]["deliveries"].as_array().is_some_and(|d| d.iter().any(|d| d["channel"] == "email")), "{low:?}");
    assert!(low[0]["data"]["key_start"].as_str().is_some_and(|s| s.starts_with("acme_live_")), "{low:?}");
    let announced: Vec<String> = events_of(&app, &acme, "alert.raised")
        .await
        .iter()
        .filter_map(|e| e["data"]["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(announced.len(), 3, "the detector's three, not credits_low: {announced:?}");
}

crate::both_backends!(anomalies_through_verify, traffic_through_verify);

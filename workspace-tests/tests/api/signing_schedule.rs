//! Each team's signing schedule: every N days or on a cron expression, with its own lead time,
//! through the API and the dashboard; the scheduler and on-demand rotations follow it.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::dashboard::Browser;
use crate::helpers::{Tenant, TestApp};

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}"))).expect("rfc3339").to_utc()
}

async fn schedule(app: &TestApp, t: &Tenant) -> Value {
    let (st, s) = app.get("/v1/signing-keys/schedule", &t.root).await;
    assert_eq!(st, 200, "{s}");
    s
}

async fn patch(app: &TestApp, t: &Tenant, body: Value) -> (u16, Value) {
    app.call(reqwest::Method::PATCH, "/v1/signing-keys/schedule", &t.root, Some(body)).await
}

/// Asks for a token (which makes the team's first signing key); the status.
async fn first_token(app: &TestApp, secret: &str) -> u16 {
    let auth = format!("Bearer {secret}");
    crate::tokens::token(app, Some(&auth), &[("grant_type", "client_credentials")]).await.0
}

/// The activation of the key that signs now.
async fn signing_since(app: &TestApp, t: &Tenant) -> DateTime<Utc> {
    let (_, l) = app.get("/v1/signing-keys", &t.root).await;
    let active = l["data"].as_array().expect("data").iter().find(|k| k["phase"] == "active").cloned();
    time(&active.unwrap_or_else(|| panic!("an active key: {l}"))["activates_at"])
}

async fn each_team_sets_its_signing_schedule(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let s = schedule(&app, &acme).await;
    assert_eq!(s, json!({"interval_days": 30, "cron": null, "lead_seconds": 3600, "next_rotation_at": null}));
    for t in [&acme, &umbrella] {
        let k = app.make_key(t, "sk", json!({})).await;
        assert_eq!(first_token(&app, &k.secret).await, 200);
    }
    let since = signing_since(&app, &acme).await;
    let s = schedule(&app, &acme).await;
    assert_eq!(time(&s["next_rotation_at"]), since + TimeDelta::days(30) - TimeDelta::hours(1), "{s}");

    // Bad input is refused by field and changes nothing.
    for (body, field) in [
        (json!({"interval_days": 1, "lead_seconds": 86_400}), "lead_seconds"),
        (json!({"interval_days": 0}), "interval_days"),
        (json!({"interval_days": 3651}), "interval_days"),
        (json!({"lead_seconds": -1}), "lead_seconds"),
        (json!({"lead_seconds": 604_801}), "lead_seconds"),
        (json!({"cron": "every tuesday"}), "cron"),
        (json!({"interval_days": 7, "cron": "0 0 * * *"}), "interval_days"),
    ] {
        let (st, p) = patch(&app, &acme, body.clone()).await;
        assert_eq!(st, 400, "{body}: {p}");
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
    }
    let (st, p) = patch(&app, &acme, json!({"every": 3})).await;
    assert_eq!(st, 400, "unknown fields are refused: {p}");
    assert_eq!(schedule(&app, &acme).await["interval_days"], 30);

    // A weekly schedule with a two-hour lead.
    let (st, s) = patch(&app, &acme, json!({"interval_days": 7, "lead_seconds": 7200})).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!((s["interval_days"].as_i64(), s["lead_seconds"].as_i64()), (Some(7), Some(7200)));
    assert_eq!(time(&s["next_rotation_at"]), since + TimeDelta::days(7) - TimeDelta::hours(2));
    let (_, audit) = app.get("/v1/audit-events?action=signing_key.schedule_updated", &acme.root).await;
    assert_eq!(audit["data"].as_array().map(Vec::len), Some(1), "{audit}");
    assert_eq!(schedule(&app, &umbrella).await["interval_days"], 30, "one team's schedule is its own");

    // A cron schedule replaces the interval.
    let (st, s) = patch(&app, &acme, json!({"cron": "0 3 1 * *"})).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!((s["interval_days"].clone(), s["cron"].as_str()), (Value::Null, Some("0 3 1 * *")));
    let next = time(&s["next_rotation_at"]) + TimeDelta::hours(2);
    assert_eq!(next.format("%d %H:%M").to_string(), "01 03:00", "{s}");
    let (st, s) = patch(&app, &acme, json!({"interval_days": 7})).await;
    assert_eq!((st, s["cron"].clone()), (200, Value::Null));

    // On demand, a rotation without a lead takes the team's lead.
    let (st, k) = app.post("/v1/signing-keys/rotate", &acme.root, json!({})).await;
    assert_eq!(st, 201, "{k}");
    let lead = time(&k["activates_at"]) - Utc::now();
    assert!((TimeDelta::minutes(118)..=TimeDelta::minutes(120)).contains(&lead), "{lead}");
    assert_eq!(schedule(&app, &acme).await["next_rotation_at"], Value::Null, "none while a key waits");
}

both_backends!(signing_schedule, each_team_sets_its_signing_schedule);

/// The scheduler follows each team's schedule: a team on a weekly schedule whose key is a week
/// old (less its lead) gets a successor published with its lead; a team on the default 30 days
/// whose key is as old is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_follows_each_teams_schedule() {
    use keyroll::store::entities::signing_key;
    use sea_orm::EntityTrait;
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let weekly = app.tenant("Acme").await;
    let monthly = app.tenant("Umbrella").await;
    for t in [&weekly, &monthly] {
        let k = app.make_key(t, "sk", json!({})).await;
        assert_eq!(first_token(&app, &k.secret).await, 200);
    }
    let (st, _) = patch(&app, &weekly, json!({"interval_days": 7, "lead_seconds": 1800})).await;
    assert_eq!(st, 200);
    let aged = Utc::now() - TimeDelta::days(7) + TimeDelta::minutes(20);
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::ActivatesAt, sea_orm::sea_query::Expr::value(aged))
        .exec(&app.state.db)
        .await
        .expect("aged");
    keyroll::app::signing_keys::scheduled(&app.state).await.expect("scheduled");
    let (_, l) = app.get("/v1/signing-keys", &weekly.root).await;
    assert_eq!(l["data"][0]["phase"], "published", "{l}");
    let lead = time(&l["data"][0]["activates_at"]) - Utc::now();
    assert!((TimeDelta::minutes(28)..=TimeDelta::minutes(30)).contains(&lead), "the team's lead: {lead}");
    let (_, l) = app.get("/v1/signing-keys", &monthly.root).await;
    assert_eq!(l["data"].as_array().map(Vec::len), Some(1), "a week-old key on the 30-day schedule stays: {l}");
}

/// The dashboard's schedule form: kept as typed with errors beside the fields, then saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_sets_the_signing_schedule() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let ann = Browser::new(&app);
    crate::dashboard::sign_up(&ann, "Acme", "ann@acme.test").await;
    let page = ann.get("/app/tokens").await;
    assert!(page.body.contains("id=\"signing-schedule\"") && page.body.contains("value=\"30\""), "{}", page.body);
    let csrf = page.csrf();
    let form = |every: &'static str, days: &'static str, cron: &'static str, lead: &'static str| {
        [("every", every), ("interval_days", days), ("cron", cron), ("lead_hours", lead)]
    };
    for (fields, error) in [
        (form("interval", "zero", "", "1"), "interval_days-error"),
        (form("interval", "1", "", "24"), "schedule_lead_hours-error"),
        (form("interval", "7", "", "-1"), "schedule_lead_hours-error"),
        (form("cron", "", "now and then", "1"), "cron-error"),
        (form("cron", "", "", "1"), "cron-error"),
    ] {
        let mut sent = vec![("csrf", csrf.as_str())];
        sent.extend(fields);
        let bad = ann.post("/app/tokens/schedule", &sent).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        assert!(bad.body.contains(&format!("id=\"{error}\"")), "{fields:?}: {}", bad.body);
        let typed = if fields[0].1 == "cron" { fields[2].1 } else { fields[1].1 };
        assert!(typed.is_empty() || bad.body.contains(&format!("value=\"{typed}\"")), "kept as typed: {fields:?}");
    }
    let mut sent = vec![("csrf", csrf.as_str())];
    sent.extend(form("cron", "", "0 4 * * 1", "0.5"));
    let saved = ann.post("/app/tokens/schedule", &sent).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Signing schedule saved") && saved.body.contains("value=\"0 4 * * 1\""));
    assert!(saved.body.contains("value=\"0.5\""), "{}", saved.body);
    let again = ann.get("/app/tokens").await;
    assert!(again.body.contains("value=\"0 4 * * 1\"") && again.body.contains("value=\"0.5\""), "stored");
    assert!(again.body.contains("value=\"cron\" checked"), "{}", again.body);
    let csrfless = ann.post("/app/tokens/schedule", &form("interval", "3", "", "1")).await;
    assert_eq!(csrfless.status, StatusCode::FORBIDDEN);
}

//! Alerts and charts in the dashboard: an alert raised by the detector is listed with its
//! figures, acknowledged and resolved; thresholds are edited with inline errors; usage charts on
//! the key, consumer and API pages read well with 30 days of minute data, before and after the
//! rollups.

use chrono::{DurationRound, TimeDelta, Utc};
use keyroll::alerts::scan;
use keyroll::store::usage::{UsageCount, add_minute_counts, roll_up};
use sea_orm::EntityTrait;

use crate::dashboard::ann_with_a_key;
use crate::helpers::TestApp;

fn bars(body: &str) -> usize {
    body.matches("class=\"hit\"").count()
}

async fn alerts_and_charts(app: TestApp) {
    let (ann, _, consumer_id, key_id) = ann_with_a_key(&app).await;
    let key = keyroll::store::entities::key::Entity::find_by_id(key_id.as_str())
        .one(&app.state.db)
        .await
        .expect("db")
        .expect("key");

    // Empty charts say so.
    let page = ann.get(&format!("/app/keys/{key_id}")).await;
    assert!(page.body.contains("No verification activity yet"), "{}", page.body);
    let alerts = ann.get("/app/alerts").await;
    assert!(alerts.body.contains("Nothing needs attention"));

    // 29 days of one verification a minute, then a spiking minute.
    let now = Utc::now();
    let start = (now - TimeDelta::days(29)).duration_trunc(TimeDelta::hours(1)).expect("hour");
    let end = (now - TimeDelta::minutes(30)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
    let mut cells = Vec::new();
    let mut at = start;
    while at < end {
        let code = if at.timestamp() % 3_600 == 0 { "INSUFFICIENT_SCOPE" } else { "VALID" };
        cells.push(UsageCount {
            bucket_start: at,
            key_id: key_id.clone(),
            tenant_id: key.tenant_id.clone(),
            code,
            count: 1,
        });
        at += TimeDelta::minutes(1);
    }
    let minutes = i64::try_from(cells.len()).expect("count");
    let hours = i64::try_from(cells.iter().filter(|c| c.code != "VALID").count()).expect("count");
    cells.push(UsageCount {
        bucket_start: end,
        key_id: key_id.clone(),
        tenant_id: key.tenant_id.clone(),
        code: "VALID",
        count: 500,
    });
    add_minute_counts(&app.state.db, cells).await.expect("counts");

    // The 30-day chart from the raw minutes, then from the rollups: the same figures, at most
    // 120 bars, the reasons in the tooltips.
    let expect = format!("accepted {}, rejected {hours}", minutes - hours + 500);
    let page = ann.get(&format!("/app/keys/{key_id}?range=30d")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&expect), "{expect} not in the summary");
    assert!((100..=120).contains(&bars(&page.body)), "{} bars", bars(&page.body));
    assert!(page.body.contains("(INSUFFICIENT_SCOPE 6)"), "six hours per merged bar, one rejection an hour");
    for _ in 0..40 {
        if roll_up(&app.state.db, now, app.state.settings.usage).await.expect("rollup") == 0 {
            break;
        }
    }
    let rolled = ann.get(&format!("/app/keys/{key_id}?range=30d")).await;
    assert!(rolled.body.contains(&expect), "the rollups say the same");
    for path in [format!("/app/consumers/{consumer_id}?range=7d"), format!("/app/keys/{key_id}?range=1h")] {
        let p = ann.get(&path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(p.body.contains("<svg class=\"chart\""), "{path}");
    }
    let apis = ann.get("/app/apis").await;
    let api_page = ann.get(&apis.link("/app/apis/api_")).await;
    assert_eq!(api_page.status, 200);
    assert!(api_page.body.contains("<svg class=\"chart\"") && api_page.body.contains("No rotation of this API"));

    // The detector reads the last two hours and raises the spike.
    scan::set_mark(&app.state.db, (end - TimeDelta::hours(2)).timestamp() / 60).await.expect("mark");
    for _ in 0..5 {
        if scan::run(&app.state.db, now, TimeDelta::milliseconds(100)).await.expect("scan") == 0 {
            break;
        }
    }
    let overview = ann.get("/app").await;
    assert!(overview.body.contains("1 open alert</a> needs attention"), "the overview says so");
    assert!(
        overview.body.contains("<p class=\"warning\" role=\"status\"><a href=\"/app/alerts\">"),
        "a warning, not green"
    );
    let alerts = ann.get("/app/alerts").await;
    assert!(alerts.body.contains("Rate spike") && alerts.body.contains("500 verifications"), "{}", alerts.body);
    assert!(alerts.body.contains(&format!("href=\"/app/keys/{key_id}\"")));
    assert!(alerts.body.contains("baseline per minute"), "the figures are shown");
    let alert_id =
        alerts.body.split("action=\"/app/alerts/").nth(1).and_then(|s| s.split('/').next()).expect("alert id");
    let csrf = alerts.csrf();
    let acked = ann.post(&format!("/app/alerts/{alert_id}/acknowledge"), &[("csrf", &csrf)]).await;
    assert_eq!(acked.status, 200);
    assert!(acked.body.contains("acknowledged by Ann"), "named as in the audit log: {}", acked.body);
    let overview = ann.get("/app").await;
    assert!(!overview.body.contains("1 open alert</a>"), "an acknowledged alert is no longer counted as open");
    let again = ann.post(&format!("/app/alerts/{alert_id}/acknowledge"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("only an open alert can be acknowledged"));
    let forged = ann.post(&format!("/app/alerts/{alert_id}/resolve"), &[("csrf", "nope")]).await;
    assert_eq!(forged.status, 403);
    let resolved = ann.post(&format!("/app/alerts/{alert_id}/resolve"), &[("csrf", &csrf)]).await;
    assert!(resolved.body.contains("Nothing needs attention"), "{}", resolved.body);
    assert!(ann.get("/app/alerts?state=resolved").await.body.contains("Rate spike"));

    // Thresholds: an error names the field and keeps what was typed; a valid change is saved.
    let page = ann.get("/app/alerts").await;
    let mut form: Vec<(String, String)> = page
        .body
        .split("<input id=\"t-")
        .skip(1)
        .filter_map(|s| {
            let name = s.split('"').next()?.to_owned();
            let value = s.split("value=\"").nth(1)?.split('"').next()?.to_owned();
            Some((name, value))
        })
        .collect();
    assert_eq!(form.len(), 11);
    for (k, v) in &mut form {
        if k == "rate_factor" {
            *v = "1.2".into();
        }
        if k == "silence_minutes" {
            *v = "soon".into();
        }
    }
    let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    fields.push(("csrf", &csrf));
    let bad = ann.post("/app/alerts/thresholds", &fields).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter a number.") && bad.body.contains("value=\"soon\""), "{}", bad.body);
    let fixed: Vec<(&str, &str)> =
        fields.iter().map(|(k, v)| if *k == "silence_minutes" { (*k, "90") } else { (*k, *v) }).collect();
    let bad = ann.post("/app/alerts/thresholds", &fixed).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("This must be between 1.5 and 1000."), "{}", bad.body);
    let good: Vec<(&str, &str)> =
        fixed.iter().map(|(k, v)| if *k == "rate_factor" { (*k, "8") } else { (*k, *v) }).collect();
    let saved = ann.post("/app/alerts/thresholds", &good).await;
    assert_eq!(saved.status, 200);
    assert!(saved.body.contains("Thresholds saved.") && saved.body.contains("value=\"90\""), "{}", saved.body);
    let audit = ann.get("/app/audit").await;
    assert!(audit.body.contains("Changed the anomaly alert thresholds"));
}

crate::both_backends!(dashboard_alerts, alerts_and_charts);

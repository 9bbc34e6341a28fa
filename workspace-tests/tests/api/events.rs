//! Every event type is emitted by some operation or detector of one install.

use chrono::{TimeDelta, Utc};
use keyroll::app::{self, Actor, Ctx};
use keyroll::domain::{EventType, TenantId};
use keyroll::store::entities::{event, key};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{TestApp, set_key_time};
use crate::operations::every_operation_on;

/// Every event type is emitted by some operation: together, the runs above and the rest of the
/// suite's scenarios cover the enum; this test drives the ones no table row emits and then
/// checks the whole enum against the outbox of one install.
async fn every_event_type_is_emitted(app: TestApp) {
    every_operation_on(&app).await;
    let t = app.tenant("Events").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let mut seen: std::collections::BTreeSet<String> =
        event::Entity::find().all(&app.state.db).await.expect("events").into_iter().map(|e| e.event_type).collect();
    // The rest, each from the operation or detector that emits it.
    let limited = app.make_key(&t, "evt", json!({"ratelimit": {"limit": 1, "window_seconds": 60}})).await;
    let credited = app.make_key(&t, "evt", json!({"credits": {"remaining": 10}})).await;
    crate::helpers::clear_of_window_end(60).await;
    for _ in 0..3 {
        app.verify(json!({"key": limited.secret})).await;
    }
    for _ in 0..9 {
        app.verify(json!({"key": credited.secret})).await;
    }
    let ctx = Ctx::acting(&app.state, tenant.clone(), Actor::System);
    // Expiry notice, due rotation and expiry.
    expiry_and_due_events_on(&app, &t).await;
    // A leak report and a playbook run (started, completed).
    let k = app.make_key(&t, "evt", json!({})).await;
    let report = vec![keyroll::playbooks::leak::Report {
        token: k.secret.clone(),
        token_type: "keyroll".into(),
        url: String::new(),
        source: "test".into(),
    }];
    keyroll::playbooks::leak::handle(&app.state, "scanner", report).await.expect("leak handled");
    // A failed playbook run: rolling back a rotation that is not there.
    let def = keyroll::playbooks::catalogue::Definition {
        name: "Broken".into(),
        description: String::new(),
        target: keyroll::playbooks::catalogue::TargetKind::Key,
        steps: serde_json::from_value(json!([{"kind": "rollback"}])).expect("steps"),
    };
    let target = keyroll::playbooks::runs::Target { key_id: Some(k.key_id.clone()), ..Default::default() };
    let run = keyroll::playbooks::runs::start(&ctx, "custom", &def, &target, Utc::now()).await.expect("run");
    keyroll::playbooks::execute::run(&app.state, "", &run.id).await.expect("executed");
    // An alert raised and resolved.
    let alert = {
        use keyroll::domain::anomaly::{AlertKind, Finding};
        let txn = keyroll::store::begin_write(&app.state.db).await.expect("txn");
        let f = Finding { kind: AlertKind::RateSpike, summary: "spike".into(), evidence: json!({}) };
        let (a, _) = keyroll::alerts::raise(&txn, &tenant, &k.key_id, &f, Utc::now()).await.expect("alert");
        txn.commit().await.expect("commit");
        a.id
    };
    app::alerts::change(&ctx, &alert, app::alerts::AlertChange::Resolve).await.expect("resolved");
    // Verifications raise their notices in the background.
    for _ in 0..100 {
        seen =
            event::Entity::find().all(&app.state.db).await.expect("events").into_iter().map(|e| e.event_type).collect();
        if EventType::ALL.iter().all(|t| seen.contains(t.as_str())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let missing: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).filter(|t| !seen.contains(*t)).collect();
    assert!(missing.is_empty(), "event types never emitted: {missing:?}");
}

crate::both_backends!(event_types, every_event_type_is_emitted);

async fn expiry_and_due_events_on(app: &TestApp, t: &crate::helpers::Tenant) {
    let made = app.make_key(t, "due", json!({})).await;
    let (st, _) = app
        .post(
            "/v1/policies",
            &t.root,
            json!({"api_id": made.api_id, "interval_days": 1, "overlap_seconds": 3600, "notice_seconds": [86_000]}),
        )
        .await;
    assert_eq!(st, 201);
    let old = Utc::now() - TimeDelta::hours(23);
    set_key_time(app, &made.key_id, key::Column::CreatedAt, old).await;
    keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("notice");
    let older = Utc::now() - TimeDelta::days(2);
    set_key_time(app, &made.key_id, key::Column::CreatedAt, older).await;
    keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("due");
    set_key_time(app, &made.key_id, key::Column::ExpiresAt, Utc::now() - TimeDelta::seconds(5)).await;
    app::keys::announce_expired(&app.state, Utc::now()).await.expect("expiry");
}

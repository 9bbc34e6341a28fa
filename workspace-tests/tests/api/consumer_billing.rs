//! Providers billing their own consumers: a team connects its own Stripe account, maps
//! consumers to Stripe customers and APIs to meter events, and each consumer's successful
//! verifications are reported to the team's meter per closed hour — once per consumer, API and
//! hour, resumable, with Stripe's refusal kept for the team to see. Against the recording
//! Stripe stand-in, with platform billing off.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use keyroll::app::billing::consumers::{identifier, report};
use keyroll::store::stripe_connections::mark_name;
use keyroll::store::usage::{add_minute_counts, mark, mark_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::billing_page::Recorder;
use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

const ACME_KEY: &str = "rk_test_51AcmeRestrictedWxyz";

async fn call(app: &TestApp, method: reqwest::Method, path: &str, root: &str, body: Option<Value>) -> (u16, Value) {
    app.call(method, path, root, body).await
}

/// `(authorization, event_name, customer, value, identifier, timestamp, idempotency key)`.
type Sent = (String, String, String, String, String, String, String);

async fn meter_events(stripe: &Recorder) -> Vec<Sent> {
    let mut v: Vec<Sent> = stripe
        .of("POST", "/v1/billing/meter_events")
        .await
        .iter()
        .map(|e| {
            let f = &e["form"];
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (
                e["authorization"].as_str().unwrap_or_default().to_owned(),
                s("event_name"),
                s("payload[stripe_customer_id]"),
                s("payload[value]"),
                s("identifier"),
                s("timestamp"),
                e["idempotency_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn consumers_are_billed_through_the_teams_own_stripe(backend: Backend) {
    let stripe = Recorder::start();
    let Some((shared, dir)) = fresh(backend).await else { return };
    let app = spawn_node_with(&shared, dir, &[("billing.stripe_api_base", &stripe.base)]).await;
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let put = reqwest::Method::PUT;
    let patch = reqwest::Method::PATCH;
    let del = reqwest::Method::DELETE;

    // Platform billing is off; the connection works all the same.
    assert_eq!(app.get("/v1/billing", &acme.root).await.0, 404);
    let (st, none) = app.get("/v1/billing/stripe/connection", &acme.root).await;
    assert_eq!((st, &none["connected"]), (200, &json!(false)), "{none}");

    // Bad input: a clear error naming the field, nothing kept.
    for (body, field) in [
        (json!({"stripe_key": "pk_test_51AcmePublishable"}), "stripe_key"),
        (json!({"stripe_key": "rk_test_short"}), "stripe_key"),
        (json!({"stripe_key": ACME_KEY, "account": "acct_1"}), "account"),
        (json!({}), "stripe_key"),
    ] {
        let (st, p) = call(&app, put.clone(), "/v1/billing/stripe/connection", &acme.root, Some(body.clone())).await;
        assert_eq!(st, 400, "{body} → {p}");
        assert!(p["detail"].as_str().unwrap_or_default().contains(field), "{body} → {p}");
    }
    assert_eq!(app.get("/v1/billing/stripe/connection", &acme.root).await.1["connected"], false);
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["billing:read"]})).await;
    let narrow = narrow["secret"].as_str().expect("a billing:read root key").to_owned();
    assert_eq!(app.get("/v1/billing/stripe/connection", &narrow).await.0, 200);
    let body = Some(json!({"stripe_key": ACME_KEY}));
    assert_eq!(call(&app, put.clone(), "/v1/billing/stripe/connection", &narrow, body.clone()).await.0, 403);

    // Connected: only a hint of the key is ever shown, and it is sealed at rest.
    let (st, c) = call(&app, put.clone(), "/v1/billing/stripe/connection", &acme.root, body).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!((&c["connected"], &c["key_hint"]), (&json!(true), &json!("rk_test_…Wxyz")));
    assert!(!c.to_string().contains(ACME_KEY));
    let row = keyroll::store::stripe_connections::get(
        &app.state.db,
        &keyroll::domain::TenantId::from_trusted(acme.id.clone()),
    )
    .await
    .expect("read")
    .expect("kept");
    assert!(!row.sealed_key.contains("AcmeRestricted"), "sealed with the master key");
    let refused_key = json!({"stripe_key": "rk_test_51umbrellarefusedkey"});
    assert_eq!(
        call(&app, put.clone(), "/v1/billing/stripe/connection", &umbrella.root, Some(refused_key)).await.0,
        200
    );

    // Acme: one API metered, one not; one consumer with a Stripe customer, one without.
    let metered = app.make_key(&acme, "acme", json!({})).await;
    let unmapped = app.make_key(&acme, "acme", json!({})).await;
    let other_api = app.make_key(&acme, "acmeb", json!({})).await;
    let umb = app.make_key(&umbrella, "umb", json!({})).await;
    for (bad, field) in [
        (json!({"stripe_customer_id": "acct_1Nv0"}), "stripe_customer_id"),
        (json!({"stripe_customer_id": "cus_a b"}), "stripe_customer_id"),
    ] {
        let path = format!("/v1/consumers/{}", metered.consumer_id);
        let (st, p) = call(&app, patch.clone(), &path, &acme.root, Some(bad)).await;
        assert_eq!(st, 400, "{p}");
        assert!(p["detail"].as_str().unwrap_or_default().contains(field), "{p}");
    }
    let path = format!("/v1/apis/{}", metered.api_id);
    let (st, p) =
        call(&app, patch.clone(), &path, &acme.root, Some(json!({"stripe_meter_event": "orders calls"}))).await;
    assert_eq!(st, 400, "{p}");
    for (path, body, root) in [
        (format!("/v1/apis/{}", metered.api_id), json!({"stripe_meter_event": "orders_requests"}), &acme.root),
        (format!("/v1/consumers/{}", metered.consumer_id), json!({"stripe_customer_id": "cus_AcmeOne"}), &acme.root),
        (
            format!("/v1/consumers/{}", other_api.consumer_id),
            json!({"stripe_customer_id": "cus_AcmeThree"}),
            &acme.root,
        ),
        (format!("/v1/apis/{}", umb.api_id), json!({"stripe_meter_event": "umb_calls"}), &umbrella.root),
        (format!("/v1/consumers/{}", umb.consumer_id), json!({"stripe_customer_id": "cus_Umb"}), &umbrella.root),
    ] {
        let (st, v) = call(&app, patch.clone(), &path, root, Some(body.clone())).await;
        assert_eq!(st, 200, "{path} {v}");
        let (k, val) = body.as_object().and_then(|o| o.iter().next()).expect("one field");
        assert_eq!(&v[k], val, "{v}");
    }
    assert_eq!(
        app.get(&format!("/v1/consumers/{}", metered.consumer_id), &acme.root).await.1["stripe_customer_id"],
        "cus_AcmeOne"
    );

    let now = Utc::now();
    let h1 = now.duration_trunc(TimeDelta::hours(1)).expect("hour") - TimeDelta::hours(3);
    let h2 = h1 + TimeDelta::hours(1);
    let count = crate::helpers::usage_count;
    add_minute_counts(
        &app.state.db,
        vec![
            count(h1 + TimeDelta::minutes(5), &metered.key_id, &acme.id, "VALID", 5),
            count(h1 + TimeDelta::minutes(6), &metered.key_id, &acme.id, "VALID", 2),
            count(h1 + TimeDelta::minutes(6), &metered.key_id, &acme.id, "RATE_LIMITED", 3),
            count(h1 + TimeDelta::minutes(7), &unmapped.key_id, &acme.id, "VALID", 4),
            count(h1 + TimeDelta::minutes(8), &other_api.key_id, &acme.id, "VALID", 6),
            count(h2 + TimeDelta::minutes(9), &metered.key_id, &acme.id, "VALID", 1),
            count(h1 + TimeDelta::minutes(9), &umb.key_id, &umbrella.id, "VALID", 9),
        ],
    )
    .await
    .expect("counts");
    for t in [&acme, &umbrella] {
        mark(&app.state.db, &mark_name(&t.id), h1).await.expect("reported from three hours ago");
    }

    let n = report(&app.state, now).await.expect("pass");
    assert_eq!(n, 2, "{:?}", meter_events(&stripe).await);
    let ts = |h: DateTime<Utc>| h.timestamp().to_string();
    let acme_auth = format!("Bearer {ACME_KEY}");
    let event = |h: DateTime<Utc>, value: &str| {
        let id = identifier(&metered.consumer_id, &metered.api_id, h);
        (acme_auth.clone(), "orders_requests".into(), "cus_AcmeOne".into(), value.to_owned(), id.clone(), ts(h), id)
    };
    let mut expected = vec![event(h1, "7"), event(h2, "1")];
    expected.sort();
    let sent = meter_events(&stripe).await;
    let acme_sent: Vec<Sent> = sent.iter().filter(|e| e.0 == acme_auth).cloned().collect();
    assert_eq!(acme_sent, expected, "successful verifications, per consumer with a customer and API with a meter");
    assert!(sent.iter().all(|e| e.0 == acme_auth || e.0 == "Bearer rk_test_51umbrellarefusedkey"), "{sent:?}");
    let closed = (now - TimeDelta::minutes(2)).duration_trunc(TimeDelta::hours(1)).expect("hour");
    let (_, c) = app.get("/v1/billing/stripe/connection", &acme.root).await;
    assert_eq!(c["reported_until"], json!(closed), "{c}");
    assert!(c["last_error"].is_null());

    // Umbrella's Stripe refused: the team sees why, and its hours wait for the next pass.
    let (_, u) = app.get("/v1/billing/stripe/connection", &umbrella.root).await;
    assert!(u["last_error"].as_str().unwrap_or_default().contains("Invalid API Key"), "{u}");
    assert!(u["last_error_at"].is_string(), "{u}");
    assert_eq!(mark_of(&app.state.db, &mark_name(&umbrella.id)).await.expect("mark"), Some(h1));

    // Nothing twice; a node that died before marking sends the same identifiers again.
    assert_eq!(report(&app.state, now).await.expect("pass"), 0);
    mark(&app.state.db, &mark_name(&acme.id), h1).await.expect("mark");
    assert_eq!(report(&app.state, now).await.expect("pass"), 2);
    let again: Vec<Sent> = meter_events(&stripe).await.into_iter().filter(|e| e.0 == acme_auth).collect();
    assert_eq!(again.len(), 4);
    assert_eq!(again.iter().map(|e| &e.4).collect::<std::collections::BTreeSet<_>>().len(), 2, "two identifiers");

    // Audited with the hint only; disconnecting deletes the key and stops reporting.
    let (_, audit) = app.get("/v1/audit-events?action=billing.stripe_connected", &acme.root).await;
    let entries = audit["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{audit}");
    assert!(!audit.to_string().contains(ACME_KEY));
    assert_eq!(call(&app, del.clone(), "/v1/billing/stripe/connection", &acme.root, None).await.0, 204);
    assert_eq!(app.get("/v1/billing/stripe/connection", &acme.root).await.1["connected"], false);
    assert_eq!(call(&app, del, "/v1/billing/stripe/connection", &acme.root, None).await.0, 404);
    mark(&app.state.db, &mark_name(&acme.id), h1).await.expect("a stale mark");
    report(&app.state, now).await.expect("pass");
    let after: Vec<Sent> = meter_events(&stripe).await.into_iter().filter(|e| e.0 == acme_auth).collect();
    assert_eq!(after.len(), 4, "nothing is sent for a disconnected team");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_billed_on_sqlite() {
    consumers_are_billed_through_the_teams_own_stripe(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_billed_on_postgres_redis() {
    consumers_are_billed_through_the_teams_own_stripe(Backend::Services).await;
}

/// Owners connect Stripe from the Team page and map consumers and APIs on theirs; a wrong value
/// is refused beside its field, keeping what was typed elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_connect_stripe_and_map_consumers_on_the_dashboard() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else { return };
    let (ann, csrf, consumer_id, _) = crate::dashboard::ann_with_a_key(&app).await;
    let team = ann.get("/app/team").await;
    assert!(team.body.contains("Bill your consumers through Stripe"), "{}", team.body);
    let bad = ann.post("/app/team/stripe", &[("csrf", &csrf), ("stripe_key", "pk_live_51Publishable")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"stripe-key-error\""), "{}", bad.body);
    let ok = ann.post("/app/team/stripe", &[("csrf", &csrf), ("stripe_key", ACME_KEY)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("Your Stripe account is connected (rk_test_…Wxyz)"), "{}", ok.body);
    assert!(!ok.body.contains(ACME_KEY), "the key is never shown again");

    let page = format!("/app/consumers/{consumer_id}");
    let fields = |stripe: &'static str| {
        [("name", "Bob"), ("external_id", "cus_1"), ("email", ""), ("meta", ""), ("stripe_customer_id", stripe)]
    };
    let with_csrf = |stripe: &'static str| {
        let mut f: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        f.extend(fields(stripe));
        f
    };
    let bad = ann.post(&page, &with_csrf("acct_123")).await;
    assert!(bad.body.contains("id=\"stripe-error\"") && bad.body.contains("value=\"acct_123\""), "{}", bad.body);
    let good = ann.post(&page, &with_csrf("cus_BobCo")).await;
    assert_eq!(good.status, StatusCode::OK);
    assert!(good.body.contains("value=\"cus_BobCo\""), "{}", good.body);

    let disconnect = ann.post("/app/team/stripe/disconnect", &[("csrf", &csrf)]).await;
    assert!(disconnect.body.contains("Your Stripe account is disconnected"), "{}", disconnect.body);
}

//! The dashboard's billing page against a recording Stripe stand-in (Checkout Sessions and the
//! Billing Portal are beyond localstripe): the exact requests Keyroll sends, the redirects the
//! owner follows, invoices listed, and the page hidden from others and without billing.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use serde_json::Value;

use crate::dashboard::Browser;
use crate::helpers::{Backend, fresh, spawn_node_with};

/// The recording stand-in, stopped when dropped.
pub(crate) struct Recorder {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Recorder {
    pub(crate) fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/stripe_recorder.py");
        let mut child =
            Command::new("python3").arg(script).stdout(Stdio::piped()).spawn().expect("python3 runs the recorder");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("its port");
        let port: u16 = line.trim().parse().expect("a port");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn requests(&self) -> Vec<Value> {
        let r = reqwest::get(format!("{}/__requests", self.base)).await.expect("recorder answers");
        r.json::<Vec<Value>>().await.expect("json")
    }

    pub(crate) async fn of(&self, method: &str, path: &str) -> Vec<Value> {
        self.requests().await.into_iter().filter(|r| r["method"] == method && r["path"] == path).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_see_their_plan_and_go_to_stripe_from_the_billing_page() {
    let stripe = Recorder::start();
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let app = spawn_node_with(
        &shared,
        dir,
        &[
            ("billing.stripe_secret_key", "sk_test_keyroll"),
            ("billing.stripe_api_base", &stripe.base),
            ("billing.plans.free.name", "Free"),
            ("billing.plans.free.limits.active_keys", "10"),
            ("billing.plans.pro.name", "Pro"),
            ("billing.plans.pro.price_id", "price_pro_flat"),
            ("billing.plans.pro.metered_price_id", "price_pro_overage"),
        ],
    )
    .await;
    let ann = Browser::new(&app);
    crate::dashboard::sign_up(&ann, "Acme", "ann@acme.test").await;
    let page = ann.get("/app/billing").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Free plan") && page.body.contains("href=\"/app/billing\""), "{}", page.body);
    assert!(page.body.contains("active keys") && page.body.contains("<progress"), "usage against limits");
    assert!(page.body.contains("KR-0001") && page.body.contains("49.00 USD"), "invoices from Stripe: {}", page.body);
    assert!(page.body.contains("href=\"/app/billing/checkout?plan=pro\""), "{}", page.body);

    let customers = stripe.of("POST", "/v1/customers").await;
    assert_eq!(customers.len(), 1, "one customer for the team: {customers:?}");
    let tenant_id = customers[0]["form"]["metadata[keyroll_tenant_id]"].as_str().expect("tenant id").to_owned();
    assert_eq!(customers[0]["form"]["name"], "Acme");
    assert_eq!(customers[0]["idempotency_key"], format!("keyroll-customer-{tenant_id}"));
    assert_eq!(customers[0]["authorization"], "Bearer sk_test_keyroll");
    let invoices = stripe.of("GET", "/v1/invoices").await;
    assert_eq!(invoices[0]["query"]["customer"], "cus_rec000001");
    assert!(page.body.contains("No verifications yet this period"), "{}", page.body);
    let now = chrono::Utc::now();
    let count = keyroll::store::usage::UsageCount {
        bucket_start: chrono::DurationRound::duration_trunc(now, chrono::TimeDelta::minutes(1)).expect("minute"),
        key_id: "key_charted".into(),
        tenant_id: tenant_id.clone(),
        code: "VALID",
        count: 12,
    };
    keyroll::store::usage::add_minute_counts(&app.state.db, vec![count]).await.expect("counts");
    let charted = ann.get("/app/billing").await;
    assert!(charted.body.contains("<figure class=\"chart-box\">"), "{}", charted.body);
    assert!(charted.body.contains("within allowance 12, over allowance 0"), "the period's chart: {}", charted.body);

    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(ann.jar())
        .build()
        .expect("client");
    let go = raw.get(app.url("/app/billing/checkout?plan=pro")).send().await.expect("sent");
    assert_eq!(go.status(), StatusCode::SEE_OTHER);
    let to = go.headers().get("location").and_then(|v| v.to_str().ok()).expect("location").to_owned();
    assert!(to.starts_with(&format!("{}/checkout/cs_test_rec", stripe.base)), "{to}");
    let sessions = stripe.of("POST", "/v1/checkout/sessions").await;
    let form = &sessions[0]["form"];
    let expected = [
        ("mode", "subscription"),
        ("customer", "cus_rec000001"),
        ("client_reference_id", tenant_id.as_str()),
        ("line_items[0][price]", "price_pro_flat"),
        ("line_items[0][quantity]", "1"),
        ("line_items[1][price]", "price_pro_overage"),
        ("metadata[keyroll_plan]", "pro"),
    ];
    for (k, v) in expected {
        assert_eq!(form[k], v, "{k}: {form}");
    }
    assert!(form.get("line_items[1][quantity]").is_none(), "a metered price takes no quantity: {form}");
    assert_eq!(form["success_url"], app.url("/app/billing?checkout=done"));
    assert_eq!(form["cancel_url"], app.url("/app/billing"));

    let go = raw.get(app.url("/app/billing/portal")).send().await.expect("sent");
    assert_eq!(go.status(), StatusCode::SEE_OTHER);
    let portal = stripe.of("POST", "/v1/billing_portal/sessions").await;
    assert_eq!(portal[0]["form"]["customer"], "cus_rec000001");
    assert_eq!(portal[0]["form"]["return_url"], app.url("/app/billing"));
    assert_eq!(ann.get("/app/billing/checkout?plan=free").await.status, StatusCode::NOT_FOUND, "no price, no checkout");
    assert_eq!(ann.get("/app/billing/checkout?plan=gold").await.status, StatusCode::NOT_FOUND);
    let done = ann.get("/app/billing?checkout=done").await;
    assert!(done.body.contains("Thank you"), "{}", done.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_billing_there_is_no_billing_page() {
    let Some(app) = crate::helpers::spawn_app(Backend::Sqlite).await else { return };
    let ann = Browser::new(&app);
    crate::dashboard::sign_up(&ann, "Acme", "ann@acme.test").await;
    assert!(!ann.get("/app").await.body.contains("/app/billing"), "not in the menu");
    assert_eq!(ann.get("/app/billing").await.status, StatusCode::NOT_FOUND);
    assert_eq!(ann.get("/app/billing/portal").await.status, StatusCode::NOT_FOUND);
}

/// Verifications are reported to Stripe's meter per team and closed hour, with the team and
/// hour as the identifier; a pass resumes from its mark, and an hour sent again (a node died
/// before marking it) carries the same identifier, so Stripe keeps it once. The root keys' use
/// of the management API is not billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_are_metered_per_team_and_hour_once() {
    use chrono::{DurationRound, TimeDelta, Utc};
    use keyroll::app::billing::meter;
    use keyroll::store::usage::{add_minute_counts, mark, mark_of};
    let stripe = Recorder::start();
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let app = spawn_node_with(
        &shared,
        dir,
        &[
            ("billing.stripe_secret_key", "sk_test_keyroll"),
            ("billing.stripe_api_base", &stripe.base),
            ("billing.plans.free.name", "Free"),
        ],
    )
    .await;
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let a = app.make_key(&acme, "acme", serde_json::json!({})).await;
    let u = app.make_key(&umbrella, "umb", serde_json::json!({})).await;
    let (_, roots) = app.get("/v1/root-keys", &acme.root).await;
    let root_id = roots["data"][0]["id"].as_str().expect("root key").to_owned();
    let now = Utc::now();
    let h1 = now.duration_trunc(TimeDelta::hours(1)).expect("hour") - TimeDelta::hours(3);
    let count = crate::helpers::usage_count;
    add_minute_counts(
        &app.state.db,
        vec![
            count(h1 + TimeDelta::minutes(10), &a.key_id, &acme.id, "VALID", 5),
            count(h1 + TimeDelta::minutes(10), &a.key_id, &acme.id, "REVOKED", 2),
            count(h1 + TimeDelta::minutes(11), &root_id, &acme.id, "VALID", 40),
            count(h1 + TimeDelta::minutes(50), &u.key_id, &umbrella.id, "VALID", 4),
            count(h1 + TimeDelta::minutes(70), &a.key_id, &acme.id, "VALID", 1),
        ],
    )
    .await
    .expect("counts");

    assert_eq!(meter::report(&app.state, now).await.expect("first pass"), 0, "the first pass only sets the mark");
    mark(&app.state.db, meter::MARK, h1).await.expect("mark moved back three hours");
    assert_eq!(meter::report(&app.state, now).await.expect("pass"), 3);
    let events = stripe.of("POST", "/v1/billing/meter_events").await;
    let mut seen: Vec<(String, String, String, String)> = events
        .iter()
        .map(|e| {
            let f = &e["form"];
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("payload[stripe_customer_id]"), s("payload[value]"), s("identifier"), s("timestamp"))
        })
        .collect();
    seen.sort_by(|a, b| (&a.3, &a.2).cmp(&(&b.3, &b.2)));
    let acme_cus = "cus_rec000001".to_owned();
    let umb_cus = "cus_rec000002".to_owned();
    let h2 = h1 + TimeDelta::hours(1);
    let mut expected = vec![
        (acme_cus.clone(), "7".to_owned(), meter::identifier(&acme.id, h1), h1.timestamp().to_string()),
        (umb_cus, "4".into(), meter::identifier(&umbrella.id, h1), h1.timestamp().to_string()),
        (acme_cus, "1".into(), meter::identifier(&acme.id, h2), h2.timestamp().to_string()),
    ];
    expected.sort_by(|a, b| (&a.3, &a.2).cmp(&(&b.3, &b.2)));
    assert_eq!(seen, expected, "every outcome counts, the root key's management calls do not");
    assert!(events.iter().all(|e| e["form"]["event_name"] == "keyroll_verifications"));
    assert!(events.iter().all(|e| e["idempotency_key"] == e["form"]["identifier"]));
    let closed = (now - TimeDelta::minutes(2)).duration_trunc(TimeDelta::hours(1)).expect("hour");
    assert_eq!(mark_of(&app.state.db, meter::MARK).await.expect("mark"), Some(closed));
    assert_eq!(meter::report(&app.state, now).await.expect("pass"), 0, "nothing twice");

    // A node died after sending, before marking: the hours go again with the same identifiers.
    mark(&app.state.db, meter::MARK, h1).await.expect("mark");
    assert_eq!(meter::report(&app.state, now).await.expect("pass"), 3);
    let again = stripe.of("POST", "/v1/billing/meter_events").await;
    let ids = |list: &[Value]| {
        let mut v = list.iter().map(|e| e["form"]["identifier"].to_string()).collect::<Vec<_>>();
        v.sort();
        v
    };
    assert_eq!(ids(&again[3..]), ids(&again[..3]), "Stripe keeps one event per identifier");
}

/// A failed payment: the subscription falls past due, the team keeps its plan's limits through
/// the grace period with a banner on the billing page, then the default plan's limits apply
/// (nothing is deleted); a paid invoice brings the plan back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_payment_keeps_the_plan_through_the_grace_period() {
    use keyroll::store::entities::billing_account;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
    let has_sdk = Command::new("python3").args(["-c", "import stripe._webhook"]).status().is_ok_and(|s| s.success());
    if !has_sdk {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PyPI's stripe is required (pip install stripe)"
        );
        eprintln!("skipping the past-due test: PyPI's stripe is not installed");
        return;
    }
    let stripe = Recorder::start();
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let app = spawn_node_with(
        &shared,
        dir,
        &[
            ("billing.stripe_secret_key", "sk_test_keyroll"),
            ("billing.stripe_webhook_secret", "whsec_past_due"),
            ("billing.stripe_api_base", &stripe.base),
            ("billing.past_due_grace_days", "7"),
            ("billing.plans.free.limits.active_keys", "1"),
            ("billing.plans.pro.price_id", "price_pro_flat"),
            ("billing.plans.pro.limits.active_keys", "50"),
        ],
    )
    .await;
    let ann = Browser::new(&app);
    crate::dashboard::sign_up(&ann, "Acme", "ann@acme.test").await;
    let customer = stripe.of("POST", "/v1/customers").await.into_iter().next().expect("customer");
    let tenant_id = customer["form"]["metadata[keyroll_tenant_id]"].as_str().expect("tenant").to_owned();
    let set = |status: &str| serde_json::json!({"id": "sub_rec1", "customer": "cus_rec000001", "status": status, "price": "price_pro_flat"});
    let client = reqwest::Client::new();
    let deliver = async |id: &str, type_: &str, object: Value| {
        let body = serde_json::json!({"id": id, "object": "event", "type": type_, "created": 1796000000,
            "data": {"object": object}})
        .to_string();
        let sig = crate::billing::sign(&body, "whsec_past_due", None);
        let res = client
            .post(app.url("/v1/billing/stripe/webhook"))
            .header("stripe-signature", sig)
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::OK);
    };
    client.post(format!("{}/__subscriptions", stripe.base)).json(&set("active")).send().await.expect("set");
    deliver(
        "evt_1",
        "checkout.session.completed",
        serde_json::json!({"subscription": "sub_rec1", "client_reference_id": tenant_id}),
    )
    .await;
    let db = &app.state.db;
    let plan = async || {
        keyroll::store::tenants::get(db, &keyroll::domain::TenantId::from_trusted(tenant_id.clone()))
            .await
            .expect("t")
            .plan
    };
    assert_eq!(plan().await, "pro");

    client.post(format!("{}/__subscriptions", stripe.base)).json(&set("past_due")).send().await.expect("set");
    deliver("evt_2", "invoice.payment_failed", serde_json::json!({"id": "in_1", "subscription": "sub_rec1"})).await;
    let page = ann.get("/app/billing").await;
    assert!(page.body.contains("The last payment failed") && page.body.contains("Nothing is deleted"), "{}", page.body);
    let limits = keyroll::app::billing::limits(&app.state, &keyroll::domain::TenantId::from_trusted(tenant_id.clone()))
        .await
        .expect("limits");
    assert_eq!(limits.active_keys, Some(50), "the plan holds through the grace period");

    // Eight days later the default plan's limits apply; the plan itself is kept.
    let mut a = billing_account::Entity::find_by_id(tenant_id.as_str())
        .one(db)
        .await
        .expect("q")
        .expect("account")
        .into_active_model();
    a.past_due_since = Set(Some(chrono::Utc::now() - chrono::TimeDelta::days(8)));
    a.update(db).await.expect("moved back");
    let t = keyroll::domain::TenantId::from_trusted(tenant_id.clone());
    assert_eq!(keyroll::app::billing::limits(&app.state, &t).await.expect("limits").active_keys, Some(1));
    assert_eq!(plan().await, "pro");

    // Paid: the subscription is active again, the grace is over, the plan's limits are back.
    client.post(format!("{}/__subscriptions", stripe.base)).json(&set("active")).send().await.expect("set");
    deliver(
        "evt_3",
        "invoice.paid",
        serde_json::json!({"id": "in_1", "parent": {"subscription_details": {"subscription": "sub_rec1"}}}),
    )
    .await;
    assert_eq!(keyroll::app::billing::limits(&app.state, &t).await.expect("limits").active_keys, Some(50));
    assert!(!ann.get("/app/billing").await.body.contains("The last payment failed"));
}

/// At 80 % and again at 100 % of the period's verifications, the owners get one email each
/// (over a real SMTP conversation), the team is flagged, and the audit log says so;
/// verification is not stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_told_once_at_80_and_at_100_percent_of_the_allowance() {
    use chrono::{DurationRound, TimeDelta, Utc};
    use keyroll::app::billing::notices;
    use keyroll::store::usage::{UsageCount, add_minute_counts};
    let Some(smtp) = crate::notifications::Smtp::start() else { return };
    let stripe = Recorder::start();
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let app = spawn_node_with(
        &shared,
        dir,
        &[
            ("billing.stripe_secret_key", "sk_test_keyroll"),
            ("billing.stripe_api_base", &stripe.base),
            ("billing.plans.free.limits.verifications_per_month", "10"),
            ("smtp_url", &smtp_url),
        ],
    )
    .await;
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", serde_json::json!({})).await;
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).expect("minute");
    let add = async |n: i64| {
        let c = UsageCount {
            bucket_start: minute,
            key_id: k.key_id.clone(),
            tenant_id: acme.id.clone(),
            code: "VALID",
            count: n,
        };
        add_minute_counts(&app.state.db, vec![c]).await.expect("counts");
    };
    let pass = async || notices::allowance(&app.state, Utc::now()).await.expect("pass");
    add(7).await;
    assert_eq!(pass().await, 0, "70 %: nothing yet");
    add(1).await;
    assert_eq!(pass().await, 1, "80 %");
    assert_eq!(pass().await, 0, "once");
    assert_eq!(app.get("/v1/billing", &acme.root).await.1["allowance_reached"], 80);
    add(5).await;
    assert_eq!(pass().await, 1, "100 %");
    assert_eq!(pass().await, 0, "once");
    let (_, b) = app.get("/v1/billing", &acme.root).await;
    assert_eq!((b["allowance_reached"].as_u64(), b["overage"].as_u64()), (Some(100), Some(3)), "{b}");
    assert_eq!(app.verify_code(&k.secret).await, "VALID", "verification goes on");
    let mut mail = Vec::new();
    for _ in 0..50 {
        mail = smtp.messages();
        if mail.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert!(mail[0].contains("To: ops@acme.test") && mail[0].contains("used 80 % of this month"), "{}", mail[0]);
    assert!(mail[1].contains("used 100 % of this month") && mail[1].contains("overage"), "{}", mail[1]);
    let (_, audit) = app.get("/v1/audit-events?action=billing.allowance_reached", &acme.root).await;
    assert_eq!(audit["data"].as_array().map(Vec::len), Some(2), "{audit}");
}

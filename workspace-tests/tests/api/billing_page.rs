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
struct Recorder {
    child: Child,
    base: String,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Recorder {
    fn start() -> Self {
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

    async fn of(&self, method: &str, path: &str) -> Vec<Value> {
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

//! Billing: off without Stripe settings (nothing contacts Stripe, no limits, `/v1/billing` 404);
//! with them, plan limits refuse creation with 402 `plan_limit_reached` (verification never),
//! each team gets a Stripe customer (through `async-stripe`, against `localstripe`), and
//! Stripe's webhooks, signed by Stripe's own Python library, change the plan once per event,
//! whatever order they come in.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Tenant, TestApp, fresh, spawn_node_with};

const WEBHOOK_SECRET: &str = "whsec_keyroll_test_secret";

fn require() -> bool {
    std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A `localstripe` server (PyPI) on a free port, stopped when dropped.
pub struct LocalStripe {
    child: Child,
    pub base: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalStripe {
    /// Starts one, or `None` (reason printed) when `localstripe` or the `stripe` package is
    /// missing; with `KEYROLL_TEST_REQUIRE_SERVICES=1` that fails instead.
    pub async fn start() -> Option<Self> {
        let has_sdk =
            Command::new("python3").args(["-c", "import stripe._webhook"]).status().is_ok_and(|s| s.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).ok()?;
        let child = Command::new("localstripe")
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let (Ok(child), true) = (child, has_sdk) else {
            assert!(!require(), "PyPI's localstripe and stripe are required (pip install localstripe stripe)");
            eprintln!("skipping a billing test: localstripe or the stripe package is not installed");
            return None;
        };
        let me = Self { child, base: format!("http://127.0.0.1:{port}") };
        // Up once it accepts connections (no HTTP client yet: TLS is set up by the app).
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(me);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("localstripe did not start on {}", me.base);
    }

    /// Calls localstripe as the test's own Stripe account would.
    pub async fn call(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let res = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .basic_auth("sk_test_keyroll", Some(""))
            .form(form)
            .send()
            .await
            .expect("localstripe answers");
        let status = res.status();
        let v: Value = res.json().await.expect("json");
        assert!(status.is_success(), "{path}: {v}");
        v
    }

    /// A plan priced `price_id` and an active subscription to it for `customer`.
    pub async fn subscribe(&self, customer: &str, price_id: &str) -> String {
        use reqwest::Method;
        let pm = self
            .call(
                Method::POST,
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", "4242424242424242"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2035"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let pm = pm["id"].as_str().expect("payment method");
        self.call(Method::POST, &format!("/v1/payment_methods/{pm}/attach"), &[("customer", customer)]).await;
        self.call(
            Method::POST,
            &format!("/v1/customers/{customer}"),
            &[("invoice_settings[default_payment_method]", pm)],
        )
        .await;
        let sub =
            self.call(Method::POST, "/v1/subscriptions", &[("customer", customer), ("items[0][plan]", price_id)]).await;
        assert_eq!(sub["status"], "active", "{sub}");
        sub["id"].as_str().expect("subscription").to_owned()
    }

    /// Makes the plan `price_id` (localstripe has plans, not prices; a plan's id is accepted
    /// where a price's is).
    pub async fn plan(&self, price_id: &str) {
        use reqwest::Method;
        let product = self.call(Method::POST, "/v1/products", &[("name", "Keyroll Pro"), ("type", "service")]).await;
        let product = product["id"].as_str().expect("product").to_owned();
        self.call(
            Method::POST,
            "/v1/plans",
            &[("id", price_id), ("product", &product), ("amount", "4900"), ("currency", "usd"), ("interval", "month")],
        )
        .await;
    }
}

/// The Stripe-Signature header for `body`, made by Stripe's own Python library.
pub fn sign(body: &str, secret: &str, timestamp: Option<i64>) -> String {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/stripe_sign.py");
    let mut args = vec![script.to_owned(), secret.to_owned()];
    if let Some(t) = timestamp {
        args.push(t.to_string());
    }
    let mut child =
        Command::new("python3").args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("body written");
    let out = child.wait_with_output().expect("signed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn event(id: &str, type_: &str, object: Value) -> String {
    json!({
        "id": id, "object": "event", "type": type_, "api_version": "2020-08-27",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "data": {"object": object}
    })
    .to_string()
}

async fn deliver(app: &TestApp, body: &str, signature: Option<&str>) -> (u16, Value) {
    let mut req = app.client.post(app.url("/v1/billing/stripe/webhook")).body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("stripe-signature", s);
    }
    let res = req.send().await.expect("sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An install with billing on, against `stripe_api_base`.
async fn billed_app(backend: Backend, stripe_api_base: &str) -> Option<TestApp> {
    billed_app_with(backend, stripe_api_base, &[]).await
}

async fn billed_app_with(backend: Backend, stripe_api_base: &str, extra: &[(&str, &str)]) -> Option<TestApp> {
    let (shared, dir) = fresh(backend).await?;
    let mut settings = vec![
        ("billing.stripe_secret_key", "sk_test_keyroll"),
        ("billing.stripe_webhook_secret", WEBHOOK_SECRET),
        ("billing.stripe_api_base", stripe_api_base),
        ("billing.default_plan", "free"),
        ("billing.plans.free.name", "Free"),
        ("billing.plans.free.limits.active_keys", "2"),
        ("billing.plans.free.limits.webhook_endpoints", "1"),
        ("billing.plans.free.limits.verifications_per_month", "2"),
        ("billing.plans.free.limits.audit_retention_days", "30"),
        ("billing.plans.pro.name", "Pro"),
        ("billing.plans.pro.price_id", "price_keyroll_pro"),
        ("billing.plans.pro.limits.active_keys", "100"),
        ("billing.plans.pro.limits.webhook_endpoints", "20"),
    ];
    settings.extend_from_slice(extra);
    Some(spawn_node_with(&shared, dir, &settings).await)
}

/// Without Stripe settings billing is invisible: no limit, `/v1/billing` and the webhook 404,
/// and nothing connects to the configured Stripe address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_off_is_invisible() {
    let watch = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    watch.set_nonblocking(true).expect("nonblocking");
    let base = format!("http://{}", watch.local_addr().expect("addr"));
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let app = spawn_node_with(&shared, dir, &[("billing.stripe_api_base", &base)]).await;
    let t = app.tenant("Acme").await;
    for _ in 0..4 {
        app.make_key(&t, "acme", json!({})).await;
    }
    let (st, p) = app.get("/v1/billing", &t.root).await;
    assert_eq!((st, p["code"].as_str()), (404, Some("not_found")), "{p}");
    let body = event("evt_off", "customer.subscription.updated", json!({"id": "sub_1"}));
    let sig = sign_or_plain(&body);
    assert_eq!(deliver(&app, &body, Some(&sig)).await.0, 404);
    assert!(
        matches!(watch.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing contacted the Stripe address"
    );
}

/// A signature made without Python when it is missing (the billing-off test needs none).
fn sign_or_plain(body: &str) -> String {
    let has = Command::new("python3").args(["-c", "import stripe._webhook"]).status().is_ok_and(|s| s.success());
    if has { sign(body, WEBHOOK_SECRET, None) } else { "t=1,v1=00".into() }
}

async fn plan_limits_refuse_creation_never_verification(app: TestApp, stripe: LocalStripe) {
    let acme = app.tenant("Acme").await;
    let (st, b) = app.get("/v1/billing", &acme.root).await;
    assert_eq!(st, 200, "{b}");
    let customer = b["stripe_customer_id"].as_str().expect("a Stripe customer was made with the team").to_owned();
    assert!(customer.starts_with("cus_"), "{b}");
    let c = stripe.call(reqwest::Method::GET, &format!("/v1/customers/{customer}"), &[]).await;
    assert_eq!(c["metadata"]["keyroll_tenant_id"], acme.id.as_str(), "{c}");
    assert_eq!((b["plan"].as_str(), b["status"].as_str()), (Some("free"), Some("active")));
    assert_eq!(b["limits"]["active_keys"], 2);
    assert_eq!(b["limits"]["members"], Value::Null, "a limit left out is unlimited");

    let first = app.make_key(&acme, "acme", json!({})).await;
    let second = app.make_key(&acme, "acme", json!({})).await;
    let (st, p) =
        app.post("/v1/keys", &acme.root, json!({"api_id": first.api_id, "consumer_id": first.consumer_id})).await;
    assert_eq!((st, p["code"].as_str()), (402, Some("plan_limit_reached")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("active_keys") && d.contains("(2,")), "{p}");
    // Verification is never refused for billing: over the month's allowance (2) too.
    for _ in 0..4 {
        assert_eq!(app.verify_code(&second.secret).await, "VALID");
    }
    // Rotating a key is not creating one.
    let (st, r) = app.post(&format!("/v1/keys/{}/rotate", first.key_id), &acme.root, json!({})).await;
    assert_eq!(st, 201, "{r}");
    // A revoked key frees its place.
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", second.key_id), &acme.root, json!({"reason": "done"})).await;
    assert_eq!(st, 200);
    let (st, p) =
        app.post("/v1/keys", &acme.root, json!({"api_id": first.api_id, "consumer_id": first.consumer_id})).await;
    assert_eq!(st, 402, "the rotation's new version holds a place while the old one is in grace: {p}");

    let hook = |n: u16| json!({"url": format!("http://127.0.0.1:9/hooks/{n}")});
    assert_eq!(app.post("/v1/webhook-endpoints", &acme.root, hook(1)).await.0, 201);
    let (st, p) = app.post("/v1/webhook-endpoints", &acme.root, hook(2)).await;
    assert_eq!((st, p["code"].as_str()), (402, Some("plan_limit_reached")), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("webhook_endpoints")), "{p}");

    // The month's verifications reach the overview; over the allowance they are overage.
    let mut b = Value::Null;
    for _ in 0..50 {
        b = app.get("/v1/billing", &acme.root).await.1;
        if b["usage"]["verifications"].as_u64() >= Some(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b["usage"]["verifications"], 4, "{b}");
    assert_eq!(b["overage"], 2, "{b}");
    assert_eq!(b["usage"]["webhook_endpoints"], 1);

    // A root key without billing:read sees nothing.
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"name": "ci", "scopes": ["keys:read"]})).await;
    let narrow = narrow["secret"].as_str().expect("secret");
    assert_eq!(app.get("/v1/billing", narrow).await.0, 403);
    let (_, reader) = app.post("/v1/root-keys", &acme.root, json!({"name": "bi", "scopes": ["billing:read"]})).await;
    assert_eq!(app.get("/v1/billing", reader["secret"].as_str().expect("secret")).await.0, 200);
}

/// Plan limits, over both backends.
mod plan_limits {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let Some(stripe) = LocalStripe::start().await else { return };
        let Some(app) = billed_app(Backend::Sqlite, &stripe.base).await else { return };
        plan_limits_refuse_creation_never_verification(app, stripe).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        let Some(stripe) = LocalStripe::start().await else { return };
        let Some(app) = billed_app(Backend::Services, &stripe.base).await else { return };
        plan_limits_refuse_creation_never_verification(app, stripe).await;
    }
}

async fn billing_of(app: &TestApp, t: &Tenant) -> Value {
    let (st, b) = app.get("/v1/billing", &t.root).await;
    assert_eq!(st, 200, "{b}");
    b
}

/// Stripe's webhooks, signed by Stripe's library: a subscription moves the team to its plan;
/// a replay does nothing; a stale, foreign or missing signature is refused; an event that
/// arrives after a later change does not undo it (the state is read from Stripe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_webhooks_move_the_plan_once_in_any_order() {
    let Some(stripe) = LocalStripe::start().await else { return };
    let Some(app) = billed_app(Backend::Sqlite, &stripe.base).await else { return };
    let acme = app.tenant("Acme").await;
    let customer = billing_of(&app, &acme).await["stripe_customer_id"].as_str().expect("customer").to_owned();
    stripe.plan("price_keyroll_pro").await;
    let sub = stripe.subscribe(&customer, "price_keyroll_pro").await;

    let created = event("evt_created", "customer.subscription.created", json!({"id": sub, "object": "subscription"}));
    // Refused: no signature, a foreign secret, a stale timestamp, a tampered body.
    assert_eq!(deliver(&app, &created, None).await.0, 400);
    assert_eq!(deliver(&app, &created, Some(&sign(&created, "whsec_someone_else", None))).await.0, 400);
    let stale = chrono::Utc::now().timestamp() - 301;
    let (st, p) = deliver(&app, &created, Some(&sign(&created, WEBHOOK_SECRET, Some(stale)))).await;
    assert_eq!(st, 400, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("five minutes")), "{p}");
    let tampered = created.replace("evt_created", "evt_tampered");
    assert_eq!(deliver(&app, &tampered, Some(&sign(&created, WEBHOOK_SECRET, None))).await.0, 400);
    assert_eq!(billing_of(&app, &acme).await["plan"], "free", "nothing refused changed the plan");

    // Accepted when any of several v1 signatures matches (a secret being rolled).
    let good = sign(&created, WEBHOOK_SECRET, None);
    let (t, v1) = good.split_once(",v1=").expect("t=…,v1=…");
    let two = format!("{t},v1={},v1={v1}", "0".repeat(64));
    let (st, r) = deliver(&app, &created, Some(&two)).await;
    assert_eq!((st, r["outcome"].as_str()), (200, Some("handled")), "{r}");
    let b = billing_of(&app, &acme).await;
    assert_eq!((b["plan"].as_str(), b["status"].as_str()), (Some("pro"), Some("active")), "{b}");
    assert_eq!(b["limits"]["active_keys"], 100);
    // The same event again does nothing.
    let (st, r) = deliver(&app, &created, Some(&sign(&created, WEBHOOK_SECRET, None))).await;
    assert_eq!((st, r["outcome"].as_str()), (200, Some("replayed")), "{r}");

    // The subscription is cancelled at Stripe; its `deleted` event arrives first, then a stale
    // `updated` from before the cancellation: the plan stays the default one.
    stripe.call(reqwest::Method::DELETE, &format!("/v1/subscriptions/{sub}"), &[]).await;
    let deleted = event("evt_deleted", "customer.subscription.deleted", json!({"id": sub, "status": "canceled"}));
    assert_eq!(deliver(&app, &deleted, Some(&sign(&deleted, WEBHOOK_SECRET, None))).await.1["outcome"], "handled");
    let late = event("evt_late_update", "customer.subscription.updated", json!({"id": sub, "status": "active"}));
    assert_eq!(deliver(&app, &late, Some(&sign(&late, WEBHOOK_SECRET, None))).await.1["outcome"], "handled");
    let b = billing_of(&app, &acme).await;
    assert_eq!((b["plan"].as_str(), b["status"].as_str()), (Some("free"), Some("canceled")), "{b}");

    // Events Keyroll does not act on, or about someone else's customer, are acknowledged.
    let other = event("evt_other", "charge.refunded", json!({"id": "ch_1"}));
    assert_eq!(deliver(&app, &other, Some(&sign(&other, WEBHOOK_SECRET, None))).await.1["outcome"], "ignored");

    let (_, audit) = app.get("/v1/audit-events?action=billing.plan_changed", &acme.root).await;
    let changes: Vec<_> = audit["data"].as_array().expect("data").iter().map(|e| e["summary"].clone()).collect();
    assert_eq!(changes.len(), 2, "to pro, back to free: {changes:?}");
}

/// On the dashboard a create beyond the plan is refused beside the form, keeping what was
/// typed; the webhook endpoints form too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_plan_limits_beside_the_form() {
    let Some(stripe) = LocalStripe::start().await else { return };
    let members = [("billing.plans.free.limits.members", "1")];
    let Some(app) = billed_app_with(Backend::Sqlite, &stripe.base, &members).await else { return };
    let (ann, csrf, consumer_id, _) = crate::dashboard::ann_with_a_key(&app).await;
    let second = crate::dashboard::create_key(&ann, &csrf, &consumer_id, "").await;
    assert_eq!(second.status, reqwest::StatusCode::OK, "{}", second.body);
    let third = crate::dashboard::create_key(&ann, &csrf, &consumer_id, "").await;
    assert_eq!(third.status, reqwest::StatusCode::PAYMENT_REQUIRED, "{}", third.body);
    assert!(
        third.body.contains("class=\"error\"") && third.body.contains("limit of active keys is reached (2"),
        "{}",
        third.body
    );
    assert!(third.body.contains("value=\"prod\""), "the form keeps what was typed");
    let hook = |n: &str| format!("http://127.0.0.1:9/hooks/{n}");
    let first = ann.post("/app/webhooks", &[("csrf", &csrf), ("url", &hook("1")), ("event_types", "")]).await;
    assert_eq!(first.status, reqwest::StatusCode::OK, "{}", first.body);
    let over = ann.post("/app/webhooks", &[("csrf", &csrf), ("url", &hook("2")), ("event_types", "")]).await;
    assert_eq!(over.status, reqwest::StatusCode::PAYMENT_REQUIRED, "{}", over.body);
    assert!(over.body.contains("limit of webhook endpoints is reached (1"), "{}", over.body);
    let invite = ann.post("/app/team/invite", &[("csrf", &csrf), ("email", "bea@acme.test"), ("role", "viewer")]).await;
    assert_eq!(invite.status, reqwest::StatusCode::PAYMENT_REQUIRED, "{}", invite.body);
    assert!(invite.body.contains("id=\"email-error\"") && invite.body.contains("limit of members"), "{}", invite.body);
    assert!(invite.body.contains("value=\"bea@acme.test\""), "the form keeps what was typed");
    let keep = ann.post("/app/audit/retention", &[("csrf", &csrf), ("days", "90")]).await;
    assert_eq!(keep.status, reqwest::StatusCode::PAYMENT_REQUIRED, "{}", keep.body);
    assert!(keep.body.contains("id=\"days-error\"") && keep.body.contains("days of audit retention"), "{}", keep.body);
}

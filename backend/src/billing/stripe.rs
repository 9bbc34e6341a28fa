//! The calls Keyroll makes to Stripe, through `async-stripe` (`stripe-rust`): its request
//! builders and client, one client per process pointed at the configured API base, each call
//! that makes something with an idempotency key. Answers are read into small types holding only
//! the fields Keyroll uses, so an account pinned to another API version (or a Stripe-compatible
//! test server) is read the same.

use std::collections::HashMap;
use std::time::Duration;

use miniserde::Deserialize;
use secrecy::ExposeSecret;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::BillingSettings;

/// Why a call to Stripe failed.
#[derive(Debug, thiserror::Error)]
#[error("Stripe: {0}")]
pub struct StripeFailure(String);

impl From<stripe::StripeError> for StripeFailure {
    fn from(e: stripe::StripeError) -> Self {
        Self(match e {
            stripe::StripeError::Stripe(errors, status) => {
                format!("{status}: {}", errors.message.clone().unwrap_or_else(|| "refused".into()))
            }
            other => other.to_string(),
        })
    }
}

/// A subscription as Stripe holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionNow {
    pub id: String,
    pub customer: String,
    /// `active`, `past_due`, `canceled`, `unpaid`, `trialing`, `incomplete`, …
    pub status: String,
    /// The first item's price (the plan's flat price).
    pub price_id: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize)]
struct Item {
    price: Option<Id>,
    /// Legacy plans (older API versions) name the price here.
    plan: Option<Id>,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct Items {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Subscription {
    id: String,
    customer: String,
    status: String,
    items: Items,
    /// Older API versions keep the period on the subscription.
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct Session {
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawInvoice {
    id: String,
    number: Option<String>,
    status: Option<String>,
    total: Option<i64>,
    currency: Option<String>,
    created: Option<i64>,
    hosted_invoice_url: Option<String>,
}

#[derive(Deserialize)]
struct InvoiceList {
    data: Vec<RawInvoice>,
}

/// An invoice of the tenant, as the billing page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub number: Option<String>,
    pub status: String,
    /// In the currency's smallest unit.
    pub total: i64,
    pub currency: String,
    pub created: Option<i64>,
    /// Stripe's page of the invoice.
    pub url: Option<String>,
}

/// One meter event: a customer's verifications in one hour.
#[derive(Debug, Clone, Copy)]
pub struct MeterEvent<'a> {
    pub event_name: &'a str,
    pub customer: &'a str,
    pub value: u64,
    /// Unique per tenant (or consumer) and hour.
    pub identifier: &'a str,
    /// The hour's start (Unix seconds).
    pub timestamp: i64,
}

#[derive(Deserialize)]
struct Ack {
    #[allow(dead_code, reason = "read to confirm the answer is a meter event")]
    identifier: Option<String>,
}

/// What a Checkout Session is made for.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    pub tenant_id: &'a str,
    pub customer: &'a str,
    pub plan_id: &'a str,
    pub price_id: &'a str,
    pub metered_price_id: Option<&'a str>,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

/// Keyroll's Stripe client.
#[derive(Debug)]
pub struct Stripe {
    client: Client,
}

fn once(key: &str) -> Result<RequestStrategy, StripeFailure> {
    IdempotencyKey::new(key).map(RequestStrategy::Idempotent).map_err(|e| StripeFailure(e.to_string()))
}

impl Stripe {
    #[must_use]
    pub fn new(settings: &BillingSettings) -> Self {
        Self::with_key(settings.stripe_secret_key.expose_secret(), &settings.stripe_api_base)
    }

    /// A client of another Stripe account (a team's own, to bill its consumers).
    #[must_use]
    pub fn with_key(key: &str, api_base: &str) -> Self {
        let client = ClientBuilder::new(key)
            .url(format!("{api_base}/"))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_else(|_| Client::new(key));
        Self { client }
    }

    /// Makes the tenant's customer (once per tenant, however often it is asked).
    ///
    /// # Errors
    /// What Stripe answered.
    pub async fn create_customer(&self, tenant_id: &str, name: &str) -> Result<String, StripeFailure> {
        let request = stripe_core::customer::CreateCustomer::new()
            .name(name)
            .metadata(HashMap::from([("keyroll_tenant_id".to_owned(), tenant_id.to_owned())]));
        let c: Created = request
            .build()
            .customize()
            .request_strategy(once(&format!("keyroll-customer-{tenant_id}"))?)
            .send(&self.client)
            .await?;
        Ok(c.id)
    }

    /// The subscription as it is now (not as an event said it was).
    ///
    /// # Errors
    /// What Stripe answered.
    pub async fn subscription(&self, id: &str) -> Result<SubscriptionNow, StripeFailure> {
        let ok = !id.is_empty() && id.len() <= 255 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(StripeFailure(format!("{id:?} is not a subscription id")));
        }
        let s: Subscription = RequestBuilder::new(StripeMethod::Get, format!("/subscriptions/{id}"))
            .customize()
            .send(&self.client)
            .await?;
        let item = s.items.data.first();
        Ok(SubscriptionNow {
            id: s.id,
            customer: s.customer,
            status: s.status,
            price_id: item.and_then(|i| i.price.as_ref().or(i.plan.as_ref())).map(|p| p.id.clone()),
            period_start: item.and_then(|i| i.current_period_start).or(s.current_period_start),
            period_end: item.and_then(|i| i.current_period_end).or(s.current_period_end),
        })
    }

    /// A Checkout Session (subscription mode) to subscribe the tenant's customer to `price_id`,
    /// with the metered overage price beside it when the plan has one. Returns Stripe's URL.
    ///
    /// # Errors
    /// What Stripe answered; a session without a URL.
    pub async fn checkout_session(&self, c: &CheckoutRequest<'_>) -> Result<String, StripeFailure> {
        use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems};
        let mut items = vec![CreateCheckoutSessionLineItems {
            price: Some(c.price_id.to_owned()),
            quantity: Some(1),
            ..CreateCheckoutSessionLineItems::new()
        }];
        if let Some(m) = c.metered_price_id {
            items.push(CreateCheckoutSessionLineItems {
                price: Some(m.to_owned()),
                ..CreateCheckoutSessionLineItems::new()
            });
        }
        let request = CreateCheckoutSession::new()
            .mode(stripe_checkout::CheckoutSessionMode::Subscription)
            .customer(c.customer)
            .client_reference_id(c.tenant_id)
            .line_items(items)
            .success_url(c.success_url)
            .cancel_url(c.cancel_url)
            .metadata(HashMap::from([
                ("keyroll_tenant_id".to_owned(), c.tenant_id.to_owned()),
                ("keyroll_plan".to_owned(), c.plan_id.to_owned()),
            ]));
        let s: Session = request.build().customize().send(&self.client).await?;
        s.url.ok_or_else(|| StripeFailure("the Checkout Session has no URL".into()))
    }

    /// A Billing Portal session for the tenant's customer. Returns Stripe's URL.
    ///
    /// # Errors
    /// What Stripe answered; a session without a URL.
    pub async fn portal_session(&self, customer: &str, return_url: &str) -> Result<String, StripeFailure> {
        let request = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        let s: Session = request.build().customize().send(&self.client).await?;
        s.url.ok_or_else(|| StripeFailure("the Billing Portal session has no URL".into()))
    }

    /// Reports `value` verifications of `customer` to the meter `event_name`. Stripe keeps one
    /// event per `identifier`, so sending an hour again never counts it twice.
    ///
    /// # Errors
    /// What Stripe answered.
    pub async fn meter_event(&self, m: &MeterEvent<'_>) -> Result<(), StripeFailure> {
        let payload = HashMap::from([
            ("stripe_customer_id".to_owned(), m.customer.to_owned()),
            ("value".to_owned(), m.value.to_string()),
        ]);
        let request = stripe_billing::billing_meter_event::CreateBillingMeterEvent::new(m.event_name, payload)
            .identifier(m.identifier)
            .timestamp(m.timestamp);
        let _: Ack = request.build().customize().request_strategy(once(m.identifier)?).send(&self.client).await?;
        Ok(())
    }

    /// The customer's latest invoices, newest first (at most 12).
    ///
    /// # Errors
    /// What Stripe answered.
    pub async fn invoices(&self, customer: &str) -> Result<Vec<Invoice>, StripeFailure> {
        let request = stripe_billing::invoice::ListInvoice::new().customer(customer).limit(12);
        let list: InvoiceList = request.build().customize().send(&self.client).await?;
        Ok(list
            .data
            .into_iter()
            .map(|i| Invoice {
                id: i.id,
                number: i.number,
                status: i.status.unwrap_or_else(|| "draft".into()),
                total: i.total.unwrap_or(0),
                currency: i.currency.unwrap_or_default(),
                created: i.created,
                url: i.hosted_invoice_url,
            })
            .collect())
    }
}

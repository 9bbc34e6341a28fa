//! Stripe's webhooks: verified from the `Stripe-Signature` header (HMAC-SHA256 over
//! `{t}.{body}`, five minutes of tolerance, any of several `v1` signatures) by `async-stripe`'s
//! webhook crate, handled once per event id, and safe in any order: an event only says which
//! subscription changed; its state is read from Stripe as it is now, never from the event.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{blank_account, commit};
use crate::app::{Ctx, ServiceError};
use crate::audit::Entry;
use crate::billing::stripe::SubscriptionNow;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::store;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It changed what Keyroll holds (or confirmed it).
    Handled,
    /// Its id was handled before: nothing done.
    Replayed,
    /// Not an event Keyroll acts on, or about a customer it does not know.
    Ignored,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    type_: String,
    data: RawData,
}

#[derive(Debug, Deserialize)]
struct RawData {
    object: Value,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str)
}

/// The subscription an event is about.
fn subscription_of(type_: &str, object: &Value) -> Option<String> {
    let id = match type_ {
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            text(object, &["id"])
        }
        "checkout.session.completed" => text(object, &["subscription"]),
        "invoice.paid" | "invoice.payment_failed" => text(object, &["subscription"])
            .or_else(|| text(object, &["parent", "subscription_details", "subscription"])),
        _ => None,
    };
    id.map(str::to_owned)
}

/// Checks the signature (`Err` naming what is wrong), then handles the event.
///
/// # Errors
/// `NotFound` with billing or its webhook secret off; `Invalid` for a missing or wrong
/// signature, a stale timestamp or a body that is not an event; `Unavailable` when Stripe cannot
/// be asked for the subscription's state (Stripe sends the event again).
pub async fn receive(state: &AppState, payload: &str, signature: Option<&str>) -> Result<Outcome, ServiceError> {
    use secrecy::ExposeSecret;
    use stripe_webhook::{Webhook, WebhookError};
    let Some(secret) = state.settings.billing.as_ref().and_then(|b| b.stripe_webhook_secret.as_ref()) else {
        return Err(ServiceError::NotFound("billing is not configured"));
    };
    let Some(signature) = signature else {
        return Err(ServiceError::field("stripe-signature", "is required"));
    };
    match Webhook::construct_event(payload, signature, secret.expose_secret()) {
        // The signature and its time were checked before the body was read into Stripe's types;
        // a body that those types do not read is still signed, and read here.
        Ok(_) | Err(WebhookError::BadParse(_)) => {}
        Err(WebhookError::BadTimestamp(_)) => {
            return Err(ServiceError::field("stripe-signature", "is more than five minutes old"));
        }
        Err(WebhookError::BadHeader(_) | WebhookError::BadKey) => {
            return Err(ServiceError::field("stripe-signature", "is not a t=…,v1=… signature header"));
        }
        Err(WebhookError::BadSignature) => {
            return Err(ServiceError::field("stripe-signature", "matches no signature of this body"));
        }
    }
    let event: RawEvent = serde_json::from_str(payload)
        .map_err(|e| ServiceError::field("body", format!("is not a Stripe event ({e})")))?;
    let Some(subscription) = subscription_of(&event.type_, &event.data.object) else {
        record(state, &event).await?;
        return Ok(Outcome::Ignored);
    };
    let Some(stripe) = &state.stripe else { return Err(ServiceError::NotFound("billing is not configured")) };
    if store::billing::event_seen(&state.db, &event.id).await? {
        return Ok(Outcome::Replayed);
    }
    let now = match stripe.subscription(&subscription).await {
        Ok(s) => s,
        Err(e) => return Err(ServiceError::Unavailable(format!("Stripe could not be asked for {subscription}: {e}"))),
    };
    let tenant = match store::billing::account_of_customer(&state.db, &now.customer).await? {
        Some(a) => Some(TenantId::from_trusted(a.tenant_id)),
        None => text(&event.data.object, &["client_reference_id"])
            .or_else(|| text(&event.data.object, &["metadata", "keyroll_tenant_id"]))
            .and_then(|t| TenantId::parse(t).ok()),
    };
    let Some(tenant) = tenant else {
        record(state, &event).await?;
        return Ok(Outcome::Ignored);
    };
    if store::tenants::get(&state.db, &tenant).await.is_err() {
        record(state, &event).await?;
        return Ok(Outcome::Ignored);
    }
    apply(state, &tenant, &event, &now).await
}

async fn record(state: &AppState, event: &RawEvent) -> Result<(), ServiceError> {
    store::billing::record_event(&state.db, &event.id, &event.type_).await?;
    Ok(())
}

fn at(ts: Option<i64>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t, 0))
}

/// Takes the subscription as Stripe holds it now: its plan (by price), status and period. A
/// past-due (or unpaid) subscription keeps its plan through the grace period; a cancelled one
/// falls back to the default plan. Nothing is deleted either way.
async fn apply(
    state: &AppState,
    tenant: &TenantId,
    event: &RawEvent,
    sub: &SubscriptionNow,
) -> Result<Outcome, ServiceError> {
    let Some(billing) = &state.settings.billing else {
        return Err(ServiceError::NotFound("billing is not configured"));
    };
    let before = store::billing::account(&state.db, tenant).await?;
    let t = store::tenants::get(&state.db, tenant).await?;
    let mut account = before.clone().unwrap_or_else(|| blank_account(tenant));
    let live = matches!(sub.status.as_str(), "active" | "trialing" | "past_due" | "unpaid");
    let plan = match (live, sub.price_id.as_deref().and_then(|p| billing.plan_of_price(p))) {
        (true, Some(p)) => p.id.clone(),
        _ => billing.default_plan.clone(),
    };
    let overdue = matches!(sub.status.as_str(), "past_due" | "unpaid");
    account.stripe_customer_id = Some(sub.customer.clone());
    account.subscription_id = Some(sub.id.clone());
    account.subscription_status.clone_from(&sub.status);
    account.price_id.clone_from(&sub.price_id);
    account.period_start = at(sub.period_start);
    account.period_end = at(sub.period_end);
    account.past_due_since = if overdue { account.past_due_since.or_else(|| Some(Utc::now())) } else { None };
    account.updated_at = Utc::now();
    let ctx = Ctx::system(state, tenant.clone());
    let plan_before = t.plan.clone();
    let status_before = before.as_ref().map(|a| a.subscription_status.clone());
    let outcome = commit(&ctx, async |txn, change| {
        if !store::billing::record_event(txn, &event.id, &event.type_).await? {
            return Ok(Outcome::Replayed);
        }
        store::billing::put_account(txn, account.clone()).await?;
        if plan != plan_before {
            store::tenants::set_plan(txn, tenant, &plan).await?;
            change.audit(
                Entry::new(
                    "billing.plan_changed",
                    "tenant",
                    tenant.as_str().to_owned(),
                    format!(
                        "The plan changed from {plan_before} to {plan} (Stripe subscription {}, {})",
                        sub.id, sub.status
                    ),
                )
                .change(json!({"plan": plan_before}), json!({"plan": plan, "subscription_status": sub.status})),
            );
        } else if status_before.as_deref() != Some(sub.status.as_str()) {
            change.audit(
                Entry::new(
                    "billing.subscription_updated",
                    "tenant",
                    tenant.as_str().to_owned(),
                    format!("The Stripe subscription {} is {}", sub.id, sub.status),
                )
                .change(json!({"subscription_status": status_before}), json!({"subscription_status": sub.status})),
            );
        }
        Ok(Outcome::Handled)
    })
    .await?;
    Ok(outcome)
}

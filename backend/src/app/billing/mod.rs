//! Plans and their limits in the operations: creating beyond a limit of the tenant's plan is
//! refused (`plan_limit_reached`, naming the limit); verification never is. With billing off
//! every limit is unlimited and nothing is counted.

use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use serde_json::json;

use super::{Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::billing::{BillingSettings, Plan};
use crate::domain::TenantId;
use crate::domain::plan::{Limit, Limits};
use crate::state::AppState;
use crate::store;
use crate::store::entities::billing_account;

pub mod consumers;
pub mod meter;
pub mod notices;
pub mod webhook;

/// The tenant's plan, or `None` with billing off.
///
/// # Errors
/// Database errors.
pub async fn plan(state: &AppState, tenant: &TenantId) -> Result<Option<Plan>, ServiceError> {
    let Some(billing) = &state.settings.billing else { return Ok(None) };
    let t = store::tenants::get(&state.db, tenant).await?;
    Ok(Some(billing.plan(&t.plan).clone()))
}

/// When a past-due subscription's grace ends: from then the default plan's limits apply (no
/// data is deleted; creating beyond them is refused).
#[must_use]
pub fn grace_ends(billing: &BillingSettings, account: Option<&billing_account::Model>) -> Option<DateTime<Utc>> {
    account.and_then(|a| a.past_due_since).map(|d| d + TimeDelta::days(i64::from(billing.past_due_grace_days)))
}

/// The limits the tenant is held to now (all unlimited with billing off; the default plan's
/// once a past-due subscription's grace has ended).
///
/// # Errors
/// Database errors.
pub async fn limits(state: &AppState, tenant: &TenantId) -> Result<Limits, ServiceError> {
    let Some(billing) = &state.settings.billing else { return Ok(Limits::UNLIMITED) };
    let Some(plan) = plan(state, tenant).await? else { return Ok(Limits::UNLIMITED) };
    let account = store::billing::account(&state.db, tenant).await?;
    if grace_ends(billing, account.as_ref()).is_some_and(|end| end <= Utc::now()) {
        return Ok(billing.plan(&billing.default_plan).limits);
    }
    Ok(plan.limits)
}

/// How much of `limit` the tenant uses now (`None` for a limit that is not a count of things
/// held).
///
/// # Errors
/// Database errors.
pub async fn used(state: &AppState, tenant: &TenantId, limit: Limit) -> Result<Option<u64>, ServiceError> {
    Ok(match limit {
        Limit::ActiveKeys => Some(store::billing::active_keys(&state.db, tenant, Utc::now()).await?),
        Limit::Members => Some(store::billing::members(&state.db, tenant).await?),
        Limit::WebhookEndpoints => Some(store::billing::webhook_endpoints(&state.db, tenant).await?),
        Limit::VerificationsPerMonth | Limit::AuditRetentionDays => None,
    })
}

/// Refuses to add `more` of `limit` beyond the tenant's plan.
///
/// # Errors
/// `PlanLimit`; database errors.
pub async fn admit(ctx: &Ctx<'_>, limit: Limit, more: u64) -> Result<(), ServiceError> {
    let limits = limits(ctx.state, &ctx.tenant).await?;
    if limits.get(limit).is_none() {
        return Ok(());
    }
    let used = used(ctx.state, &ctx.tenant, limit).await?.unwrap_or(0);
    limits.admits(limit, used, more).map_err(|allowed| ServiceError::PlanLimit { limit, allowed })
}

/// Refuses a value of `limit` (such as days of audit retention) beyond the tenant's plan.
///
/// # Errors
/// `PlanLimit`; database errors.
pub async fn admit_value(ctx: &Ctx<'_>, limit: Limit, value: u64) -> Result<(), ServiceError> {
    match limits(ctx.state, &ctx.tenant).await?.get(limit) {
        Some(allowed) if value > allowed => Err(ServiceError::PlanLimit { limit, allowed }),
        _ => Ok(()),
    }
}

/// The tenant's billing period: its subscription's, else the calendar month (UTC).
#[must_use]
pub fn period(account: Option<&billing_account::Model>, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    if let Some((from, to)) = account.and_then(|a| a.period_start.zip(a.period_end))
        && from <= now
        && now < to
    {
        return (from, to);
    }
    let from = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now);
    let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    let to = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(now);
    (from, to)
}

/// What `GET /v1/billing` and the billing page show.
#[derive(Debug, Clone)]
pub struct Overview {
    pub plan: Plan,
    /// `active` without a subscription; else Stripe's subscription status.
    pub status: String,
    pub stripe_customer_id: Option<String>,
    pub period: (DateTime<Utc>, DateTime<Utc>),
    /// Use of each counted limit, and the verifications of the period.
    pub usage: Vec<(Limit, u64)>,
    /// The limits held to now (the default plan's after a past-due grace).
    pub limits: Limits,
    pub past_due_since: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// The share of the period's verification allowance the team was told it reached: 0, 80
    /// or 100 (the flag).
    pub allowance_reached: u8,
}

/// The tenant's Stripe customer, made when it has none yet (billing turned on after the tenant
/// was made, or Stripe was out of reach then). `None` with billing off.
///
/// # Errors
/// `Unavailable` when Stripe cannot be reached; database errors.
pub async fn ensure_customer(state: &AppState, tenant: &TenantId) -> Result<Option<String>, ServiceError> {
    let Some(stripe) = &state.stripe else { return Ok(None) };
    let existing = store::billing::account(&state.db, tenant).await?;
    if let Some(id) = existing.as_ref().and_then(|a| a.stripe_customer_id.clone()) {
        return Ok(Some(id));
    }
    let t = store::tenants::get(&state.db, tenant).await?;
    let id = stripe
        .create_customer(tenant.as_str(), &t.name)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("billing is out of reach: {e}")))?;
    let mut account = existing.unwrap_or_else(|| blank_account(tenant));
    account.stripe_customer_id = Some(id.clone());
    account.updated_at = Utc::now();
    let ctx = Ctx::system(state, tenant.clone());
    commit(&ctx, async |txn, change| {
        store::billing::put_account(txn, account).await?;
        change.audit(
            Entry::new(
                "billing.customer_created",
                "tenant",
                tenant.as_str().to_owned(),
                format!("Made the Stripe customer {id}"),
            )
            .with(json!({"stripe_customer_id": id})),
        );
        Ok(())
    })
    .await?;
    Ok(Some(id))
}

/// A billing account with nothing in it yet.
#[must_use]
pub fn blank_account(tenant: &TenantId) -> billing_account::Model {
    billing_account::Model {
        tenant_id: tenant.as_str().to_owned(),
        stripe_customer_id: None,
        subscription_id: None,
        subscription_status: "none".into(),
        price_id: None,
        period_start: None,
        period_end: None,
        past_due_since: None,
        notice_period: None,
        notice_level: 0,
        updated_at: Utc::now(),
    }
}

/// The tenant's plan, period, usage against each limit and Stripe customer; `None` with billing
/// off.
///
/// # Errors
/// `Forbidden`; `Unavailable` when Stripe cannot be reached to make the customer.
pub async fn overview(ctx: &Ctx<'_>) -> Result<Option<Overview>, ServiceError> {
    ctx.require(Permission::BillingRead)?;
    let Some(billing) = &ctx.state.settings.billing else { return Ok(None) };
    let customer = ensure_customer(ctx.state, &ctx.tenant).await?;
    let account = store::billing::account(ctx.db(), &ctx.tenant).await?;
    let plan = plan(ctx.state, &ctx.tenant).await?.unwrap_or_else(|| billing.plan(&billing.default_plan).clone());
    let now = Utc::now();
    let period = period(account.as_ref(), now);
    let mut usage = Vec::new();
    for l in [Limit::ActiveKeys, Limit::Members, Limit::WebhookEndpoints] {
        usage.push((l, used(ctx.state, &ctx.tenant, l).await?.unwrap_or(0)));
    }
    let verifications = store::billed_usage::tenant_total(ctx.db(), &ctx.tenant, period.0, now).await?;
    usage.push((Limit::VerificationsPerMonth, verifications));
    let status = account
        .as_ref()
        .filter(|a| a.subscription_id.is_some())
        .map_or_else(|| "active".to_owned(), |a| a.subscription_status.clone());
    Ok(Some(Overview {
        plan,
        status,
        stripe_customer_id: customer,
        period,
        usage,
        limits: limits(ctx.state, &ctx.tenant).await?,
        past_due_since: account.as_ref().and_then(|a| a.past_due_since),
        grace_ends_at: grace_ends(billing, account.as_ref()),
        allowance_reached: account
            .as_ref()
            .filter(|a| a.notice_period.as_deref() == Some(crate::time::rfc3339(period.0).as_str()))
            .map_or(0, |a| u8::try_from(a.notice_level).unwrap_or(0)),
    }))
}

/// Where the billing page sends the owner to subscribe to `plan_id`: a Stripe Checkout Session.
///
/// # Errors
/// `Forbidden` below owner; `NotFound` with billing off or for a plan without a price;
/// `Conflict` for the plan the team is on; `Unavailable` when Stripe cannot be reached.
pub async fn checkout(ctx: &Ctx<'_>, plan_id: &str) -> Result<String, ServiceError> {
    ctx.require(Permission::Tenant)?;
    let (Some(billing), Some(stripe)) = (&ctx.state.settings.billing, &ctx.state.stripe) else {
        return Err(ServiceError::NotFound("billing is not configured"));
    };
    let Some(plan) = billing.plans.get(plan_id).filter(|p| p.price_id.is_some()) else {
        return Err(ServiceError::NotFound("no plan with a price has that id"));
    };
    let current = store::tenants::get(ctx.db(), &ctx.tenant).await?.plan;
    if current == plan.id {
        return Err(ServiceError::Conflict(format!("the team is on the {} plan already", plan.name)));
    }
    let customer =
        ensure_customer(ctx.state, &ctx.tenant).await?.ok_or(ServiceError::NotFound("billing is not configured"))?;
    let base = ctx.state.base_url.trim_end_matches('/');
    let success = format!("{base}/app/billing?checkout=done");
    let cancel = format!("{base}/app/billing");
    let request = crate::billing::stripe::CheckoutRequest {
        tenant_id: ctx.tenant.as_str(),
        customer: &customer,
        plan_id: &plan.id,
        price_id: plan.price_id.as_deref().unwrap_or_default(),
        metered_price_id: plan.metered_price_id.as_deref(),
        success_url: &success,
        cancel_url: &cancel,
    };
    stripe
        .checkout_session(&request)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("billing is out of reach: {e}")))
}

/// Where the billing page sends the owner to manage the subscription, payment methods and
/// invoices: a Stripe Billing Portal session.
///
/// # Errors
/// `Forbidden` below owner; `NotFound` with billing off; `Unavailable` when Stripe cannot be
/// reached.
pub async fn portal(ctx: &Ctx<'_>) -> Result<String, ServiceError> {
    ctx.require(Permission::Tenant)?;
    let Some(stripe) = &ctx.state.stripe else { return Err(ServiceError::NotFound("billing is not configured")) };
    let customer =
        ensure_customer(ctx.state, &ctx.tenant).await?.ok_or(ServiceError::NotFound("billing is not configured"))?;
    let back = format!("{}/app/billing", ctx.state.base_url.trim_end_matches('/'));
    stripe
        .portal_session(&customer, &back)
        .await
        .map_err(|e| ServiceError::Unavailable(format!("billing is out of reach: {e}")))
}

/// The team's latest invoices from Stripe (empty with billing off).
///
/// # Errors
/// `Forbidden`; `Unavailable` when Stripe cannot be reached.
pub async fn invoices(ctx: &Ctx<'_>) -> Result<Vec<crate::billing::stripe::Invoice>, ServiceError> {
    ctx.require(Permission::BillingRead)?;
    let Some(stripe) = &ctx.state.stripe else { return Ok(Vec::new()) };
    let Some(customer) = ensure_customer(ctx.state, &ctx.tenant).await? else { return Ok(Vec::new()) };
    stripe.invoices(&customer).await.map_err(|e| ServiceError::Unavailable(format!("billing is out of reach: {e}")))
}

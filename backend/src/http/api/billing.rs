//! `GET /v1/billing`: the plan, its period, usage against each limit and the Stripe customer.
//! Answers 404 when billing is off.

use std::collections::BTreeMap;

use actix_web::web;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app;
use crate::domain::plan::Limit;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::state::AppState;

/// A billing period.
#[derive(Debug, Serialize, ToSchema)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The team's plan and its use.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingView {
    /// The plan's id in the configuration (`free`, `pro`, …).
    pub plan: String,
    pub plan_name: String,
    /// `active` without a subscription; else Stripe's subscription status (`past_due`, …).
    pub status: String,
    pub stripe_customer_id: Option<String>,
    pub period: Period,
    /// `active_keys`, `members`, `webhook_endpoints` held now; `verifications` in the period.
    #[schema(value_type = Object)]
    pub usage: BTreeMap<&'static str, u64>,
    /// Each limit held to now (`null`: unlimited). The default plan's once a past-due
    /// subscription's grace has ended.
    #[schema(value_type = Object)]
    pub limits: BTreeMap<&'static str, Option<u64>>,
    /// Verifications beyond the month's allowance so far (billed as overage; never refused).
    pub overage: u64,
    pub past_due_since: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// 80 or 100 once the period's verifications reached that share of the allowance (the
    /// owners were emailed), else 0.
    pub allowance_reached: u8,
}

/// The team's plan, period, usage against each limit and Stripe customer (when billing is on).
#[utoipa::path(get, path = "/v1/billing", tag = "billing",
    responses((status = 200, body = BillingView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "Billing is off"),
        (status = 503, body = Problem, description = "Stripe is out of reach")),
    security(("root_key" = [])))]
pub async fn get(state: web::Data<AppState>, root: Root) -> Result<web::Json<BillingView>, ApiError> {
    let Some(o) = app::billing::overview(&root.ctx(&state)).await? else {
        return Err(ApiError::NotFound("billing is not configured on this install"));
    };
    let usage: BTreeMap<&'static str, u64> = o
        .usage
        .iter()
        .map(|(l, n)| (if *l == Limit::VerificationsPerMonth { "verifications" } else { l.as_str() }, *n))
        .collect();
    let verifications = usage.get("verifications").copied().unwrap_or(0);
    let overage = o.limits.verifications_per_month.map_or(0, |a| verifications.saturating_sub(a));
    Ok(web::Json(BillingView {
        plan: o.plan.id,
        plan_name: o.plan.name,
        status: o.status,
        stripe_customer_id: o.stripe_customer_id,
        period: Period { from: o.period.0, to: o.period.1 },
        usage,
        limits: Limit::ALL.iter().map(|l| (l.as_str(), o.limits.get(*l))).collect(),
        overage,
        past_due_since: o.past_due_since,
        grace_ends_at: o.grace_ends_at,
        allowance_reached: o.allowance_reached,
    }))
}

/// `PUT /v1/billing/stripe/connection`.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectStripe {
    /// A restricted key of the team's own Stripe account (`rk_live_…`, `rk_test_…`) that may
    /// write Billing Meter events. Sealed with the master key; never shown again.
    pub stripe_key: String,
}

/// The team's own Stripe account, to which its consumers' verifications are reported. Works
/// whether or not this install bills its teams.
#[utoipa::path(get, path = "/v1/billing/stripe/connection", tag = "billing",
    responses((status = 200, body = app::billing::consumers::Connection), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn connection(
    state: web::Data<AppState>,
    root: Root,
) -> Result<web::Json<app::billing::consumers::Connection>, ApiError> {
    Ok(web::Json(app::billing::consumers::connection(&root.ctx(&state)).await?))
}

/// Connect the team's own Stripe account (or replace its key): each consumer with a
/// `stripe_customer_id` has its successful verifications of each API with a
/// `stripe_meter_event` reported to that meter, per closed hour, identified by consumer, API
/// and hour.
#[utoipa::path(put, path = "/v1/billing/stripe/connection", tag = "billing", request_body = ConnectStripe,
    responses((status = 200, body = app::billing::consumers::Connection), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "No master key is configured to seal the key with")),
    security(("root_key" = [])))]
pub async fn connect(
    state: web::Data<AppState>,
    root: Root,
    body: crate::http::json::Body<ConnectStripe>,
) -> Result<web::Json<app::billing::consumers::Connection>, ApiError> {
    Ok(web::Json(app::billing::consumers::connect(&root.ctx(&state), &body.value.stripe_key).await?))
}

/// Disconnect the team's own Stripe account: its key is deleted and nothing more is reported.
#[utoipa::path(delete, path = "/v1/billing/stripe/connection", tag = "billing",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "No Stripe account is connected")),
    security(("root_key" = [])))]
pub async fn disconnect(state: web::Data<AppState>, root: Root) -> Result<actix_web::HttpResponse, ApiError> {
    app::billing::consumers::disconnect(&root.ctx(&state)).await?;
    Ok(actix_web::HttpResponse::NoContent().finish())
}

//! `/app/billing` (owners, billing on): the plan and its period, usage against each limit,
//! overage so far, invoices from Stripe, and the ways to upgrade (Stripe Checkout) and manage
//! the subscription (Stripe's Billing Portal). Without billing the page does not exist.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, When};
use super::session::{Signed, WebError, page_with, see_other_external};
use crate::app::{self, Role, ServiceError};
use crate::domain::plan::Limit;
use crate::state::AppState;

/// One limit as the page shows it.
pub struct LimitRow {
    pub words: &'static str,
    pub used: u64,
    /// `None`: unlimited.
    pub allowed: Option<u64>,
    /// 0 to 100, for the bar.
    pub percent: u64,
    pub over: bool,
}

/// A plan the team may move to.
pub struct PlanOffer {
    pub id: String,
    pub name: String,
    pub current: bool,
    pub can_buy: bool,
}

/// An invoice row.
pub struct InvoiceRow {
    pub number: String,
    pub status: String,
    pub amount: String,
    pub created: Option<When>,
    pub url: Option<String>,
}

#[derive(Template)]
#[template(path = "app/billing.html")]
struct BillingPage {
    c: Chrome,
    plan_name: String,
    status: String,
    period_from: When,
    period_to: When,
    limits: Vec<LimitRow>,
    overage: u64,
    plans: Vec<PlanOffer>,
    invoices: Vec<InvoiceRow>,
    invoices_error: Option<String>,
    past_due_since: Option<When>,
    grace_ends: Option<When>,
    notice: Option<&'static str>,
    /// Verifications per day this period, within and over the allowance.
    chart: super::charts::Chart,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BillingQuery {
    pub checkout: String,
    pub plan: String,
}

fn owner(me: &Signed) -> Result<(), WebError> {
    if !me.billing {
        return Err(WebError::NotFound);
    }
    if me.role != Role::Owner {
        return Err(WebError::Forbidden("Only owners can see and change billing."));
    }
    Ok(())
}

/// A 303 to the page Stripe made for this owner (the only redirect off the site: the URL comes
/// from Stripe's answer, never from the request).
fn to_stripe(url: &str) -> Result<HttpResponse, WebError> {
    let ok = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
    if !ok {
        return Err(WebError::Internal(anyhow::anyhow!("Stripe answered a session URL that is not http(s)")));
    }
    Ok(see_other_external(url))
}

fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02} {}", m / 100, m % 100, currency.to_uppercase())
}

/// `GET /app/billing`.
///
/// # Errors
/// 404 with billing off; owners only.
pub async fn page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<BillingQuery>,
) -> Result<HttpResponse, WebError> {
    owner(&me)?;
    let ctx = me.ctx(&state);
    let Some(o) = app::billing::overview(&ctx).await? else { return Err(WebError::NotFound) };
    let limits = o
        .usage
        .iter()
        .map(|(l, used)| {
            let allowed = o.limits.get(*l);
            let percent = allowed.map_or(0, |a| used.saturating_mul(100).checked_div(a).unwrap_or(100).min(100));
            LimitRow { words: l.words(), used: *used, allowed, percent, over: allowed.is_some_and(|a| *used > a) }
        })
        .collect();
    let verifications = o.usage.iter().find(|(l, _)| *l == Limit::VerificationsPerMonth).map_or(0, |(_, n)| *n);
    let overage = o.limits.verifications_per_month.map_or(0, |a| verifications.saturating_sub(a));
    let plans = state
        .settings
        .billing
        .as_ref()
        .map(|b| {
            b.plans
                .values()
                .map(|p| PlanOffer {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    current: p.id == o.plan.id,
                    can_buy: p.price_id.is_some() && p.id != o.plan.id,
                })
                .collect()
        })
        .unwrap_or_default();
    let (invoices, invoices_error) = match app::billing::invoices(&ctx).await {
        Ok(list) => (
            list.into_iter()
                .map(|i| InvoiceRow {
                    number: i.number.unwrap_or(i.id),
                    status: i.status,
                    amount: money(i.total, &i.currency),
                    created: When::opt(i.created.and_then(|t| chrono::DateTime::from_timestamp(t, 0))),
                    url: i.url,
                })
                .collect(),
            None,
        ),
        Err(ServiceError::Unavailable(m)) => (Vec::new(), Some(super::session::sentence(&m))),
        Err(e) => return Err(e.into()),
    };
    let now = chrono::Utc::now();
    let until = now.min(o.period.1);
    let days = crate::store::billed_usage::tenant_by_day(&state.db, &me.tenant_id(), o.period.0, until).await?;
    let chart = super::charts::allowance_chart(&days, o.period.0, until, o.limits.verifications_per_month);
    let notice =
        (q.checkout == "done").then_some("Thank you. Your new plan applies as soon as Stripe confirms the payment.");
    page_with(
        actix_web::http::StatusCode::OK,
        &BillingPage {
            c: Chrome::of(&me, "billing"),
            plan_name: o.plan.name,
            status: o.status,
            period_from: When::of(o.period.0),
            period_to: When::of(o.period.1),
            limits,
            overage,
            plans,
            invoices,
            invoices_error,
            past_due_since: When::opt(o.past_due_since),
            grace_ends: When::opt(o.grace_ends_at),
            notice,
            chart,
        },
    )
}

/// `GET /app/billing/checkout?plan=…`: on to Stripe Checkout for that plan. A link rather than a
/// form, so the browser follows the redirect to Stripe (the pages only post to themselves);
/// it changes nothing in Keyroll.
///
/// # Errors
/// 404 with billing off or for an unknown plan; owners only.
pub async fn checkout(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<BillingQuery>,
) -> Result<HttpResponse, WebError> {
    owner(&me)?;
    let url = app::billing::checkout(&me.ctx(&state), &q.plan).await?;
    to_stripe(&url)
}

/// `GET /app/billing/portal`: on to Stripe's Billing Portal.
///
/// # Errors
/// 404 with billing off; owners only.
pub async fn portal(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    owner(&me)?;
    let url = app::billing::portal(&me.ctx(&state)).await?;
    to_stripe(&url)
}

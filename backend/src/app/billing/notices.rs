//! The month's verification allowance: when a team reaches 80 % and then 100 % of it in a
//! billing period, its owners are emailed once for each, the team is flagged (`GET
//! /v1/billing`), and the audit log says so. Verification goes on either way: what is over the
//! allowance is billed as overage.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{blank_account, limits, period};
use crate::app::{Ctx, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::TenantId;
use crate::domain::plan::allowance_reached;
use crate::state::AppState;
use crate::store;

/// One pass over every team with a monthly allowance. Returns the notices given.
///
/// # Errors
/// Database errors (a mail server's refusal is logged; the notice is still recorded).
pub async fn allowance(state: &AppState, now: DateTime<Utc>) -> Result<usize, ServiceError> {
    if state.settings.billing.is_none() {
        return Ok(0);
    }
    let mut given = 0;
    for t in store::tenants::all(&state.db).await? {
        let tenant = TenantId::from_trusted(t.id.clone());
        let Some(allowed) = limits(state, &tenant).await?.verifications_per_month else { continue };
        let account = store::billing::account(&state.db, &tenant).await?;
        let (from, to) = period(account.as_ref(), now);
        let used = store::billed_usage::tenant_total(&state.db, &tenant, from, now).await?;
        let level = allowance_reached(used, allowed);
        let key = crate::time::rfc3339(from);
        let told =
            account.as_ref().filter(|a| a.notice_period.as_deref() == Some(key.as_str())).map_or(0, |a| a.notice_level);
        if i32::from(level) <= told {
            continue;
        }
        let subject = format!("[Keyroll] {} has used {level} % of this month's verifications", t.name);
        let body = format!(
            "{} has made {used} verifications since {} against the plan's {allowed} for the period ending {}.\n\n\
             Verification is never stopped for billing: what goes over the allowance is billed as overage. \
             See the dashboard's Billing page to change the plan.\n",
            t.name,
            crate::time::rfc3339(from),
            crate::time::rfc3339(to)
        );
        tell_owners(state, &tenant, &subject, body).await?;
        let mut a = account.unwrap_or_else(|| blank_account(&tenant));
        a.notice_period = Some(key);
        a.notice_level = i32::from(level);
        a.updated_at = Utc::now();
        let ctx = Ctx::system(state, tenant.clone());
        commit(&ctx, async |txn, change| {
            store::billing::put_account(txn, a).await?;
            change.audit(
                Entry::new(
                    "billing.allowance_reached",
                    "tenant",
                    tenant.as_str().to_owned(),
                    format!("{level} % of the period's {allowed} verifications used ({used})"),
                )
                .with(json!({"level": level, "used": used, "allowed": allowed, "period_from": crate::time::rfc3339(from)})),
            );
            Ok(())
        })
        .await?;
        given += 1;
    }
    Ok(given)
}

async fn tell_owners(state: &AppState, tenant: &TenantId, subject: &str, body: String) -> Result<(), ServiceError> {
    use secrecy::ExposeSecret;
    let Some(url) = &state.settings.smtp_url else { return Ok(()) };
    let mailer = match crate::notify::email::Mailer::new(url.expose_secret(), &state.settings.smtp_from) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "no mail for the allowance notice");
            return Ok(());
        }
    };
    for (m, u) in store::accounts::members(&state.db, tenant).await? {
        if m.role == "owner"
            && let Err(e) = mailer.send_text(&u.email, subject, body.clone()).await
        {
            tracing::warn!(error = %e, "an allowance notice was not delivered");
        }
    }
    Ok(())
}

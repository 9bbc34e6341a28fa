//! Usage metering: each team's verifications per hour, reported to Stripe as Billing Meter
//! events. An hour is reported once it has closed and its counts have settled; the identifier
//! is the team and the hour, so an hour sent again (a node died after sending, before marking)
//! is kept once by Stripe. The mark (`usage_marks`, `stripe_meter`) moves after each hour, so
//! a restart resumes where reporting stopped: nothing lost, nothing doubled.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::billing::stripe::MeterEvent;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::store;

/// The mark's name among the usage marks.
pub const MARK: &str = "stripe_meter";
/// Hours reported per pass at most (a node that was down catches up over a few passes).
pub const HOURS_PER_PASS: usize = 24;
/// How long after an hour closes its counts are taken as settled (flushes from every node).
const SETTLE: TimeDelta = TimeDelta::minutes(2);

/// The identifier of a team's hour: Stripe keeps one event per identifier.
#[must_use]
pub fn identifier(tenant: &str, hour: DateTime<Utc>) -> String {
    format!("{tenant}-{}", hour.format("%Y%m%dT%H"))
}

/// One pass: reports every closed hour since the mark (at most [`HOURS_PER_PASS`]) for every
/// team with a Stripe customer. Returns the events sent. The first pass with billing on only
/// sets the mark (hours before billing was on are not billed).
///
/// # Errors
/// Database errors; Stripe's refusal (the mark stays, the hour is sent again next pass).
pub async fn report(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let (Some(billing), Some(stripe)) = (&state.settings.billing, &state.stripe) else { return Ok(0) };
    let closed = (now - SETTLE).duration_trunc(TimeDelta::hours(1))?;
    let Some(mut hour) = store::usage::mark_of(&state.db, MARK).await? else {
        store::usage::mark(&state.db, MARK, closed).await?;
        return Ok(0);
    };
    let mut sent = 0;
    for _ in 0..HOURS_PER_PASS {
        if hour >= closed {
            break;
        }
        let end = hour + TimeDelta::hours(1);
        for (tenant, customer) in store::billing::customers(&state.db).await? {
            let n = store::usage::tenant_total(&state.db, &TenantId::from_trusted(tenant.clone()), hour, end).await?;
            if n == 0 {
                continue;
            }
            let id = identifier(&tenant, hour);
            let event = MeterEvent {
                event_name: &billing.meter_event_name,
                customer: &customer,
                value: n,
                identifier: &id,
                timestamp: hour.timestamp(),
            };
            stripe.meter_event(&event).await?;
            sent += 1;
        }
        hour = end;
        store::usage::mark(&state.db, MARK, hour).await?;
    }
    Ok(sent)
}

//! Usage metering: each team's verifications per hour, reported to Stripe as Billing Meter
//! events. An hour is reported once it has closed and its counts have settled; the identifier
//! is the team and the hour, so an hour sent again (a node died after sending, before marking)
//! is kept once by Stripe. The mark (`usage_marks`, `stripe_meter`) moves after each hour, so
//! a restart resumes where reporting stopped: nothing lost, nothing doubled.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use futures_util::StreamExt;

use crate::billing::stripe::MeterEvent;
use crate::state::AppState;
use crate::store;

/// The mark's name among the usage marks.
pub const MARK: &str = "stripe_meter";
/// Hours reported per pass at most (a node that was down catches up over a few passes).
pub const HOURS_PER_PASS: usize = 24;
/// Meter events in flight at once.
const IN_FLIGHT: usize = 16;
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
        let totals = store::billed_usage::tenant_totals(&state.db, hour, end).await?;
        let due: Vec<(String, String, u64)> = store::billing::customers(&state.db)
            .await?
            .into_iter()
            .filter_map(|(tenant, customer)| {
                let n = totals.get(&tenant).copied().unwrap_or(0);
                (n > 0).then(|| (identifier(&tenant, hour), customer, n))
            })
            .collect();
        let count = due.len();
        let sends = due.into_iter().map(|(id, customer, n)| {
            let stripe = std::sync::Arc::clone(stripe);
            let name = billing.meter_event_name.clone();
            let timestamp = hour.timestamp();
            async move {
                let event = MeterEvent { event_name: &name, customer: &customer, value: n, identifier: &id, timestamp };
                stripe.meter_event(&event).await
            }
        });
        let results: Vec<Result<(), _>> = futures_util::stream::iter(sends).buffer_unordered(IN_FLIGHT).collect().await;
        // Any refusal keeps the mark: the whole hour goes again, and Stripe keeps each
        // identifier once.
        for r in results {
            r?;
        }
        sent += count;
        hour = end;
        store::usage::mark(&state.db, MARK, hour).await?;
    }
    Ok(sent)
}

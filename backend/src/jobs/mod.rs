//! The durable job worker (every node runs one) and the periodic scheduler.
//!
//! Jobs are at-least-once: a job is leased to one node, its lease is renewed while it runs, and
//! a job whose node died is taken over once the lease runs out. Handlers are idempotent.

pub mod deliver;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::state::AppState;
use crate::store::entities::job;
use crate::store::jobs::{self, NewJob};

pub use crate::store::jobs::kind::{ANOMALY_SCAN, DIAGNOSTIC_SLEEP, POLICY_SCAN, ROTATION_BULK, ROTATION_SWEEP};

/// Runs the worker until the task is dropped.
pub async fn run_worker(state: AppState) {
    let poll = Duration::from_millis(state.settings.jobs.poll_ms);
    let lease = TimeDelta::milliseconds(i64::try_from(state.settings.jobs.lease_ms).unwrap_or(30_000));
    loop {
        // A draining node claims nothing new: what it holds finishes or is released at the stop.
        if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(poll).await;
            continue;
        }
        match jobs::claim(&state.db, &state.node_id, lease, 1).await {
            Ok(claimed) if !claimed.is_empty() => {
                for j in claimed {
                    run_one(&state, j, lease).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim jobs"),
        }
        tokio::time::sleep(poll).await;
    }
}

async fn run_one(state: &AppState, j: job::Model, lease: TimeDelta) {
    let span = tracing::info_span!("job", job_id = %j.id, kind = %j.kind, attempt = j.attempts);
    let _enter = span.enter();
    let beat = Duration::from_millis(u64::try_from(lease.num_milliseconds() / 3).unwrap_or(1_000).max(50));
    let work = dispatch(state, &j);
    tokio::pin!(work);
    // The lease is renewed in this same task, so a node that dies stops renewing it.
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            () = tokio::time::sleep(beat) => {
                match jobs::heartbeat(&state.db, &j.id, &state.node_id, lease).await {
                    Ok(true) => {}
                    Ok(false) => break Err(anyhow::anyhow!("lease lost to another node")),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        }
    };
    match result {
        Ok(()) => {
            if let Err(e) = jobs::finish(&state.db, &j.id, &state.node_id).await {
                tracing::warn!(error = %e, "could not mark the job done; it will run again");
            }
        }
        Err(e) => {
            let retry_at = Utc::now() + backoff(j.attempts);
            tracing::warn!(error = %e, "job failed; retrying at {retry_at}");
            if let Err(e2) = jobs::fail(&state.db, &j, &state.node_id, &format!("{e:#}"), retry_at).await {
                tracing::warn!(error = %e2, "could not record the job failure");
            }
        }
    }
}

/// 5 s, 10 s, 20 s … capped at one hour, with up to 20 % jitter.
fn backoff(attempts: i32) -> TimeDelta {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let base = 5_i64.saturating_mul(2_i64.saturating_pow(exp)).min(3_600);
    let jitter = rand::random_range(0..=base / 5);
    TimeDelta::seconds(base + jitter)
}

async fn dispatch(state: &AppState, j: &job::Model) -> anyhow::Result<()> {
    match j.kind.as_str() {
        ROTATION_SWEEP => {
            crate::app::rotation::retire::sweep(state).await?;
            crate::app::keys::announce_expired(state, Utc::now()).await?;
            // The periodic housekeeping also applies audit retention (at most hourly) and rolls
            // verification counts up (at most every five minutes).
            crate::audit::retention_sweep(&state.db, state.settings.audit.retention_days).await?;
            meter_sweep(state).await;
            usage_sweep(state).await
        }
        POLICY_SCAN => {
            crate::app::rotation::policy_scan::scan(state).await?;
            crate::app::signing_keys::scheduled(state).await
        }
        ANOMALY_SCAN => {
            let flush = TimeDelta::milliseconds(i64::try_from(state.settings.usage_flush_interval_ms).unwrap_or(5_000));
            let read = crate::alerts::scan::run(&state.db, Utc::now(), flush).await?;
            tracing::debug!(read, "minutes read for anomalies");
            Ok(())
        }
        ROTATION_BULK => {
            let req: crate::app::rotation::bulk::BulkRequest = serde_json::from_value(j.payload.clone())?;
            crate::app::rotation::bulk::run(state, &j.id, &req).await
        }
        crate::playbooks::runs::JOB_KIND => {
            let run_id = j.payload.get("run_id").and_then(serde_json::Value::as_str).unwrap_or_default();
            crate::playbooks::execute::run(state, &j.id, run_id).await
        }
        DIAGNOSTIC_SLEEP => {
            let ms = j.payload.get("ms").and_then(serde_json::Value::as_u64).unwrap_or(0).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown job kind {other}")),
    }
}

/// Days the anomaly detector remembers a key's baseline and client addresses after its last use.
const DETECTOR_MEMORY_DAYS: i64 = 30;

/// Reports closed hours to Stripe's meter (billing on) and the teams' consumers' hours to the
/// teams' own Stripe accounts, at most once a minute. A refusal is logged (and kept for the team
/// to see); the hour is sent again on the next pass.
async fn meter_sweep(state: &AppState) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now();
    let last = LAST.load(Ordering::Relaxed);
    if now.timestamp() - last < 60
        || LAST.compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    match crate::app::billing::consumers::report(state, now).await {
        Ok(n) if n > 0 => tracing::info!(events = n, "consumers' verifications reported to the teams' meters"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reporting consumers' verifications stopped; sent again next pass"),
    }
    if state.stripe.is_none() {
        return;
    }
    match crate::app::billing::meter::report(state, now).await {
        Ok(n) if n > 0 => tracing::info!(events = n, "verifications reported to Stripe's meter"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "metering to Stripe stopped; the hour is sent again next pass"),
    }
    if let Err(e) = crate::app::billing::notices::allowance(state, now).await {
        tracing::warn!(error = %e, "the allowance notices did not run");
    }
}

async fn usage_sweep(state: &AppState) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now();
    let last = LAST.load(Ordering::Relaxed);
    if now.timestamp() - last < 300
        || LAST.compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return Ok(());
    }
    let rolled = crate::store::usage::roll_up(&state.db, now, state.settings.usage).await?;
    tracing::debug!(rolled, "verification counts rolled up");
    crate::alerts::scan::prune(&state.db, now, DETECTOR_MEMORY_DAYS).await?;
    Ok(())
}

/// Schedules periodic work: one job per time slot, whichever node gets there first.
pub async fn run_scheduler(state: AppState) {
    let tick = state.settings.jobs.tick_ms;
    let mut interval = tokio::time::interval(Duration::from_millis(tick));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let slot = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0) / tick.max(1);
        for kind in [ROTATION_SWEEP, POLICY_SCAN, ANOMALY_SCAN] {
            let mut job = NewJob::now(kind, json!({}));
            job.dedupe_key = Some(format!("{kind}:{slot}"));
            job.max_attempts = 1;
            if let Err(e) = jobs::enqueue(&state.db, job).await {
                tracing::warn!(error = %e, kind, "could not schedule periodic work");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!((5..=6).contains(&backoff(1).num_seconds()));
        assert!((10..=12).contains(&backoff(2).num_seconds()));
        assert!((3_600..=4_320).contains(&backoff(30).num_seconds()));
    }
}

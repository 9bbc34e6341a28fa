//! The delivery worker: claims due deliveries (leased, `SKIP LOCKED` on PostgreSQL), sends
//! them, and schedules retries with growing delays and jitter.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::notify::email::Mailer;
use crate::notify::webhook;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::entities::delivery;
use crate::store::notify::{self as store, DEAD, DELIVERED, HELD, PENDING};

/// Multiples of the base delay: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then 10 h.
const STEPS: [i64; 6] = [1, 60, 360, 1_440, 3_600, 7_200];

fn retry_delay(base_ms: u64, attempts: i32) -> TimeDelta {
    let step = STEPS[usize::try_from(attempts.max(1) - 1).unwrap_or(0).min(STEPS.len() - 1)];
    let ms = i64::try_from(base_ms).unwrap_or(5_000).saturating_mul(step);
    TimeDelta::milliseconds(ms + rand::random_range(0..=ms / 10))
}

/// Seals the signing secrets stored before secrets were sealed at rest (once, at start-up).
async fn seal_stored_secrets(state: &AppState) {
    let Some(key) = state.master_key.as_deref() else { return };
    let endpoints = match store::unsealed_endpoints(&state.db).await {
        Ok(e) => e,
        Err(e) => return tracing::warn!(error = %e, "could not look for unsealed webhook secrets"),
    };
    for ep in endpoints {
        let seal = |s: &str| if s.starts_with("whsec_") { webhook::seal_secret(Some(key), s) } else { s.to_owned() };
        let previous = ep.previous_secret.as_deref().map(seal);
        if let Err(e) = store::replace_secrets(&state.db, &ep, seal(&ep.secret), previous).await {
            tracing::warn!(error = %e, endpoint_id = %ep.id, "could not seal a webhook secret");
        }
    }
}

/// Runs until the task is dropped.
pub async fn run(state: AppState) {
    seal_stored_secrets(&state).await;
    let guard = webhook::PublicOnly { allow_private: state.settings.webhooks.allow_private };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(guard))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery disabled: no HTTP client");
            return;
        }
    };
    let mailer = state.settings.smtp_url.as_ref().and_then(|u| {
        use secrecy::ExposeSecret;
        Mailer::new(u.expose_secret(), &state.settings.smtp_from)
            .map_err(|e| tracing::error!(error = %e, "email disabled: KEYROLL_SMTP_URL unusable"))
            .ok()
    });
    let poll = Duration::from_millis(state.settings.notify.poll_ms);
    loop {
        let lease =
            Utc::now() + TimeDelta::milliseconds(i64::try_from(state.settings.notify.timeout_ms).unwrap_or(10_000) * 3);
        match store::claim(&state.db, lease, 20).await {
            Ok(batch) if !batch.is_empty() => {
                for d in batch {
                    attempt(&state, &client, mailer.as_ref(), d).await;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim deliveries"),
        }
        tokio::time::sleep(poll).await;
    }
}

async fn attempt(state: &AppState, client: &reqwest::Client, mailer: Option<&Mailer>, d: delivery::Model) {
    let Ok(Some(event)) = store::event(&state.db, &d.event_id).await else {
        let _ = store::record_attempt(&state.db, &d.id, DEAD, None, Some("event missing".into()), Utc::now()).await;
        return;
    };
    let (ok, status, error) = match d.channel.as_str() {
        "webhook" => {
            let Ok(Some(ep)) = store::endpoint(&state.db, d.endpoint_id.as_deref().unwrap_or_default()).await else {
                let _ =
                    store::record_attempt(&state.db, &d.id, DEAD, None, Some("endpoint deleted".into()), Utc::now())
                        .await;
                return;
            };
            if !ep.enabled {
                let _ =
                    store::record_attempt(&state.db, &d.id, HELD, None, Some("endpoint disabled".into()), Utc::now())
                        .await;
                return;
            }
            let mut data = event.payload.clone();
            let handed = hand_over(state, &event, ep.consumer_id.as_deref(), &mut data).await;
            let body =
                json!({"type": event.event_type, "timestamp": crate::time::rfc3339(event.created_at), "data": data})
                    .to_string();
            let timeout = Duration::from_millis(state.settings.notify.timeout_ms);
            let key = state.master_key.as_deref();
            let Some(current) = webhook::open_secret(key, &ep.secret) else {
                let why = Some("the endpoint's signing secret cannot be opened with this node's master key".into());
                let _ = store::record_attempt(&state.db, &d.id, HELD, None, why, Utc::now()).await;
                return;
            };
            let mut opened = vec![current];
            if let (Some(old), Some(until)) = (&ep.previous_secret, ep.previous_secret_until)
                && until > Utc::now()
                && let Some(old) = webhook::open_secret(key, old)
            {
                opened.push(old);
            }
            let secrets: Vec<&str> = opened.iter().map(String::as_str).collect();
            let allow = state.settings.webhooks.allow_private;
            let sent = webhook::send(client, &ep.url, &secrets, &event.id, &body, timeout, allow).await;
            if sent.ok()
                && let Some(key_id) = handed
                && let Err(e) = crate::store::policies::forget_secret(&state.db, &key_id).await
            {
                tracing::warn!(error = %e, "could not forget a handed-over secret");
            }
            (sent.ok(), sent.status.map(i32::from), sent.error)
        }
        "email" => match mailer {
            None => {
                tracing::info!(event_id = %event.id, "no SMTP server configured: email kept in the outbox");
                let _ = store::record_attempt(
                    &state.db,
                    &d.id,
                    HELD,
                    None,
                    Some("no SMTP server configured".into()),
                    Utc::now(),
                )
                .await;
                return;
            }
            Some(m) => {
                match m.send(d.recipient.as_deref().unwrap_or_default(), &event.event_type, &event.payload).await {
                    Ok(()) => (true, None, None),
                    Err(e) => (false, None, Some(format!("{e:#}"))),
                }
            }
        },
        other => (false, None, Some(format!("unknown channel {other}"))),
    };
    let (state_after, next) = if ok {
        (DELIVERED, Utc::now())
    } else if d.attempts >= state.settings.notify.max_attempts {
        (DEAD, Utc::now())
    } else {
        (PENDING, Utc::now() + retry_delay(state.settings.notify.retry_base_ms, d.attempts))
    };
    if let Err(e) = store::record_attempt(&state.db, &d.id, state_after, status, error, next).await {
        tracing::warn!(error = %e, "could not record a delivery attempt");
    }
    if let Some(ep) = &d.endpoint_id
        && (ok || state_after == DEAD)
        && let Err(e) = endpoint_outcome(state, ep, ok).await
    {
        tracing::warn!(error = %e, "could not update the endpoint");
    }
}

/// Records how a delivery to an endpoint ended. An endpoint is disabled once
/// `disable_after_failures` deliveries in a row were given up *and* the streak has lasted
/// `disable_after_hours` — a receiver that is down for an hour loses nothing. The disabling is
/// audited in its own transaction.
async fn endpoint_outcome(state: &AppState, ep: &str, ok: bool) -> Result<(), StoreError> {
    store::endpoint_outcome(&state.db, ep, ok).await?;
    if ok {
        return Ok(());
    }
    let settings = &state.settings.notify;
    let txn = crate::store::begin_write(&state.db).await?;
    let after = TimeDelta::hours(settings.disable_after_hours);
    if let Some(ep) = store::disable_if_failing(&txn, ep, settings.disable_after_failures, after).await? {
        let entry = crate::audit::Entry::new(
            "webhook_endpoint.disabled",
            "webhook_endpoint",
            ep.id.clone(),
            format!("Disabled the webhook endpoint {} after {} failed deliveries in a row", ep.url, ep.failures),
        )
        .with(
            serde_json::json!({ "failures": ep.failures, "failing_since": ep.failing_since.map(crate::time::rfc3339) }),
        );
        let tenant = crate::domain::TenantId::from_trusted(ep.tenant_id.clone());
        let origin = crate::domain::Origin::default();
        crate::audit::record(&txn, &tenant, crate::audit::SYSTEM, &origin, vec![entry]).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A rotation whose policy delivers by webhook: the consumer's own endpoint gets the new secret
/// as `data.new_key`, unsealed only for this request. Returns the key id whose secret was added.
async fn hand_over(
    state: &AppState,
    event: &crate::store::entities::event::Model,
    endpoint_consumer: Option<&str>,
    data: &mut serde_json::Value,
) -> Option<String> {
    let p = &event.payload;
    if event.event_type != "rotation.started"
        || p["secret_delivery"] != "webhook"
        || endpoint_consumer.is_none()
        || p["consumer_id"].as_str() != endpoint_consumer
    {
        return None;
    }
    let key_id = p["new_key_id"].as_str()?;
    let kept = crate::store::policies::kept_secret(&state.db, key_id).await.ok().flatten()?;
    let secret = state.master_key.as_ref()?.open(&kept.sealed)?;
    data["new_key"] = json!(String::from_utf8(secret).ok()?);
    Some(key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off() {
        assert!((5_000..=5_500).contains(&retry_delay(5_000, 1).num_milliseconds()));
        assert!((300_000..=330_000).contains(&retry_delay(5_000, 2).num_milliseconds()));
        assert_eq!(retry_delay(5_000, 50).num_hours(), 10);
    }
}

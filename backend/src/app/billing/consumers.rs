//! Providers billing their own consumers: a team connects its own Stripe account (a restricted
//! key, sealed with the master key), gives each consumer its Stripe customer and each API a
//! meter event, and Keyroll reports every consumer's successful verifications of each such API
//! to the team's meter, per closed hour. The identifier is the consumer, the API and the hour,
//! so an hour sent again is kept once by Stripe; each team's mark moves after each hour, so a
//! node that dies neither loses nor doubles an hour. Platform billing need not be on.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::super::{Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::billing::stripe::{MeterEvent, Stripe};
use crate::domain::stripe::StripeApiKey;
use crate::state::AppState;
use crate::store;
use crate::store::entities::stripe_connection;
use crate::store::stripe_connections::{self as connections, ConsumerUsage};

/// Hours reported per team and pass at most.
pub const HOURS_PER_PASS: usize = 24;
/// Meter events in flight at once, per team.
const IN_FLIGHT: usize = 16;
/// How long after an hour closes its counts are taken as settled.
const SETTLE: TimeDelta = TimeDelta::minutes(2);
/// A refusal kept for the team to read is cut to this length.
const ERROR_CHARS: usize = 500;

/// A team's connection as it is shown: never the key, only its hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Connection {
    pub connected: bool,
    /// The key's kind and last four characters (`rk_live_…wxyz`).
    pub key_hint: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    /// Verifications before this hour have been reported.
    pub reported_until: Option<DateTime<Utc>>,
    /// Stripe's last refusal, until an hour is reported again.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

/// The identifier of a consumer's hour of one API: Stripe keeps one event per identifier.
#[must_use]
pub fn identifier(consumer: &str, api: &str, hour: DateTime<Utc>) -> String {
    format!("{consumer}-{api}-{}", hour.format("%Y%m%dT%H"))
}

/// The team's connection.
///
/// # Errors
/// `Forbidden`; database errors.
pub async fn connection(ctx: &Ctx<'_>) -> Result<Connection, ServiceError> {
    ctx.require(Permission::BillingRead)?;
    view(ctx).await
}

async fn view(ctx: &Ctx<'_>) -> Result<Connection, ServiceError> {
    let Some(c) = connections::get(ctx.db(), &ctx.tenant).await? else {
        return Ok(Connection {
            connected: false,
            key_hint: None,
            connected_at: None,
            reported_until: None,
            last_error: None,
            last_error_at: None,
        });
    };
    let reported_until = store::usage::mark_of(ctx.db(), &connections::mark_name(&c.tenant_id)).await?;
    Ok(Connection {
        connected: true,
        key_hint: Some(c.key_hint),
        connected_at: Some(c.connected_at),
        reported_until,
        last_error: c.last_error,
        last_error_at: c.last_error_at,
    })
}

/// Connects the team's own Stripe account, or replaces its key. Reporting starts with the hour
/// the account was first connected; replacing the key keeps where it had got to.
///
/// # Errors
/// `Forbidden`; `Invalid` (`stripe_key`); `Conflict` without a master key to seal it with.
pub async fn connect(ctx: &Ctx<'_>, key: &str) -> Result<Connection, ServiceError> {
    ctx.require(Permission::Tenant)?;
    let key = StripeApiKey::parse(key).map_err(|m| ServiceError::field("stripe_key", m))?;
    let master = ctx.state.master_key.as_ref().ok_or_else(|| {
        ServiceError::Conflict(
            "no master key is configured, so no Stripe key can be kept (set KEYROLL_MASTER_KEY)".into(),
        )
    })?;
    let sealed = master
        .seal(key.expose().as_bytes())
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the Stripe key could not be sealed")))?;
    let now = Utc::now();
    let hour = now.duration_trunc(TimeDelta::hours(1)).map_err(|e| ServiceError::Internal(e.into()))?;
    let hint = key.hint();
    commit(ctx, async |txn, change| {
        let before = connections::get(txn, &ctx.tenant).await?;
        connections::put(
            txn,
            stripe_connection::Model {
                tenant_id: ctx.tenant.as_str().to_owned(),
                sealed_key: sealed.clone(),
                key_hint: hint.clone(),
                connected_by: ctx.actor_id(),
                connected_at: now,
                last_error: None,
                last_error_at: None,
            },
        )
        .await?;
        let mark = connections::mark_name(ctx.tenant.as_str());
        if store::usage::mark_of(txn, &mark).await?.is_none() {
            store::usage::mark(txn, &mark, hour).await?;
        }
        let summary = match &before {
            Some(b) => format!("Replaced the team's Stripe key {} with {hint}", b.key_hint),
            None => format!("Connected the team's Stripe account ({hint}) to bill its consumers"),
        };
        change.audit(
            Entry::new("billing.stripe_connected", "tenant", ctx.tenant.as_str().to_owned(), summary)
                .change(json!({ "key_hint": before.map(|b| b.key_hint) }), json!({ "key_hint": hint })),
        );
        Ok(())
    })
    .await?;
    view(ctx).await
}

/// Disconnects the team's Stripe account: its key is deleted and nothing more is reported.
///
/// # Errors
/// `Forbidden`; `NotFound` when none is connected.
pub async fn disconnect(ctx: &Ctx<'_>) -> Result<(), ServiceError> {
    ctx.require(Permission::Tenant)?;
    commit(ctx, async |txn, change| {
        let Some(before) = connections::get(txn, &ctx.tenant).await? else {
            return Err(ServiceError::NotFound("no Stripe account is connected"));
        };
        connections::delete(txn, &ctx.tenant).await?;
        change.audit(
            Entry::new(
                "billing.stripe_disconnected",
                "tenant",
                ctx.tenant.as_str().to_owned(),
                format!("Disconnected the team's Stripe account ({})", before.key_hint),
            )
            .with(json!({ "key_hint": before.key_hint })),
        );
        Ok(())
    })
    .await
}

/// One pass over every connected team: each closed hour since the team's mark (at most
/// [`HOURS_PER_PASS`]) is reported. A team whose Stripe refuses keeps its mark and its refusal
/// (shown to it); the others go on. Returns the events sent.
///
/// # Errors
/// Database errors.
pub async fn report(state: &AppState, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let teams = connections::all(&state.db).await?;
    if teams.is_empty() {
        return Ok(0);
    }
    let closed = (now - SETTLE).duration_trunc(TimeDelta::hours(1))?;
    let names: Vec<String> = teams.iter().map(|t| t.tenant_id.clone()).collect();
    let marks = connections::marks(&state.db, &names).await?;
    let mut sent = 0;
    for team in teams {
        let Some(from) = marks.get(&team.tenant_id).copied() else {
            store::usage::mark(&state.db, &connections::mark_name(&team.tenant_id), closed).await?;
            continue;
        };
        match report_team(state, &team, from, closed).await {
            Ok(n) => {
                sent += n;
                if team.last_error.is_some() && n > 0 {
                    connections::set_error(&state.db, &team.tenant_id, None, now).await?;
                }
            }
            Err(Refusal::Stripe(message)) => {
                tracing::warn!(tenant = %team.tenant_id, error = %message, "consumer meter events refused");
                let message: String = message.chars().take(ERROR_CHARS).collect();
                connections::set_error(&state.db, &team.tenant_id, Some(message), now).await?;
            }
            Err(Refusal::Store(e)) => return Err(e),
        }
    }
    Ok(sent)
}

enum Refusal {
    Stripe(String),
    Store(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Self::Store(e.into())
    }
}

async fn report_team(
    state: &AppState,
    team: &stripe_connection::Model,
    mut hour: DateTime<Utc>,
    closed: DateTime<Utc>,
) -> Result<usize, Refusal> {
    if hour >= closed {
        return Ok(0);
    }
    let key = state
        .master_key
        .as_ref()
        .and_then(|m| m.open(&team.sealed_key))
        .and_then(|k| String::from_utf8(k).ok())
        .ok_or_else(|| {
            Refusal::Stripe("the Stripe key cannot be opened with this master key: connect it again".into())
        })?;
    let stripe = std::sync::Arc::new(Stripe::with_key(&key, &state.settings.stripe_api_base));
    let mark = connections::mark_name(&team.tenant_id);
    let mut sent = 0;
    for _ in 0..HOURS_PER_PASS {
        if hour >= closed {
            break;
        }
        let end = hour + TimeDelta::hours(1);
        let due = connections::consumer_usage(&state.db, &team.tenant_id, hour, end).await?;
        let count = due.len();
        let timestamp = hour.timestamp();
        let sends = due.into_iter().map(|u: ConsumerUsage| {
            let stripe = std::sync::Arc::clone(&stripe);
            async move {
                let id = identifier(&u.consumer_id, &u.api_id, hour);
                let event = MeterEvent {
                    event_name: &u.event_name,
                    customer: &u.customer,
                    value: u.count,
                    identifier: &id,
                    timestamp,
                };
                stripe.meter_event(&event).await
            }
        });
        let results: Vec<Result<(), _>> = futures_util::stream::iter(sends).buffer_unordered(IN_FLIGHT).collect().await;
        // Any refusal keeps the mark: the hour goes again, and Stripe keeps each identifier once.
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(Refusal::Stripe(e.to_string()));
        }
        sent += count;
        hour = end;
        store::usage::mark(&state.db, &mark, hour).await?;
    }
    Ok(sent)
}

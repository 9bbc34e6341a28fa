//! A tenant's token signing keys: made on first use, rotated on a schedule or on demand with a
//! lead time (published before they sign), revoked at once in an emergency.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::policy::{Schedule, ScheduleError};
use crate::domain::signing::{self, Phase};
use crate::domain::{SigningKeyId, TenantId};
use crate::state::AppState;
use crate::store::entities::signing_key;
use crate::store::signing_keys as store;
use crate::tokens::keyring::KeyPhase;
use crate::tokens::{TenantKeys, material};

/// How long before it signs a new key is published, unless asked otherwise.
pub const DEFAULT_LEAD: TimeDelta = TimeDelta::hours(1);
/// The longest lead a rotation may ask for: seven days.
pub const MAX_LEAD_SECONDS: i64 = 7 * 86_400;
/// How often a tenant's key is replaced on schedule, unless it set otherwise.
pub const DEFAULT_EVERY_DAYS: i64 = 30;

const SETTING: &str = "signing";

/// When a tenant's token signing key is replaced: every `interval_days` after the current key
/// took over, or at each occurrence of `cron` (UTC), the new key published `lead_seconds`
/// before it signs. Kept in the tenant's settings (`signing`); the same schedule type as the
/// rotation policies of API keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SigningSchedule {
    pub interval_days: Option<i64>,
    pub cron: Option<String>,
    pub lead_seconds: i64,
}

impl Default for SigningSchedule {
    fn default() -> Self {
        Self { interval_days: Some(DEFAULT_EVERY_DAYS), cron: None, lead_seconds: DEFAULT_LEAD.num_seconds() }
    }
}

impl SigningSchedule {
    /// The schedule, checked: one of interval or cron, a lead within bounds and shorter than
    /// the time between two rotations.
    ///
    /// # Errors
    /// `Invalid` naming the fields.
    pub fn check(&self, now: DateTime<Utc>) -> Result<Schedule, ServiceError> {
        let mut c = Checks::default();
        if !(0..=MAX_LEAD_SECONDS).contains(&self.lead_seconds) {
            c.push("lead_seconds", format!("must be between 0 and {MAX_LEAD_SECONDS}"));
        }
        if self.cron.as_ref().is_some_and(|e| e.len() > 200) {
            c.push("cron", "must be at most 200 characters");
        }
        let schedule = match Schedule::parse(self.interval_days, self.cron.as_deref(), TimeDelta::zero()) {
            Ok(s) => Some(s),
            Err(e @ ScheduleError::Cron(_)) => {
                c.push("cron", e.to_string());
                None
            }
            Err(e @ (ScheduleError::Interval | ScheduleError::Either)) => {
                c.push("interval_days", e.to_string());
                None
            }
        };
        if let Some(period) = schedule.as_ref().and_then(|s| s.period(now))
            && TimeDelta::seconds(self.lead_seconds) >= period
        {
            c.push("lead_seconds", "must be shorter than the time between two rotations");
        }
        c.finish()?;
        schedule.ok_or_else(|| ServiceError::field("interval_days", "is required"))
    }

    fn lead(&self) -> TimeDelta {
        TimeDelta::seconds(self.lead_seconds.clamp(0, MAX_LEAD_SECONDS))
    }
}

/// Changes to the schedule: an interval replaces a cron expression and the other way round.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChanges {
    pub interval_days: Option<i64>,
    pub cron: Option<String>,
    pub lead_seconds: Option<i64>,
}

/// The tenant's signing schedule (the default when it set none).
///
/// # Errors
/// Database errors.
pub async fn schedule(state: &AppState, tenant: &TenantId) -> Result<SigningSchedule, ServiceError> {
    super::tenants::setting(state, tenant, SETTING).await
}

/// When the schedule next starts a rotation (`None` while a new key waits to take over, or
/// before the first key).
///
/// # Errors
/// Database errors.
pub async fn next_rotation(state: &AppState, tenant: &TenantId) -> Result<Option<DateTime<Utc>>, ServiceError> {
    let plan = schedule(state, tenant).await?;
    let now = Utc::now();
    let Ok(rule) = plan.check(now) else { return Ok(None) };
    let keys = TenantKeys::load(&state.db, tenant, None, now).await?;
    Ok(signing::next_rotation(&times(&keys), now, &rule, plan.lead()))
}

/// Changes the tenant's signing schedule.
///
/// # Errors
/// `Forbidden`; `Invalid` naming every bad field.
pub async fn set_schedule(ctx: &Ctx<'_>, ch: ScheduleChanges) -> Result<SigningSchedule, ServiceError> {
    ctx.require(Permission::TokensWrite)?;
    let before = schedule(ctx.state, &ctx.tenant).await?;
    let mut s = before.clone();
    match (ch.interval_days, ch.cron) {
        (Some(d), None) => (s.interval_days, s.cron) = (Some(d), None),
        (None, Some(e)) => (s.interval_days, s.cron) = (None, Some(e.trim().to_owned())),
        (None, None) => {}
        (Some(_), Some(_)) => {
            return Err(ServiceError::field("interval_days", "give either interval_days or cron, not both"));
        }
    }
    if let Some(l) = ch.lead_seconds {
        s.lead_seconds = l;
    }
    s.check(Utc::now())?;
    if s == before {
        return Ok(s);
    }
    super::tenants::put_setting(
        ctx,
        SETTING,
        &before,
        &s,
        "signing_key.schedule_updated",
        "Changed when the token signing key is replaced",
    )
    .await?;
    Ok(s)
}

fn times(keys: &TenantKeys) -> Vec<signing::SigningTimes> {
    keys.keys
        .iter()
        .map(|k| signing::SigningTimes { activates_at: k.row.activates_at, revoked_at: k.row.revoked_at })
        .collect()
}

fn no_master() -> ServiceError {
    ServiceError::Conflict("no master key is configured, so no signing key can be kept (set KEYROLL_MASTER_KEY)".into())
}

/// A new token key (not written).
fn new_key(ctx: &Ctx<'_>, activates_at: DateTime<Utc>) -> Result<signing_key::Model, ServiceError> {
    let master = ctx.state.master_key.as_ref().ok_or_else(no_master)?;
    let kid = SigningKeyId::generate().into_string();
    let seed = material::random_secret();
    let jwk = material::public_jwk(&seed, &kid).map_err(|e| ServiceError::Internal(e.into()))?;
    let sealed = master
        .seal(material::encode_secret(&seed).as_bytes())
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("a signing key could not be sealed")))?;
    Ok(signing_key::Model {
        id: kid,
        tenant_id: ctx.tenant.as_str().to_owned(),
        purpose: store::TOKEN.into(),
        alg: "EdDSA".into(),
        public_jwk: Some(serde_json::to_value(&jwk).map_err(|e| ServiceError::Internal(e.into()))?),
        private_sealed: sealed,
        created_by: ctx.actor_id(),
        created_at: Utc::now(),
        activates_at,
        revoked_at: None,
    })
}

fn summary(k: &signing_key::Model) -> serde_json::Value {
    json!({"kid": k.id, "alg": k.alg, "activates_at": crate::time::rfc3339(k.activates_at)})
}

/// The tenant's token keys with their phases (revoked and retired ones included).
///
/// # Errors
/// `Forbidden`, database errors.
pub async fn list(ctx: &Ctx<'_>) -> Result<Vec<KeyPhase>, ServiceError> {
    ctx.require(Permission::TokensWrite)?;
    let keys = TenantKeys::load(ctx.db(), &ctx.tenant, None, Utc::now()).await?;
    Ok(keys.keys)
}

/// Makes the tenant's first key, active at once, when it has no key that signs.
///
/// # Errors
/// `Conflict` without a master key; database errors.
pub async fn ensure(state: &AppState, tenant: &TenantId) -> Result<(), ServiceError> {
    let ctx = Ctx::system(state, tenant.clone());
    let now = Utc::now();
    let existing = TenantKeys::load(ctx.db(), tenant, None, now).await?;
    if existing.keys.iter().any(|k| k.phase == Phase::Active) {
        return Ok(());
    }
    let key = new_key(&ctx, now)?;
    commit(&ctx, async |txn, change| {
        let key = store::insert(txn, key).await?;
        change.audit(
            Entry::new(
                "signing_key.created",
                "signing_key",
                key.id.clone(),
                "Made the first key that signs access tokens".into(),
            )
            .with(summary(&key)),
        );
        Ok(())
    })
    .await?;
    state.keyring.forget(tenant);
    Ok(())
}

/// Starts a rotation: a new key, published now, signing after `lead` (default: the tenant's
/// schedule's lead, one hour unless it set otherwise). The
/// key signing now keeps signing until then, and stays published until its last token expired.
///
/// # Errors
/// `Invalid` for a lead out of bounds, `Conflict` while another new key is waiting or without a
/// master key.
pub async fn rotate(ctx: &Ctx<'_>, lead_seconds: Option<i64>) -> Result<KeyPhase, ServiceError> {
    ctx.require(Permission::TokensWrite)?;
    let lead = match lead_seconds {
        Some(s) if !(0..=MAX_LEAD_SECONDS).contains(&s) => {
            return Err(ServiceError::field("lead_seconds", format!("must be between 0 and {MAX_LEAD_SECONDS}")));
        }
        Some(s) => TimeDelta::seconds(s),
        None => schedule(ctx.state, &ctx.tenant).await?.lead(),
    };
    let now = Utc::now();
    let before = TenantKeys::load(ctx.db(), &ctx.tenant, None, now).await?;
    if let Some(w) = before.keys.iter().find(|k| k.phase == Phase::Published) {
        return Err(ServiceError::Conflict(format!(
            "the key {} is already waiting to sign from {}; revoke it first to start another",
            w.row.id,
            crate::time::rfc3339(w.row.activates_at)
        )));
    }
    // A tenant without a signing key gets one that signs at once: there is nothing to hand over.
    let active = before.keys.iter().find(|k| k.phase == Phase::Active);
    let activates_at = if active.is_some() { now + lead } else { now };
    let key = new_key(ctx, activates_at)?;
    let kid = key.id.clone();
    let previous = active.map(|k| k.row.id.clone());
    commit(ctx, async |txn, change| {
        let key = store::insert(txn, key).await?;
        change.audit(
            Entry::new(
                "signing_key.rotated",
                "signing_key",
                key.id.clone(),
                format!(
                    "Started a rotation of the token signing key: {} is published now and signs from {}",
                    key.id,
                    crate::time::rfc3339(key.activates_at)
                ),
            )
            .with(json!({"kid": key.id, "previous": previous, "activates_at": crate::time::rfc3339(key.activates_at)})),
        );
        Ok(())
    })
    .await?;
    ctx.state.keyring.forget(&ctx.tenant);
    find(ctx, &kid).await
}

/// Revokes a key at once: it leaves the JWKS and the tokens it signed fail. When it was the
/// key that signs, a new key takes over at once.
///
/// # Errors
/// `NotFound`, `Conflict` without a master key (to replace the active key).
pub async fn revoke(ctx: &Ctx<'_>, kid: &str) -> Result<KeyPhase, ServiceError> {
    ctx.require(Permission::TokensWrite)?;
    let kid = SigningKeyId::parse(kid).map_err(|_| ServiceError::NotFound("no such signing key"))?;
    let now = Utc::now();
    let before = TenantKeys::load(ctx.db(), &ctx.tenant, None, now).await?;
    let Some(target) = before.keys.iter().find(|k| k.row.id == kid.as_str()) else {
        return Err(ServiceError::NotFound("no such signing key"));
    };
    if target.phase == Phase::Revoked {
        return Ok(target.clone());
    }
    let was_active = target.phase == Phase::Active;
    let replacement = if was_active { Some(new_key(ctx, now)?) } else { None };
    commit(ctx, async |txn, change| {
        let key = store::revoke(txn, &ctx.tenant, kid.as_str(), now).await?;
        change.audit(
            Entry::new(
                "signing_key.revoked",
                "signing_key",
                key.id.clone(),
                format!("Revoked the token signing key {}: the tokens it signed are refused from now", key.id),
            )
            .with(summary(&key)),
        );
        if let Some(r) = replacement {
            let r = store::insert(txn, r).await?;
            change.audit(
                Entry::new(
                    "signing_key.created",
                    "signing_key",
                    r.id.clone(),
                    format!("Made a key that signs at once, in place of the revoked {}", key.id),
                )
                .with(summary(&r)),
            );
        }
        Ok(())
    })
    .await?;
    ctx.state.keyring.forget(&ctx.tenant);
    find(ctx, kid.as_str()).await
}

async fn find(ctx: &Ctx<'_>, kid: &str) -> Result<KeyPhase, ServiceError> {
    let keys = TenantKeys::load(ctx.db(), &ctx.tenant, None, Utc::now()).await?;
    keys.keys.into_iter().find(|k| k.row.id == kid).ok_or(ServiceError::NotFound("no such signing key"))
}

/// The schedule: every tenant whose schedule falls due (less its lead) for its newest key gets
/// a new one, published the lead before it signs.
///
/// # Errors
/// Database errors.
pub async fn scheduled(state: &AppState) -> anyhow::Result<()> {
    if state.master_key.is_none() {
        return Ok(());
    }
    let now = Utc::now();
    for tenant in store::tenants_with_token_keys(&state.db).await? {
        let tenant = TenantId::from_trusted(tenant);
        let plan = schedule(state, &tenant).await?;
        let Ok(rule) = plan.check(now) else {
            tracing::warn!(tenant = %tenant, "the signing schedule is not valid; no scheduled rotation");
            continue;
        };
        let keys = TenantKeys::load(&state.db, &tenant, None, now).await?;
        if signing::rotation_due(&times(&keys), now, &rule, plan.lead()) {
            let ctx = Ctx::system(state, tenant.clone());
            if let Err(e) = rotate(&ctx, Some(plan.lead_seconds)).await {
                tracing::warn!(tenant = %tenant, error = %e, "the scheduled signing key rotation did not start");
            }
        }
    }
    Ok(())
}

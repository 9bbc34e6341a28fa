//! Zero-downtime rotation as a service: rotate, complete, roll back, extend, and the migration
//! progress of a rotation. The rules live in `domain::rotation`; this module applies them to the
//! database in one transaction each and invalidates caches after commit.

pub mod bulk;
pub mod migration;
pub mod policy_scan;
pub mod progress;
pub mod retire;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::domain::rotation::{
    self as rules, RetireMode, RotationAction, RotationError, RotationRules, RotationState, Trigger, Version,
};
use crate::domain::{
    ApiId, ApiKey, ConsumerId, Environment, KeyHash, KeyHead, KeyId, KeyPrefix, KeyState, KeyTimes, RotationId,
    ScopeSet, TenantId,
};
use crate::notify;
use crate::state::AppState;
use crate::store::entities::{key, rotation};
use crate::store::keys::{self, NewKey};
use crate::store::{StoreError, apis, begin_write, policies, rotations};

/// Why a rotation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Rule(#[from] RotationError),
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for RotateError {
    fn from(e: sea_orm::DbErr) -> Self {
        if crate::store::is_unique_violation(&e) {
            Self::Conflict("the key was rotated at the same moment by another request")
        } else {
            Self::Store(StoreError::Db(e))
        }
    }
}

/// What to rotate to.
#[derive(Debug, Clone)]
pub struct RotateRequest {
    pub overlap: TimeDelta,
    pub scopes: Option<ScopeSet>,
    pub meta: Option<Value>,
    pub retire_mode: RetireMode,
    pub trigger: Trigger,
    pub actor: Option<String>,
    pub compromise: bool,
    /// The bounds in force (from the key's rotation policy, or the defaults).
    pub rules: RotationRules,
    /// Keep the new secret, sealed, for the consumer: fetched with the current key, or sent to
    /// the consumer's own webhook endpoints. Written in the rotation's own transaction, so a
    /// rotation never happens without its secret being kept.
    pub handoff: Option<Handoff>,
}

/// How a rotation the consumer did not ask for reaches the consumer with its new secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// `POST /v1/self/pickup` with the current key, once.
    Pickup,
    /// In the `rotation.started` webhook to the consumer's own endpoints (the first one that
    /// accepts it); picked up as above until then.
    Webhook,
}

impl Handoff {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pickup" => Some(Self::Pickup),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pickup => "pickup",
            Self::Webhook => "webhook",
        }
    }
}

/// The new version, its secret (shown once) and the rotation record.
#[derive(Debug)]
pub struct Rotated {
    pub key: key::Model,
    pub secret: ApiKey,
    pub rotation: rotation::Model,
}

/// The times that decide a version's state.
#[must_use]
pub fn times(k: &key::Model) -> KeyTimes {
    KeyTimes { revoked_at: k.revoked_at, enabled: k.enabled, expires_at: k.expires_at, grace_ends_at: k.grace_ends_at }
}

fn version(k: &key::Model) -> Version<String> {
    Version { id: k.id.clone(), version: k.version, times: times(k) }
}

fn hash(k: &key::Model) -> Option<KeyHash> {
    KeyHash::from_hex(&k.hash)
}

/// The rules in force for a key: its rotation policy's, or the defaults.
///
/// # Errors
/// Database errors.
pub async fn rules_for(db: &impl sea_orm::ConnectionTrait, k: &key::Model) -> Result<RotationRules, StoreError> {
    Ok(crate::store::policies::effective(db, &k.api_id, k.consumer_id.as_deref())
        .await?
        .map_or_else(RotationRules::default, |p| policy_rules(&p)))
}

/// The bounds a policy sets.
#[must_use]
pub fn policy_rules(p: &crate::store::entities::rotation_policy::Model) -> RotationRules {
    RotationRules {
        max_active: u32::try_from(p.max_active).unwrap_or(2).max(1),
        end_oldest_when_full: p.on_full != "refuse",
        ..RotationRules::default()
    }
}

/// Issues version n+1 of `key_id`'s lineage and puts version n in grace.
///
/// # Errors
/// `NotFound`, a rule that refuses (in grace, revoked, lineage full, overlap out of bounds), or a
/// concurrent rotation of the same key.
pub async fn rotate(
    state: &AppState,
    tenant: &TenantId,
    key_id: &KeyId,
    is_root: bool,
    req: RotateRequest,
) -> Result<Rotated, RotateError> {
    let txn = begin_write(&state.db).await?;
    let current = keys::get(&txn, tenant, key_id, is_root).await?;
    let lineage = rotations::lineage(&txn, tenant, &current.lineage_id).await?;
    let others: Vec<Version<String>> = lineage.iter().filter(|k| k.id != current.id).map(version).collect();
    let now = Utc::now();
    let plan = rules::plan(now, &version(&current), &others, req.overlap, &req.rules)?;

    let mut ended = Vec::new();
    for id in &plan.end_now {
        if let Some(k) = lineage.iter().find(|k| &k.id == id) {
            rotations::set_key_grace(&txn, id, k.superseded_at.or(Some(now)), Some(now)).await?;
            ended.extend(hash(k));
        }
        for open in rotations::open_from(&txn, id).await? {
            rotations::set_state(
                &txn,
                open,
                RotationState::Completed,
                Some(now),
                Some("retired: lineage at max_active".into()),
            )
            .await?;
        }
    }

    let head = if current.is_root {
        KeyHead::Root
    } else {
        let api = apis::get(&txn, tenant, &ApiId::from_trusted(current.api_id.clone())).await?;
        KeyHead::Api {
            prefix: KeyPrefix::parse(&api.key_prefix).map_err(|_| StoreError::NotFound)?,
            env: Environment::parse(&api.environment).unwrap_or(Environment::Live),
        }
    };
    let next_version = lineage.iter().map(|k| k.version).max().unwrap_or(current.version) + 1;
    let new = NewKey {
        tenant_id: tenant.clone(),
        api_id: ApiId::from_trusted(current.api_id.clone()),
        consumer_id: current.consumer_id.clone().map(ConsumerId::from_trusted),
        is_root: current.is_root,
        lineage: Some((KeyId::from_trusted(current.lineage_id.clone()), next_version)),
        name: current.name.clone(),
        scopes: req.scopes.unwrap_or_else(|| {
            ScopeSet::from_stored(&serde_json::from_value::<Vec<String>>(current.scopes.clone()).unwrap_or_default())
        }),
        meta: req.meta.unwrap_or_else(|| current.meta.clone()),
        enabled: true,
        expires_at: None,
        ratelimit: current.ratelimit.clone().and_then(|v| serde_json::from_value(v).ok()),
        credits: current.credits.clone().and_then(|v| serde_json::from_value(v).ok()),
        ip_allowlist: current
            .ip_allowlist
            .clone()
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
            .and_then(|l| crate::domain::input::IpAllowlist::parse(&l).ok()),
        created_by: req.actor.clone(),
    };
    let (new_key, secret) = keys::insert(&txn, new, &head).await.map_err(|e| match e {
        StoreError::Db(db) => RotateError::from(db),
        other => RotateError::Store(other),
    })?;
    rotations::set_key_grace(&txn, &current.id, Some(now), Some(plan.grace_ends_at)).await?;
    let mut record = rotations::insert(
        &txn,
        rotations::new_record(
            tenant,
            &current.lineage_id,
            &current.id,
            &new_key.id,
            req.trigger.as_str(),
            req.actor,
            req.retire_mode.as_str(),
            req.compromise,
            plan.grace_ends_at,
        ),
    )
    .await?;
    if plan.grace_ends_at <= now {
        // Overlap 0: the old version is retired at once; nothing stays in progress.
        record = rotations::set_state(&txn, record, RotationState::Completed, None, Some("immediate".into())).await?;
    }
    let audience = notify::audience_of(&txn, current.consumer_id.as_deref()).await?;
    let mut data = event_data(&record, &current);
    data["new_key_id"] = json!(new_key.id);
    data["new_version"] = json!(new_key.version);
    if let Some(handoff) = req.handoff {
        let sealed =
            state.master_key.as_ref().and_then(|mk| mk.seal(secret.expose().as_bytes())).ok_or_else(|| {
                RotateError::Store(StoreError::Conflict("no master key to keep the new secret".into()))
            })?;
        // Available until the old version's grace ends, plus a week to recover.
        let until = record.grace_ends_at.max(now) + TimeDelta::days(7);
        policies::hold_secret(&txn, tenant, &new_key.id, &new_key.lineage_id, sealed, until).await?;
        data["secret_delivery"] = json!(handoff.as_str());
    }
    notify::emit(&txn, tenant, "rotation.started", data, &audience).await?;
    let entry = rotated_entry(&record, &current, &new_key, plan.end_now.len());
    crate::audit::record(&txn, tenant, record.actor.as_deref().unwrap_or(crate::audit::SYSTEM), vec![entry]).await?;
    txn.commit().await?;
    ended.extend(hash(&current));
    state.cache.invalidate(&ended).await;
    state.cache.announce_created(&[secret.hash()]).await;
    Ok(Rotated { key: new_key, secret, rotation: record })
}

/// The audit entry of a rotation: "Rotated key acme_live_AbCd v3 → v4; v3 valid until …".
#[must_use]
pub fn rotated_entry(r: &rotation::Model, old: &key::Model, new: &key::Model, ended: usize) -> crate::audit::Entry {
    let until = if r.grace_ends_at <= r.started_at {
        format!("v{} retired at once", old.version)
    } else {
        format!("v{} valid until {}", old.version, r.grace_ends_at.format("%Y-%m-%d %H:%M UTC"))
    };
    let (action, target, what) =
        if old.is_root { ("root_key.rotated", "root_key", "root key") } else { ("key.rotated", "key", "key") };
    crate::audit::Entry::new(
        action,
        target,
        old.id.clone(),
        format!("Rotated {what} {} v{} → v{}; {until}", old.start, old.version, new.version),
    )
    .with(json!({
        "rotation_id": r.id, "lineage_id": r.lineage_id, "trigger": r.trigger, "retire_mode": r.retire_mode,
        "compromise": r.compromise, "new_key_id": new.id, "new_key_start": new.start,
        "grace_ends_at": crate::time::rfc3339(r.grace_ends_at), "older_versions_ended": ended,
    }))
}

async fn load(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &TenantId,
    id: &RotationId,
) -> Result<(rotation::Model, key::Model, key::Model), RotateError> {
    let r = rotations::get(txn, tenant, id).await?;
    let from = keys::get_any(txn, tenant, &KeyId::from_trusted(r.from_key_id.clone())).await?;
    let to = keys::get_any(txn, tenant, &KeyId::from_trusted(r.to_key_id.clone())).await?;
    Ok((r, from, to))
}

fn current_state(r: &rotation::Model) -> RotationState {
    RotationState::parse(&r.state).unwrap_or(RotationState::Cancelled)
}

/// Retires the old version now.
///
/// # Errors
/// `NotFound`, or the rotation is not in progress.
pub async fn complete(
    state: &AppState,
    tenant: &TenantId,
    id: &RotationId,
    actor: &str,
) -> Result<rotation::Model, RotateError> {
    let txn = begin_write(&state.db).await?;
    let (r, from, _) = load(&txn, tenant, id).await?;
    let next = effective_state(&r, Utc::now()).apply(RotationAction::Complete, r.compromise)?;
    let now = Utc::now();
    rotations::set_key_grace(&txn, &from.id, from.superseded_at.or(Some(now)), Some(now)).await?;
    let r = rotations::set_state(&txn, r, next, Some(now), Some("completed early".into())).await?;
    announce(&txn, tenant, actor, "rotation.completed", &r, &from).await?;
    txn.commit().await?;
    state.cache.invalidate(&hash(&from).into_iter().collect::<Vec<_>>()).await;
    Ok(r)
}

/// Makes the old version current again and revokes the new one.
///
/// # Errors
/// `NotFound`, not in progress, caused by a compromise, the old version already retired, or
/// the new version rotated further.
pub async fn rollback(
    state: &AppState,
    tenant: &TenantId,
    id: &RotationId,
    actor: &str,
) -> Result<rotation::Model, RotateError> {
    let txn = begin_write(&state.db).await?;
    let (r, from, to) = load(&txn, tenant, id).await?;
    let now = Utc::now();
    let next = effective_state(&r, now).apply(RotationAction::Rollback, r.compromise)?;
    if KeyState::derive(&times(&from), now) != KeyState::Superseded {
        return Err(RotateError::Conflict("the old version is no longer valid, so it cannot become current again"));
    }
    if KeyState::derive(&times(&to), now) != KeyState::Valid {
        return Err(RotateError::Conflict(
            "the new version is no longer the current one; roll back the later rotation first",
        ));
    }
    rotations::set_key_grace(&txn, &from.id, None, None).await?;
    keys::revoke(&txn, tenant, &KeyId::from_trusted(to.id.clone()), to.is_root, "rotation rolled back").await?;
    let r = rotations::set_state(&txn, r, next, None, Some("rolled back".into())).await?;
    announce(&txn, tenant, actor, "rotation.rolled_back", &r, &from).await?;
    txn.commit().await?;
    state.cache.invalidate(&[hash(&from), hash(&to)].into_iter().flatten().collect::<Vec<_>>()).await;
    Ok(r)
}

/// Moves the end of the overlap window (within the rules' limit and the old key's expiry).
///
/// # Errors
/// `NotFound`, not in progress, or a limit.
pub async fn extend(
    state: &AppState,
    tenant: &TenantId,
    id: &RotationId,
    new_end: DateTime<Utc>,
    actor: &str,
) -> Result<rotation::Model, RotateError> {
    let txn = begin_write(&state.db).await?;
    let (r, from, _) = load(&txn, tenant, id).await?;
    let now = Utc::now();
    let next = effective_state(&r, now).apply(RotationAction::Extend, r.compromise)?;
    let current_end = from.grace_ends_at.unwrap_or(r.grace_ends_at);
    let bounds = rules_for(&txn, &from).await?;
    rules::check_extension(now, r.started_at, current_end, new_end, from.expires_at, &bounds)?;
    set_deadline(state, tenant, txn, (r, next, None), &from, new_end, actor).await
}

/// Moves the old version's end of grace and the record's to `end`, announces it as
/// `rotation.extended`, commits, and drops the old version from the caches.
async fn set_deadline(
    state: &AppState,
    tenant: &TenantId,
    txn: sea_orm::DatabaseTransaction,
    (r, next, reason): (rotation::Model, RotationState, Option<String>),
    from: &key::Model,
    end: DateTime<Utc>,
    actor: &str,
) -> Result<rotation::Model, RotateError> {
    rotations::set_key_grace(&txn, &from.id, from.superseded_at.or(Some(Utc::now())), Some(end)).await?;
    let r = rotations::set_state(&txn, r, next, Some(end), reason).await?;
    announce(&txn, tenant, actor, "rotation.extended", &r, from).await?;
    txn.commit().await?;
    state.cache.invalidate(&hash(from).into_iter().collect::<Vec<_>>()).await;
    Ok(r)
}

/// Brings the end of the overlap window forward (a leak of the old version): never later than it
/// was, never in the past.
///
/// # Errors
/// `NotFound`, or the rotation is not in progress.
pub async fn shorten(
    state: &AppState,
    tenant: &TenantId,
    id: &RotationId,
    new_end: DateTime<Utc>,
    actor: &str,
) -> Result<rotation::Model, RotateError> {
    let txn = begin_write(&state.db).await?;
    let (r, from, _) = load(&txn, tenant, id).await?;
    let now = Utc::now();
    if effective_state(&r, now) != RotationState::InProgress {
        return Err(RotateError::Conflict("the rotation is no longer in progress"));
    }
    let end = new_end.max(now).min(from.grace_ends_at.unwrap_or(r.grace_ends_at));
    let record = (r, RotationState::InProgress, Some("grace shortened".to_owned()));
    set_deadline(state, tenant, txn, record, &from, end, actor).await
}

/// What every rotation event says. Never a secret: ids, versions, the old key's start.
#[must_use]
pub fn event_data(r: &rotation::Model, old: &key::Model) -> Value {
    json!({
        "rotation_id": r.id,
        "lineage_id": r.lineage_id,
        "key_id": old.id,
        "key_start": old.start,
        "version": old.version,
        "consumer_id": old.consumer_id,
        "state": r.state,
        "trigger": r.trigger,
        "retire_mode": r.retire_mode,
        "started_at": crate::time::rfc3339(r.started_at),
        "grace_ends_at": crate::time::rfc3339(r.grace_ends_at),
    })
}

/// Writes a rotation event for the old key's consumer, and its audit entry, in the caller's
/// transaction.
///
/// # Errors
/// Database errors.
pub async fn announce(
    db: &impl sea_orm::ConnectionTrait,
    tenant: &TenantId,
    actor: &str,
    event_type: &'static str,
    r: &rotation::Model,
    old: &key::Model,
) -> Result<(), StoreError> {
    let audience = notify::audience_of(db, old.consumer_id.as_deref()).await?;
    notify::emit(db, tenant, event_type, event_data(r, old), &audience).await?;
    let (k, v) = (&old.start, old.version);
    let summary = match event_type {
        "rotation.rolled_back" => format!("Rolled back the rotation of key {k}: v{v} is current again"),
        "rotation.extended" => {
            format!(
                "Moved the end of the overlap of key {k}: v{v} valid until {}",
                r.grace_ends_at.format("%Y-%m-%d %H:%M UTC")
            )
        }
        _ => {
            format!("Completed the rotation of key {k}: v{v} retired ({})", r.reason.as_deref().unwrap_or("completed"))
        }
    };
    let entry = crate::audit::Entry::new(event_type, "rotation", r.id.clone(), summary).with(json!({
        "key_id": old.id, "lineage_id": r.lineage_id, "state": r.state,
        "grace_ends_at": crate::time::rfc3339(r.grace_ends_at),
    }));
    crate::audit::record(db, tenant, actor, vec![entry]).await?;
    Ok(())
}

/// Cancels in-progress rotations that involve a revoked key, each with its audit entry.
///
/// # Errors
/// Database errors.
pub async fn cancel_for_revoked(state: &AppState, key_id: &KeyId) -> Result<(), StoreError> {
    while let Some(open) = rotations::open_involving(&state.db, key_id).await? {
        let tenant = TenantId::from_trusted(open.tenant_id.clone());
        crate::audit::write(&state.db, &tenant, crate::audit::SYSTEM, async |txn| {
            let entry = crate::audit::Entry::new(
                "rotation.cancelled",
                "rotation",
                open.id.clone(),
                format!("Cancelled the rotation because version {key_id} was revoked"),
            )
            .with(json!({ "lineage_id": open.lineage_id, "revoked_key_id": key_id.as_str() }));
            rotations::set_state(txn, open, RotationState::Cancelled, None, Some("a version was revoked".into()))
                .await?;
            Ok::<_, StoreError>(((), vec![entry]))
        })
        .await?;
    }
    Ok(())
}

/// The state as of `now`: an in-progress rotation whose deadline has passed is completed, since
/// the old version's state (derived from the same timestamp) is already expired.
#[must_use]
pub fn effective_state(r: &rotation::Model, now: DateTime<Utc>) -> RotationState {
    match current_state(r) {
        RotationState::InProgress if r.grace_ends_at <= now => RotationState::Completed,
        s => s,
    }
}

//! Zero-downtime rotation as a service: rotate, complete, roll back, extend, and the migration
//! progress of a rotation. The rules live in `domain::rotation`; this module applies them to the
//! database in one transaction each and invalidates caches after commit.

pub mod bulk;
pub mod migration;
pub mod policy_scan;
pub mod progress;
pub mod retire;

pub use crate::domain::rotation::Handoff;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use sea_orm::DatabaseTransaction;

use super::{Change, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::rotation::{
    self as rules, RetireMode, RotationAction, RotationError, RotationRules, RotationState, Trigger, Version,
};
use crate::domain::{ApiId, ApiKey, ConsumerId, EventType, KeyId, KeyState, KeyTimes, RotationId, ScopeSet, TenantId};
use crate::notify;
use crate::store::entities::{key, rotation};
use crate::store::keys::{self, NewKey};
use crate::store::{StoreError, apis, policies, rotations};

impl From<RotationError> for ServiceError {
    fn from(e: RotationError) -> Self {
        match e {
            r @ RotationError::OverlapOutOfBounds(_) => Self::field("overlap_seconds", r.to_string()),
            r @ (RotationError::ExtendIntoPast
            | RotationError::ExtendShortens
            | RotationError::ExtendBeyondLimit(_)
            | RotationError::ExtendBeyondExpiry) => Self::field("grace_ends_at", r.to_string()),
            r => Self::Conflict(r.to_string()),
        }
    }
}

/// A unique violation while rotating: another request rotated the same key at that moment.
fn raced(e: StoreError) -> ServiceError {
    match e {
        StoreError::Db(db) if crate::store::is_unique_violation(&db) => {
            ServiceError::Conflict("the key was rotated at the same moment by another request".into())
        }
        other => other.into(),
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
    pub compromise: bool,
    /// The new version's expiry: `None` keeps the lineage's, `Some(None)` none, `Some(t)` `t`.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// The bounds in force (from the key's rotation policy, or the defaults).
    pub rules: RotationRules,
    /// Keep the new secret, sealed, for the consumer: fetched with the current key, or sent to
    /// the consumer's own webhook endpoints. Written in the rotation's own transaction, so a
    /// rotation never happens without its secret being kept.
    pub handoff: Option<Handoff>,
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
pub async fn rotate(ctx: &Ctx<'_>, key_id: &KeyId, is_root: bool, req: RotateRequest) -> Result<Rotated, ServiceError> {
    ctx.require(if is_root { Permission::RootKeys } else { Permission::KeysRotate })?;
    if let Some(Some(t)) = req.expires_at
        && t <= Utc::now()
    {
        return Err(ServiceError::field("expires_at", "must be in the future"));
    }
    commit(ctx, async |txn, change| rotate_in(ctx, txn, change, key_id, is_root, req).await).await
}

async fn rotate_in(
    ctx: &Ctx<'_>,
    txn: &DatabaseTransaction,
    change: &mut Change,
    key_id: &KeyId,
    is_root: bool,
    req: RotateRequest,
) -> Result<Rotated, ServiceError> {
    let tenant = &ctx.tenant;
    let current = keys::get(txn, tenant, key_id, is_root).await.map_err(not_found)?;
    let lineage = rotations::lineage(txn, tenant, &current.lineage_id).await?;
    let others: Vec<Version<String>> = lineage.iter().filter(|k| k.id != current.id).map(version).collect();
    let now = Utc::now();
    let plan = rules::plan(now, &version(&current), &others, req.overlap, &req.rules)?;

    for id in &plan.end_now {
        if let Some(k) = lineage.iter().find(|k| &k.id == id) {
            rotations::set_key_grace(txn, id, k.superseded_at.or(Some(now)), Some(now)).await?;
            change.invalidate_hex(&k.hash);
        }
        for open in rotations::open_from(txn, id).await? {
            rotations::set_state(
                txn,
                open,
                RotationState::Completed,
                Some(now),
                Some("retired: lineage at max_active".into()),
            )
            .await?;
        }
    }

    let api = apis::get_any(txn, tenant, &ApiId::from_trusted(current.api_id.clone())).await?;
    let next_version = lineage.iter().map(|k| k.version).max().unwrap_or(current.version) + 1;
    let actor = ctx.actor_id();
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
        // A rotation renews the secret, not the lease: the lineage keeps its expiry.
        expires_at: req.expires_at.unwrap_or(current.expires_at),
        ratelimit: current.ratelimit.clone().and_then(|v| serde_json::from_value(v).ok()),
        credits: current.credits.clone().and_then(|v| serde_json::from_value(v).ok()),
        ip_allowlist: current
            .ip_allowlist
            .clone()
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
            .and_then(|l| crate::domain::input::IpAllowlist::parse(&l).ok()),
        created_by: Some(actor.clone()),
    };
    let (new_key, secret) = keys::insert(txn, new, &apis::head_of(&api)?).await.map_err(raced)?;
    change.created(secret.hash());
    rotations::set_key_grace(txn, &current.id, Some(now), Some(plan.grace_ends_at)).await?;
    let mut record = rotations::insert(
        txn,
        rotations::new_record(
            tenant,
            &current.lineage_id,
            &current.id,
            &new_key.id,
            req.trigger.as_str(),
            Some(actor),
            req.retire_mode.as_str(),
            req.compromise,
            plan.grace_ends_at,
        ),
    )
    .await
    .map_err(raced)?;
    if plan.grace_ends_at <= now {
        // Overlap 0: the old version is retired at once; nothing stays in progress.
        record = rotations::set_state(txn, record, RotationState::Completed, None, Some("immediate".into())).await?;
    }
    let audience = notify::audience_of(txn, current.consumer_id.as_deref()).await?;
    let mut data = event_data(&record, &current);
    data["new_key_id"] = json!(new_key.id);
    data["new_version"] = json!(new_key.version);
    if let Some(handoff) = req.handoff {
        let sealed = ctx
            .state
            .master_key
            .as_ref()
            .and_then(|mk| mk.seal(secret.expose().as_bytes()))
            .ok_or_else(|| ServiceError::Conflict("no master key to keep the new secret".into()))?;
        // Available until the old version's grace ends, plus a week to recover.
        let until = record.grace_ends_at.max(now) + TimeDelta::days(7);
        policies::hold_secret(txn, tenant, &new_key.id, &new_key.lineage_id, sealed, until).await?;
        data["secret_delivery"] = json!(handoff.as_str());
    }
    change.emit(EventType::RotationStarted, data, &audience);
    change.audit(rotated_entry(&record, &current, &new_key, plan.end_now.len()));
    change.invalidate_hex(&current.hash);
    Ok(Rotated { key: new_key, secret, rotation: record })
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such key"),
        other => other.into(),
    }
}

/// The audit entry of a rotation: "Rotated key acme_live_AbCd v3 → v4; v3 valid until …".
#[must_use]
pub fn rotated_entry(r: &rotation::Model, old: &key::Model, new: &key::Model, ended: usize) -> Entry {
    let until = if r.grace_ends_at <= r.started_at {
        format!("v{} retired at once", old.version)
    } else {
        format!("v{} valid until {}", old.version, r.grace_ends_at.format("%Y-%m-%d %H:%M UTC"))
    };
    let (action, target, what) =
        if old.is_root { ("root_key.rotated", "root_key", "root key") } else { ("key.rotated", "key", "key") };
    Entry::new(
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
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    id: &RotationId,
) -> Result<(rotation::Model, key::Model, key::Model), ServiceError> {
    let r = rotations::get(txn, tenant, id).await.map_err(|e| match e {
        StoreError::NotFound => ServiceError::NotFound("no such rotation"),
        other => other.into(),
    })?;
    let from = keys::get_any(txn, tenant, &KeyId::from_trusted(r.from_key_id.clone())).await?;
    let to = keys::get_any(txn, tenant, &KeyId::from_trusted(r.to_key_id.clone())).await?;
    Ok((r, from, to))
}

fn current_state(r: &rotation::Model) -> RotationState {
    RotationState::parse(&r.state).unwrap_or(RotationState::Cancelled)
}

/// Parses a rotation id; a malformed one names no rotation.
///
/// # Errors
/// `NotFound`.
pub fn rotation_id(id: &str) -> Result<RotationId, ServiceError> {
    RotationId::parse(id).map_err(|_| ServiceError::NotFound("no such rotation"))
}

/// Retires the old version now.
///
/// # Errors
/// `NotFound`, or the rotation is not in progress.
pub async fn complete(ctx: &Ctx<'_>, id: &RotationId) -> Result<rotation::Model, ServiceError> {
    ctx.require(Permission::KeysRotate)?;
    commit(ctx, async |txn, change| {
        let (r, from, _) = load(txn, &ctx.tenant, id).await?;
        let next = effective_state(&r, Utc::now()).apply(RotationAction::Complete, r.compromise)?;
        let now = Utc::now();
        rotations::set_key_grace(txn, &from.id, from.superseded_at.or(Some(now)), Some(now)).await?;
        let r = rotations::set_state(txn, r, next, Some(now), Some("completed early".into())).await?;
        announce(txn, change, EventType::RotationCompleted, &r, &from).await?;
        change.invalidate_hex(&from.hash);
        Ok(r)
    })
    .await
}

/// Marks a rotation past its deadline completed (the old version's state already says so).
///
/// # Errors
/// `NotFound`, database errors.
pub async fn retire_at_deadline(ctx: &Ctx<'_>, id: &RotationId) -> Result<(), ServiceError> {
    commit(ctx, async |txn, change| {
        let (r, from, _) = load(txn, &ctx.tenant, id).await?;
        if current_state(&r) != RotationState::InProgress {
            return Ok(());
        }
        let r = rotations::set_state(txn, r, RotationState::Completed, None, Some("retired at the deadline".into()))
            .await?;
        announce(txn, change, EventType::RotationCompleted, &r, &from).await
    })
    .await
}

/// Makes the old version current again and revokes the new one.
///
/// # Errors
/// `NotFound`, not in progress, caused by a compromise, the old version already retired, or
/// the new version rotated further.
pub async fn rollback(ctx: &Ctx<'_>, id: &RotationId) -> Result<rotation::Model, ServiceError> {
    ctx.require(Permission::KeysRotate)?;
    commit(ctx, async |txn, change| {
        let (r, from, to) = load(txn, &ctx.tenant, id).await?;
        let now = Utc::now();
        let next = effective_state(&r, now).apply(RotationAction::Rollback, r.compromise)?;
        if KeyState::derive(&times(&from), now) != KeyState::Superseded {
            return Err(ServiceError::Conflict(
                "the old version is no longer valid, so it cannot become current again".into(),
            ));
        }
        if KeyState::derive(&times(&to), now) != KeyState::Valid {
            return Err(ServiceError::Conflict(
                "the new version is no longer the current one; roll back the later rotation first".into(),
            ));
        }
        rotations::set_key_grace(txn, &from.id, None, None).await?;
        keys::revoke(txn, &ctx.tenant, &KeyId::from_trusted(to.id.clone()), to.is_root, "rotation rolled back").await?;
        let r = rotations::set_state(txn, r, next, None, Some("rolled back".into())).await?;
        announce(txn, change, EventType::RotationRolledBack, &r, &from).await?;
        change.invalidate_hex(&from.hash);
        change.invalidate_hex(&to.hash);
        Ok(r)
    })
    .await
}

/// Moves the end of the overlap window (within the rules' limit and the old key's expiry).
///
/// # Errors
/// `NotFound`, not in progress, or a limit.
pub async fn extend(ctx: &Ctx<'_>, id: &RotationId, new_end: DateTime<Utc>) -> Result<rotation::Model, ServiceError> {
    ctx.require(Permission::KeysRotate)?;
    commit(ctx, async |txn, change| {
        let (r, from, _) = load(txn, &ctx.tenant, id).await?;
        let now = Utc::now();
        let next = effective_state(&r, now).apply(RotationAction::Extend, r.compromise)?;
        let current_end = from.grace_ends_at.unwrap_or(r.grace_ends_at);
        let bounds = rules_for(txn, &from).await?;
        rules::check_extension(now, r.started_at, current_end, new_end, from.expires_at, &bounds)?;
        set_deadline(txn, change, (r, next, None), &from, new_end).await
    })
    .await
}

/// Moves the old version's end of grace and the record's to `end`, announces it as
/// `rotation.extended`, and drops the old version from the caches.
async fn set_deadline(
    txn: &DatabaseTransaction,
    change: &mut Change,
    (r, next, reason): (rotation::Model, RotationState, Option<String>),
    from: &key::Model,
    end: DateTime<Utc>,
) -> Result<rotation::Model, ServiceError> {
    rotations::set_key_grace(txn, &from.id, from.superseded_at.or(Some(Utc::now())), Some(end)).await?;
    let r = rotations::set_state(txn, r, next, Some(end), reason).await?;
    announce(txn, change, EventType::RotationExtended, &r, from).await?;
    change.invalidate_hex(&from.hash);
    Ok(r)
}

/// Brings the end of the overlap window forward (a leak of the old version): never later than it
/// was, never in the past.
///
/// # Errors
/// `NotFound`, or the rotation is not in progress.
pub async fn shorten(ctx: &Ctx<'_>, id: &RotationId, new_end: DateTime<Utc>) -> Result<rotation::Model, ServiceError> {
    ctx.require(Permission::KeysRotate)?;
    commit(ctx, async |txn, change| {
        let (r, from, _) = load(txn, &ctx.tenant, id).await?;
        let now = Utc::now();
        if effective_state(&r, now) != RotationState::InProgress {
            return Err(ServiceError::Conflict("the rotation is no longer in progress".into()));
        }
        let end = new_end.max(now).min(from.grace_ends_at.unwrap_or(r.grace_ends_at));
        let record = (r, RotationState::InProgress, Some("grace shortened".to_owned()));
        set_deadline(txn, change, record, &from, end).await
    })
    .await
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

/// Writes a rotation event for the old key's consumer, and its audit entry, in the change.
///
/// # Errors
/// Database errors.
pub async fn announce(
    txn: &DatabaseTransaction,
    change: &mut Change,
    event_type: EventType,
    r: &rotation::Model,
    old: &key::Model,
) -> Result<(), ServiceError> {
    let audience = notify::audience_of(txn, old.consumer_id.as_deref()).await?;
    change.emit(event_type, event_data(r, old), &audience);
    let (k, v) = (&old.start, old.version);
    let summary = match event_type {
        EventType::RotationRolledBack => format!("Rolled back the rotation of key {k}: v{v} is current again"),
        EventType::RotationExtended => {
            format!(
                "Moved the end of the overlap of key {k}: v{v} valid until {}",
                r.grace_ends_at.format("%Y-%m-%d %H:%M UTC")
            )
        }
        _ => {
            format!("Completed the rotation of key {k}: v{v} retired ({})", r.reason.as_deref().unwrap_or("completed"))
        }
    };
    change.audit(Entry::new(event_type.as_str(), "rotation", r.id.clone(), summary).with(json!({
        "key_id": old.id, "lineage_id": r.lineage_id, "state": r.state,
        "grace_ends_at": crate::time::rfc3339(r.grace_ends_at),
    })));
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

/// The default overlap: 24 hours.
pub const DEFAULT_OVERLAP_SECONDS: i64 = 86_400;

/// A rotation as an adapter asks for it.
#[derive(Debug, Clone)]
pub struct RotateInput {
    /// How long the current version stays valid beside the new one (default a day; 0 ends it now).
    pub overlap_seconds: Option<i64>,
    /// Scopes of the new version (default: the current version's).
    pub scopes: Option<Vec<String>>,
    /// Metadata of the new version (default: the current version's).
    pub meta: Option<Value>,
    /// `at_deadline` (default) or `when_drained`.
    pub retire_mode: Option<String>,
    /// The new version's expiry: `None` keeps the lineage's, `Some(None)` removes it.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub trigger: Trigger,
}

impl RotateInput {
    /// Nothing but the trigger: every default.
    #[must_use]
    pub const fn new(trigger: Trigger) -> Self {
        Self { overlap_seconds: None, scopes: None, meta: None, retire_mode: None, expires_at: None, trigger }
    }
}

/// Rotates a key (or a root key) as asked by a person or a credential: checks the input
/// against the key and the rules in force, then [`rotate`]s.
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field, `Conflict` when a rule refuses.
pub async fn rotate_key(ctx: &Ctx<'_>, id: &str, is_root: bool, input: RotateInput) -> Result<Rotated, ServiceError> {
    ctx.require(if is_root { Permission::RootKeys } else { Permission::KeysRotate })?;
    let key_id = super::keys::key_id(id)?;
    let current = keys::get(ctx.db(), &ctx.tenant, &key_id, is_root).await.map_err(not_found)?;
    let mut c = super::Checks::default();
    let overlap = input.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    // Checked before any arithmetic: the rules' bound is the longest overlap there is.
    let longest = RotationRules::default().max_overlap.num_seconds();
    if overlap < 0 {
        c.push("overlap_seconds", "must be 0 or more");
    } else if overlap > longest {
        c.push("overlap_seconds", RotationError::OverlapOutOfBounds(longest).to_string());
    }
    let retire_mode = match input.retire_mode.as_deref() {
        None => Some(RetireMode::AtDeadline),
        Some(s) => c.take("retire_mode", RetireMode::parse(s).ok_or("must be at_deadline or when_drained")),
    };
    let scopes = match &input.scopes {
        Some(s) if is_root => super::root_keys::check_root_scopes(&mut c, "scopes", s),
        Some(s) => {
            let api = apis::get(ctx.db(), &ctx.tenant, &ApiId::from_trusted(current.api_id.clone())).await?;
            super::keys::check_scopes(&mut c, "scopes", s, &super::keys::catalogue_of(&api))
        }
        None => None,
    };
    let meta = input.meta.map(|m| c.take("meta", crate::domain::input::Meta::parse(m)));
    if let Some(Some(t)) = input.expires_at {
        super::keys::future(&mut c, "expires_at", Some(t));
    }
    c.finish()?;
    let request = RotateRequest {
        overlap: TimeDelta::try_seconds(overlap).unwrap_or(TimeDelta::MAX),
        scopes,
        meta: meta.flatten().map(crate::domain::input::Meta::into_value),
        retire_mode: retire_mode.unwrap_or(RetireMode::AtDeadline),
        trigger: input.trigger,
        compromise: false,
        expires_at: input.expires_at,
        rules: rules_for(ctx.db(), &current).await?,
        handoff: None,
    };
    rotate(ctx, &key_id, is_root, request).await
}

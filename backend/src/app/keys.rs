//! Keys: create, change, enable or disable, revoke one or many. Root keys are keys too; their
//! own rules are in `root_keys`.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use serde_json::{Value, json};

use super::{Change, Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::input::{Credits, IpAllowlist, Meta, Name, RateLimit, Reason};
use crate::domain::plan::Limit;
use crate::domain::rotation::RotationState;
use crate::domain::scope::in_catalogue;
use crate::domain::{ApiId, ApiKey, ConsumerId, EventType, KeyId, Scope, ScopeSet};
use crate::notify;
use crate::store::entities::{api, key};
use crate::store::keys::{self as store, KeyPatch, NewKey};
use crate::store::{StoreError, apis, consumers, rotations};

/// A new key, as an adapter received it.
#[derive(Debug, Clone, Default)]
pub struct NewKeyInput {
    pub api_id: String,
    pub consumer_id: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Option<Value>,
    /// `None`: enabled.
    pub enabled: Option<bool>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    pub ip_allowlist: Option<Vec<String>>,
}

/// A key and its secret, shown this once.
#[derive(Debug)]
pub struct Created {
    pub key: key::Model,
    pub secret: ApiKey,
}

/// What to change of a key; `None` leaves a field, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Value>,
    pub enabled: Option<bool>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub ratelimit: Option<Option<RateLimit>>,
    pub credits: Option<Option<Credits>>,
    pub ip_allowlist: Option<Option<Vec<String>>>,
}

/// Parses `id` as a key id; a malformed one names no key.
///
/// # Errors
/// `NotFound`.
pub fn key_id(id: &str) -> Result<KeyId, ServiceError> {
    KeyId::parse(id).map_err(|_| ServiceError::NotFound("no such key"))
}

/// The scopes of a key of `api`: valid scopes, at most [`ScopeSet::MAX`], each in the API's
/// catalogue when it has one. Errors name `{field}[i]` by the index given.
pub fn check_scopes(c: &mut Checks, field: &str, items: &[String], catalogue: &ScopeSet) -> Option<ScopeSet> {
    if items.len() > ScopeSet::MAX {
        c.push(field, "must have at most 100 scopes");
        return None;
    }
    let before = c.0.len();
    let mut parsed = Vec::with_capacity(items.len());
    for (i, s) in items.iter().enumerate() {
        match Scope::parse(s) {
            Ok(scope) if in_catalogue(&scope, catalogue) => parsed.push(scope),
            Ok(_) => c.push(format!("{field}[{i}]"), "is not in the API's scope catalogue"),
            Err(e) => c.push(format!("{field}[{i}]"), e.to_string()),
        }
    }
    (c.0.len() == before).then(|| ScopeSet::new(parsed))
}

/// An API's scope catalogue, as stored.
#[must_use]
pub fn catalogue_of(api: &api::Model) -> ScopeSet {
    ScopeSet::from_stored(&serde_json::from_value::<Vec<String>>(api.scope_catalogue.clone()).unwrap_or_default())
}

/// A time that must lie ahead.
pub fn future(c: &mut Checks, field: &str, t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    if t.is_some_and(|t| t <= Utc::now()) {
        c.push(field, "must be in the future");
    }
    t
}

fn ratelimit(c: &mut Checks, field: &str, r: RateLimit) -> Option<RateLimit> {
    r.check().map_err(|(f, m)| c.push(format!("{field}.{f}"), m)).ok()
}

fn credits(c: &mut Checks, cr: Credits) -> Option<Credits> {
    cr.check().map_err(|(f, m)| c.push(format!("credits.{f}"), m)).ok()
}

fn allowlist(c: &mut Checks, items: &[String]) -> Option<IpAllowlist> {
    IpAllowlist::parse(items).map_err(|(i, m)| c.push(format!("ip_allowlist[{i}]"), m)).ok()
}

/// What an audit entry or event keeps of a key: everything but its hash.
fn audited(k: &key::Model) -> Value {
    json!({
        "start": k.start, "version": k.version, "lineage_id": k.lineage_id, "api_id": k.api_id,
        "consumer_id": k.consumer_id, "name": k.name, "scopes": k.scopes, "meta": k.meta, "enabled": k.enabled,
        "expires_at": k.expires_at.map(crate::time::rfc3339), "ratelimit": k.ratelimit, "credits": k.credits,
        "ip_allowlist": k.ip_allowlist,
    })
}

/// The data of a key's events: who it is, and what it is now.
#[must_use]
pub fn event_data(k: &key::Model) -> Value {
    json!({
        "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id, "version": k.version,
        "api_id": k.api_id, "consumer_id": k.consumer_id, "name": k.name, "scopes": k.scopes,
        "enabled": k.enabled, "expires_at": k.expires_at.map(crate::time::rfc3339),
    })
}

/// Writes a new key (or root key, or version) in the change: its row, `key.created` with the
/// audit entry, and the announcement of its hash.
///
/// # Errors
/// Database errors.
pub async fn insert(
    txn: &DatabaseTransaction,
    change: &mut Change,
    new: NewKey,
    api: &api::Model,
) -> Result<Created, ServiceError> {
    let head = apis::head_of(api)?;
    let (model, secret) = store::insert(txn, new, &head).await?;
    let audience = notify::audience_of(txn, model.consumer_id.as_deref()).await?;
    change.audit(created_entry(&model));
    if !model.is_root {
        change.emit(EventType::KeyCreated, event_data(&model), &audience);
    }
    change.created(secret.hash());
    Ok(Created { key: model, secret })
}

/// The audit entry of a new key or root key.
#[must_use]
pub fn created_entry(k: &key::Model) -> Entry {
    let (action, target, what) =
        if k.is_root { ("root_key.created", "root_key", "root key") } else { ("key.created", "key", "key") };
    let named = k.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    Entry::new(action, target, k.id.clone(), format!("Created {what} {}{named}", k.start)).with(audited(k))
}

/// Creates a key of one of the tenant's APIs for one of its consumers.
///
/// # Errors
/// `NotFound` for an API or consumer not of this tenant, `Invalid` naming every bad field.
pub async fn create(ctx: &Ctx<'_>, input: NewKeyInput) -> Result<Created, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    let api_id = ApiId::parse(&input.api_id).map_err(|e| ServiceError::field("api_id", e.to_string()))?;
    let consumer_id =
        ConsumerId::parse(&input.consumer_id).map_err(|e| ServiceError::field("consumer_id", e.to_string()))?;
    let api = match apis::get(ctx.db(), &ctx.tenant, &api_id).await {
        Err(StoreError::NotFound) => return Err(ServiceError::NotFound("api_id names no API of this tenant")),
        other => other?,
    };
    match consumers::get(ctx.db(), &ctx.tenant, &consumer_id).await {
        Err(StoreError::NotFound) => {
            return Err(ServiceError::NotFound("consumer_id names no consumer of this tenant"));
        }
        other => other?,
    };
    let mut c = Checks::default();
    let name = c.optional_name(input.name.as_deref());
    let scopes = check_scopes(&mut c, "scopes", &input.scopes, &catalogue_of(&api));
    let meta = c.take("meta", Meta::parse(input.meta.unwrap_or_else(|| json!({}))));
    let expires_at = future(&mut c, "expires_at", input.expires_at);
    let rl = input.ratelimit.map(|r| ratelimit(&mut c, "ratelimit", r));
    let ip_allowlist = input.ip_allowlist.as_deref().map(|l| allowlist(&mut c, l));
    let cr = input.credits.map(|x| credits(&mut c, x));
    let (Some(name), Some(scopes), Some(meta)) = (name, scopes, meta) else {
        return Err(ServiceError::Invalid(c.0));
    };
    c.finish()?;
    super::billing::admit(ctx, Limit::ActiveKeys, 1).await?;
    let new = NewKey {
        tenant_id: ctx.tenant.clone(),
        api_id,
        consumer_id: Some(consumer_id),
        is_root: false,
        lineage: None,
        name,
        scopes,
        meta: meta.into_value(),
        enabled: input.enabled.unwrap_or(true),
        expires_at,
        ratelimit: rl.flatten(),
        credits: cr.flatten(),
        ip_allowlist: ip_allowlist.flatten(),
        created_by: Some(ctx.actor_id()),
    };
    commit(ctx, async |txn, change| insert(txn, change, new, &api).await).await
}

/// Changes a key's settings. A revoked key cannot be changed.
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field, `Conflict` for a revoked key.
pub async fn update(ctx: &Ctx<'_>, id: &str, input: KeyChanges) -> Result<key::Model, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    let id = key_id(id)?;
    let current = store::get(ctx.db(), &ctx.tenant, &id, false).await.map_err(not_found)?;
    let mut c = Checks::default();
    let mut patch = KeyPatch::default();
    match input.name {
        Some(Some(n)) => patch.name = c.take("name", Name::parse(&n)).map(|n| Some(n.into_string())),
        Some(None) => patch.name = Some(None),
        None => {}
    }
    if let Some(s) = &input.scopes {
        let api = apis::get(ctx.db(), &ctx.tenant, &ApiId::from_trusted(current.api_id.clone())).await?;
        patch.scopes = check_scopes(&mut c, "scopes", s, &catalogue_of(&api));
    }
    if let Some(m) = input.meta {
        patch.meta = c.take("meta", Meta::parse(m)).map(Meta::into_value);
    }
    patch.enabled = input.enabled;
    if let Some(e) = input.expires_at {
        patch.expires_at = Some(future(&mut c, "expires_at", e));
    }
    if let Some(r) = input.ratelimit {
        patch.ratelimit = Some(r.and_then(|r| ratelimit(&mut c, "ratelimit", r)));
    }
    let credits_set = input.credits.is_some();
    if let Some(cr) = input.credits {
        patch.credits = Some(cr.and_then(|x| credits(&mut c, x)));
    }
    if let Some(l) = input.ip_allowlist {
        patch.ip_allowlist = Some(l.and_then(|l| allowlist(&mut c, &l)));
    }
    c.finish()?;
    commit(ctx, async |txn, change| {
        let before = store::get(txn, &ctx.tenant, &id, false).await.map_err(not_found)?;
        let after = store::update(txn, &ctx.tenant, &id, false, patch).await?;
        change.audit(updated_entry(&before, &after));
        let audience = notify::audience_of(txn, after.consumer_id.as_deref()).await?;
        let mut data = event_data(&after);
        data["changed"] = json!(changed_fields(&before, &after));
        change.emit(EventType::KeyUpdated, data, &audience);
        change.invalidate_hex(&after.hash);
        if credits_set {
            change.credits_changed(&after.lineage_id);
            // Every version of the lineage spends from the balance: a lease of the old one, held
            // in any version's cached record, goes with that record.
            change.invalidate(store::hashes_of(txn, &ctx.tenant, store::KeysOf::Lineage(&after.lineage_id)).await?);
        }
        Ok(after)
    })
    .await
}

/// Enables or disables a key (reversible, obeyed by every node at once).
///
/// # Errors
/// As [`update`].
pub async fn set_enabled(ctx: &Ctx<'_>, id: &str, enabled: bool) -> Result<key::Model, ServiceError> {
    update(ctx, id, KeyChanges { enabled: Some(enabled), ..KeyChanges::default() }).await
}

fn changed_fields(before: &key::Model, after: &key::Model) -> Vec<String> {
    let (b, a) = (audited(before), audited(after));
    match (b.as_object(), a.as_object()) {
        (Some(b), Some(a)) => a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The audit entry of a change to a key's settings.
#[must_use]
pub fn updated_entry(before: &key::Model, after: &key::Model) -> Entry {
    let summary = match (before.enabled, after.enabled) {
        (true, false) => format!("Disabled key {} v{}", after.start, after.version),
        (false, true) => format!("Enabled key {} v{}", after.start, after.version),
        _ => format!("Changed the settings of key {} v{}", after.start, after.version),
    };
    Entry::new("key.updated", "key", after.id.clone(), summary).change(audited(before), audited(after))
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such key"),
        other => other.into(),
    }
}

/// Revokes a key now, on every node. Revoking a revoked key changes nothing.
///
/// # Errors
/// `NotFound`, `Invalid` for a bad reason.
pub async fn revoke(ctx: &Ctx<'_>, id: &str, reason: &str) -> Result<key::Model, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    revoke_version(ctx, id, false, reason).await
}

/// Revokes a key or a root key (the caller has checked the permission for its kind).
pub(super) async fn revoke_version(
    ctx: &Ctx<'_>,
    id: &str,
    is_root: bool,
    reason: &str,
) -> Result<key::Model, ServiceError> {
    let id = key_id(id)?;
    let reason = Reason::parse(reason).map_err(|m| ServiceError::field("reason", m))?;
    commit(ctx, async |txn, change| {
        let before = store::get(txn, &ctx.tenant, &id, is_root).await.map_err(not_found)?;
        revoke_in(txn, change, &ctx.actor_id(), &before, &reason).await
    })
    .await
}

/// Revokes many keys of the tenant in one change; those already revoked or not of this
/// tenant are left out. Returns the keys revoked now.
///
/// # Errors
/// `Invalid` for a bad reason, database errors.
pub async fn revoke_many(
    ctx: &Ctx<'_>,
    ids: &[KeyId],
    is_root: bool,
    reason: &str,
) -> Result<Vec<key::Model>, ServiceError> {
    ctx.require(if is_root { Permission::RootKeys } else { Permission::KeysWrite })?;
    let reason = Reason::parse(reason).map_err(|m| ServiceError::field("reason", m))?;
    commit(ctx, async |txn, change| {
        let mut revoked = Vec::with_capacity(ids.len());
        for id in ids {
            let k = match store::get(txn, &ctx.tenant, id, is_root).await {
                Err(StoreError::NotFound) => continue,
                other => other?,
            };
            if k.revoked_at.is_none() {
                revoked.push(revoke_in(txn, change, &ctx.actor_id(), &k, &reason).await?);
            }
        }
        Ok(revoked)
    })
    .await
}

/// Revokes `k` in the change: its row, `key.revoked`, the audit entry, the end of rotations it
/// was part of, and its invalidation.
///
/// # Errors
/// Database errors.
pub async fn revoke_in(
    txn: &DatabaseTransaction,
    change: &mut Change,
    actor: &str,
    k: &key::Model,
    reason: &Reason,
) -> Result<key::Model, ServiceError> {
    let id = KeyId::from_trusted(k.id.clone());
    let tenant = crate::domain::TenantId::from_trusted(k.tenant_id.clone());
    let model = store::revoke(txn, &tenant, &id, k.is_root, reason.as_str()).await?;
    if k.revoked_at.is_none() {
        let audience = notify::audience_of(txn, model.consumer_id.as_deref()).await?;
        change.emit(EventType::KeyRevoked, revoked_event(&model, reason.as_str(), actor), &audience);
        change.audit(revoked_entry(&model, reason.as_str()));
        cancel_rotations_in(txn, change, &id).await?;
    }
    change.invalidate_hex(&model.hash);
    Ok(model)
}

fn revoked_entry(model: &key::Model, reason: &str) -> Entry {
    let (what, action, target) =
        if model.is_root { ("root key", "root_key.revoked", "root_key") } else { ("key", "key.revoked", "key") };
    Entry::new(action, target, model.id.clone(), format!("Revoked {what} {} v{}: {reason}", model.start, model.version))
        .with(json!({ "reason": reason, "lineage_id": model.lineage_id, "consumer_id": model.consumer_id }))
}

/// Cancels the rotations in progress that involve a revoked key, each with its audit entry.
///
/// # Errors
/// Database errors.
pub async fn cancel_rotations_in(
    txn: &DatabaseTransaction,
    change: &mut Change,
    key_id: &KeyId,
) -> Result<(), ServiceError> {
    while let Some(open) = rotations::open_involving(txn, key_id).await? {
        change.audit(
            Entry::new(
                "rotation.cancelled",
                "rotation",
                open.id.clone(),
                format!("Cancelled the rotation because version {key_id} was revoked"),
            )
            .with(json!({ "lineage_id": open.lineage_id, "revoked_key_id": key_id.as_str() })),
        );
        rotations::set_state(txn, open, RotationState::Cancelled, None, Some("a version was revoked".into())).await?;
    }
    Ok(())
}

/// The `key.revoked` event of a key.
#[must_use]
pub fn revoked_event(k: &key::Model, reason: &str, by: &str) -> Value {
    json!({
        "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id, "version": k.version,
        "consumer_id": k.consumer_id, "reason": reason, "revoked_by": by,
    })
}

/// How far back the expiry sweep looks: a node that was down this long still announces.
const EXPIRY_LOOKBACK_DAYS: i64 = 7;

/// Announces `key.expired` once for every key whose `expires_at` has passed (within the last
/// week), each in its own change, as the system. Called by the periodic sweep on any node: a
/// key announced by one is not announced by another. Returns how many were announced.
///
/// # Errors
/// Database errors.
pub async fn announce_expired(state: &crate::state::AppState, now: DateTime<Utc>) -> Result<usize, ServiceError> {
    let since = now - chrono::TimeDelta::days(EXPIRY_LOOKBACK_DAYS);
    let mut announced = 0;
    loop {
        let batch = store::newly_expired(&state.db, since, now, 200).await?;
        if batch.is_empty() {
            return Ok(announced);
        }
        for k in batch {
            let ctx = Ctx::system(state, crate::domain::TenantId::from_trusted(k.tenant_id.clone()));
            let first = commit(&ctx, async |txn, change| {
                if !crate::store::policies::mark_notice(txn, &k.id, store::EXPIRY_NOTICE).await? {
                    return Ok(false);
                }
                let audience = notify::audience_of(txn, k.consumer_id.as_deref()).await?;
                let mut data = event_data(&k);
                data["expired_at"] = json!(k.expires_at.map(crate::time::rfc3339));
                if !k.is_root {
                    change.emit(EventType::KeyExpired, data, &audience);
                }
                Ok(true)
            })
            .await?;
            announced += usize::from(first);
        }
    }
}

//! `/v1/keys`: key versions of the tenant's APIs.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::views::{Checks, CreateKey, CreatedKey, KeyList, KeyView, PatchKey, RevokeKey};
use crate::audit::Entry;
use crate::domain::input::{IpAllowlist, Meta, Name};
use crate::domain::{ApiId, ConsumerId, Environment, KeyHash, KeyHead, KeyId, KeyPrefix, KeyState, ScopeSet, TenantId};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::keys::{self as store, KeyFilter, KeyPatch, NewKey};
use crate::store::{StoreError, apis, consumers};

pub(crate) fn parse_id(s: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(s).map_err(|_| ApiError::NotFound("no such key"))
}

/// Scopes, checked against the API's catalogue when it has one.
pub(crate) fn scopes(c: &mut Checks, items: &[String], catalogue: &[String]) -> Option<ScopeSet> {
    if items.len() > ScopeSet::MAX {
        c.push("scopes", "must have at most 100 scopes");
        return None;
    }
    let set = match ScopeSet::parse_all(items) {
        Ok(s) => s,
        Err((i, e)) => {
            c.push(format!("scopes[{i}]"), e.to_string());
            return None;
        }
    };
    if !catalogue.is_empty() {
        let cat = ScopeSet::from_stored(catalogue);
        for (i, s) in set.iter().enumerate() {
            let resource_known = s
                .as_str()
                .strip_suffix(":*")
                .is_some_and(|r| cat.iter().any(|x| x.as_str().split(':').next() == Some(r)));
            if !(cat.grants(s.as_str()) || resource_known) {
                c.push(format!("scopes[{i}]"), "is not in the API's scope catalogue");
            }
        }
    }
    Some(set)
}

pub(crate) fn future(c: &mut Checks, field: &str, t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    if t.is_some_and(|t| t <= Utc::now()) {
        c.push(field, "must be in the future");
    }
    t
}

fn allowlist(c: &mut Checks, items: &[String]) -> Option<IpAllowlist> {
    IpAllowlist::parse(items).map_err(|(i, m)| c.push(format!("ip_allowlist[{i}]"), m)).ok()
}

/// Create a key. The answer holds the secret: the only time it is shown.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = CreatedKey), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    root.require("keys:write")?;
    let b = body.value;
    let api_id = ApiId::parse(&b.api_id).map_err(|e| ApiError::field("api_id", e.to_string()))?;
    let consumer_id = ConsumerId::parse(&b.consumer_id).map_err(|e| ApiError::field("consumer_id", e.to_string()))?;
    let api = match apis::get(&state.db, &root.tenant_id, &api_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("api_id names no API of this tenant")),
        other => other?,
    };
    match consumers::get(&state.db, &root.tenant_id, &consumer_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("consumer_id names no consumer of this tenant")),
        other => other?,
    };
    let catalogue: Vec<String> = serde_json::from_value(api.scope_catalogue.clone()).unwrap_or_default();
    let mut c = Checks::default();
    let name = c.optional_name(b.name.as_deref());
    let scopes = scopes(&mut c, b.scopes.as_deref().unwrap_or_default(), &catalogue);
    let meta = c.take("meta", Meta::parse(b.meta.unwrap_or_else(|| serde_json::json!({}))));
    let expires_at = future(&mut c, "expires_at", b.expires_at);
    let mut errs = Vec::new();
    let ratelimit = b.ratelimit.and_then(|r| r.check("ratelimit", &mut errs));
    c.0.extend(errs);
    let ip_allowlist = b.ip_allowlist.as_deref().map(|l| allowlist(&mut c, l));
    c.finish()?;
    let (Some(name), Some(scopes), Some(meta)) = (name, scopes, meta) else {
        return Err(ApiError::field("body", "is invalid"));
    };
    let head = KeyHead::Api {
        prefix: KeyPrefix::parse(&api.key_prefix).map_err(|e| ApiError::Internal(e.into()))?,
        env: Environment::parse(&api.environment).unwrap_or(Environment::Live),
    };
    let new = NewKey {
        tenant_id: root.tenant_id.clone(),
        api_id,
        consumer_id: Some(consumer_id),
        is_root: false,
        lineage: None,
        name,
        scopes,
        meta: meta.into_value(),
        enabled: b.enabled.unwrap_or(true),
        expires_at,
        ratelimit,
        credits: b.credits.map(Into::into),
        ip_allowlist: ip_allowlist.flatten(),
        created_by: Some(root.actor()),
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let (model, secret) = insert_audited(&state.db, new, &head).await?;
        // Drops a negative cache entry for this hash, should anyone have guessed it.
        state.cache.announce_created(&[secret.hash()]).await;
        let created = CreatedKey { key: model.into(), secret: secret.expose().to_owned() };
        Ok((StatusCode::CREATED, serde_json::to_value(created).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// Filters of the key list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct KeyQuery {
    pub api_id: Option<String>,
    pub consumer_id: Option<String>,
    pub lineage_id: Option<String>,
    /// `valid`, `superseded`, `expired`, `disabled` or `revoked`.
    pub state: Option<String>,
    /// 1 to 100; 20 when absent.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List keys (never secrets), newest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<KeyList>, ApiError> {
    root.require("keys:read")?;
    let q = query::<KeyQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let mut c = Checks::default();
    let filter = KeyFilter {
        api_id: q.api_id.as_deref().and_then(|s| c.take("api_id", ApiId::parse(s).map_err(|e| e.to_string()))),
        consumer_id: q
            .consumer_id
            .as_deref()
            .and_then(|s| c.take("consumer_id", ConsumerId::parse(s).map_err(|e| e.to_string()))),
        lineage_id: q
            .lineage_id
            .as_deref()
            .and_then(|s| c.take("lineage_id", KeyId::parse(s).map_err(|e| e.to_string()))),
        state: q.state.as_deref().and_then(|s| {
            c.take("state", KeyState::parse(s).ok_or("must be valid, superseded, expired, disabled or revoked"))
        }),
        root: false,
    };
    c.finish()?;
    let page = store::list(&state.db, &root.tenant_id, &filter, limit, cursor.as_ref()).await?;
    Ok(web::Json(KeyList::from_page(page)))
}

/// Read a key.
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<KeyView>, ApiError> {
    root.require("keys:read")?;
    Ok(web::Json(store::get(&state.db, &root.tenant_id, &parse_id(&id)?, false).await?.into()))
}

/// Update a key's name, scopes, meta, enabled flag, expiry or limits.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path)), request_body = PatchKey,
    responses((status = 200, body = KeyView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PatchKey>,
) -> Result<web::Json<KeyView>, ApiError> {
    root.require("keys:write")?;
    let id = parse_id(&id)?;
    let current = store::get(&state.db, &root.tenant_id, &id, false).await?;
    let b = body.value;
    let mut c = Checks::default();
    let mut patch = KeyPatch::default();
    match b.name {
        Some(Some(n)) => patch.name = c.take("name", Name::parse(&n)).map(|n| Some(n.into_string())),
        Some(None) => patch.name = Some(None),
        None => {}
    }
    if let Some(s) = &b.scopes {
        let api = apis::get(&state.db, &root.tenant_id, &ApiId::from_trusted(current.api_id.clone())).await?;
        let catalogue: Vec<String> = serde_json::from_value(api.scope_catalogue).unwrap_or_default();
        patch.scopes = scopes(&mut c, s, &catalogue);
    }
    if let Some(m) = b.meta {
        patch.meta = c.take("meta", Meta::parse(m)).map(Meta::into_value);
    }
    patch.enabled = b.enabled;
    if let Some(e) = b.expires_at {
        patch.expires_at = Some(future(&mut c, "expires_at", e));
    }
    if let Some(r) = b.ratelimit {
        let mut errs = Vec::new();
        patch.ratelimit = Some(r.and_then(|r| r.check("ratelimit", &mut errs)));
        c.0.extend(errs);
    }
    if let Some(cr) = b.credits {
        patch.credits = Some(cr.map(Into::into));
    }
    if let Some(l) = b.ip_allowlist {
        patch.ip_allowlist = Some(l.and_then(|l| allowlist(&mut c, &l)));
    }
    c.finish()?;
    let model = update_audited(&state.db, &root.tenant_id, &root.actor(), &id, patch).await?;
    invalidate_one(&state, &model.hash).await;
    Ok(web::Json(model.into()))
}

/// Revoke a key now, on every node.
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys", params(("id" = String, Path)), request_body = RevokeKey,
    responses((status = 200, body = KeyView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<RevokeKey>,
) -> Result<web::Json<KeyView>, ApiError> {
    root.require("keys:write")?;
    revoke_one(&state, &root.tenant_id, &root.actor(), &id, &body.value.reason, false).await.map(web::Json)
}

pub(crate) async fn revoke_one(
    state: &AppState,
    tenant: &TenantId,
    actor: &str,
    id: &str,
    reason: &str,
    is_root: bool,
) -> Result<KeyView, ApiError> {
    let id = parse_id(id)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::field("reason", "must be 1 to 500 characters"));
    }
    let txn = crate::store::begin_write(&state.db).await.map_err(StoreError::from)?;
    let before = store::get(&txn, tenant, &id, is_root).await?;
    let model = store::revoke(&txn, tenant, &id, is_root, reason).await?;
    if before.revoked_at.is_none() {
        let audience = crate::notify::audience_of(&txn, model.consumer_id.as_deref()).await?;
        let data = revoked_event(&model, reason, actor);
        crate::notify::emit(&txn, tenant, "key.revoked", data, &audience).await?;
        let (what, action) = if is_root { ("root key", "root_key.revoked") } else { ("key", "key.revoked") };
        let entry = Entry::new(
            action,
            if is_root { "root_key" } else { "key" },
            model.id.clone(),
            format!("Revoked {what} {} v{}: {reason}", model.start, model.version),
        )
        .with(
            serde_json::json!({ "reason": reason, "lineage_id": model.lineage_id, "consumer_id": model.consumer_id }),
        );
        crate::audit::record(&txn, tenant, actor, vec![entry]).await?;
    }
    txn.commit().await.map_err(StoreError::from)?;
    super::rotations::after_revoke(state, &model.id, &model.hash).await?;
    Ok(model.into())
}

/// Creates a key or root key and its audit entry (the actor is `created_by`).
///
/// # Errors
/// Database errors.
pub(crate) async fn insert_audited(
    db: &sea_orm::DatabaseConnection,
    new: NewKey,
    head: &KeyHead,
) -> Result<(crate::store::entities::key::Model, crate::domain::ApiKey), StoreError> {
    let tenant = new.tenant_id.clone();
    let actor = new.created_by.clone().unwrap_or_else(|| crate::audit::SYSTEM.to_owned());
    crate::audit::write(db, &tenant, &actor, async |txn| {
        let (model, secret) = store::insert(txn, new, head).await?;
        let entry = crate::audit::entries::key_created(&model);
        Ok(((model, secret), vec![entry]))
    })
    .await
}

/// Changes a key's settings, with an audit entry of what changed.
///
/// # Errors
/// `NotFound`, `Conflict`, database errors.
pub(crate) async fn update_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    id: &KeyId,
    patch: KeyPatch,
) -> Result<crate::store::entities::key::Model, StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let before = store::get(txn, tenant, id, false).await?;
        let after = store::update(txn, tenant, id, false, patch).await?;
        let entry = crate::audit::entries::key_updated(&before, &after);
        Ok((after, vec![entry]))
    })
    .await
}

/// The `key.revoked` event of a key.
pub(crate) fn revoked_event(k: &crate::store::entities::key::Model, reason: &str, by: &str) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id, "version": k.version,
        "consumer_id": k.consumer_id, "reason": reason, "revoked_by": by,
    })
}

pub(crate) async fn invalidate_one(state: &AppState, hex: &str) {
    if let Some(h) = KeyHash::from_hex(hex) {
        state.cache.invalidate(&[h]).await;
    }
}

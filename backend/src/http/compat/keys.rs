//! `keys.*` and `apis.listKeys`: each parses Unkey's request, calls the application layer (or
//! the verify path, or a read), and answers in Unkey's shape.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::{
    CreditsIn, Extras, Identity, KeyData, RATELIMIT_NAME, RatelimitIn, UNASSIGNED, ends_at, ms, no_roles, ratelimit_of,
    time_of,
};
use super::{NotFound, UnkeyBody, UnkeyError, UnkeyRoot, ok};
use crate::app::keys::{KeyChanges, NewKeyInput};
use crate::app::rotation::RotateInput;
use crate::app::{self, Permission};
use crate::domain::rotation::Trigger;
use crate::domain::scope_query::ScopeQuery;
use crate::domain::{ApiId, ApiKey, ConsumerId, KeyHash, KeyId, TenantId};
use crate::state::AppState;
use crate::store::entities::key;
use crate::store::keys::KeyFilter;
use crate::store::{self, Cursor, StoreError};
use crate::verify::{self, Code, VerifyInput};

type Answer = Result<HttpResponse, UnkeyError>;

fn api_not_found() -> UnkeyError {
    UnkeyError::NotFound(NotFound::Api, "The specified API was not found.".into())
}

fn key_not_found() -> UnkeyError {
    UnkeyError::NotFound(NotFound::Key, "The specified key was not found.".into())
}

async fn api_of(state: &AppState, tenant: &TenantId, id: &str) -> Result<store::entities::api::Model, UnkeyError> {
    let id = ApiId::parse(id).map_err(|_| api_not_found())?;
    match store::apis::get(&state.db, tenant, &id).await {
        Err(StoreError::NotFound) => Err(api_not_found()),
        other => Ok(other?),
    }
}

/// A key of the tenant that is not revoked (Unkey's deleted keys are gone).
async fn live_key(state: &AppState, tenant: &TenantId, id: &str) -> Result<key::Model, UnkeyError> {
    let id = KeyId::parse(id).map_err(|_| key_not_found())?;
    match store::keys::get(&state.db, tenant, &id, false).await {
        Ok(k) if k.revoked_at.is_none() => Ok(k),
        Ok(_) | Err(StoreError::NotFound) => Err(key_not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The consumers and live balances the answers about `keys` show.
async fn extras(state: &AppState, tenant: &TenantId, keys: &[key::Model]) -> Result<Extras, UnkeyError> {
    let mut ids: Vec<&str> = keys.iter().filter_map(|k| k.consumer_id.as_deref()).collect();
    ids.sort_unstable();
    ids.dedup();
    let consumers = store::consumers::many(&state.db, tenant, &ids).await?;
    let with_credits: Vec<(&str, crate::domain::input::Credits)> = keys
        .iter()
        .filter_map(|k| Some((k.lineage_id.as_str(), serde_json::from_value(k.credits.clone()?).ok()?)))
        .collect();
    let balances = state.credits.balances(&state.cache, &state.db, tenant.as_str(), &with_credits, Utc::now()).await?;
    Ok(Extras { consumers: consumers.into_iter().map(|c| (c.id.clone(), c)).collect(), balances })
}

async fn key_answer(state: &AppState, tenant: &TenantId, k: &key::Model) -> Answer {
    let extras = extras(state, tenant, std::slice::from_ref(k)).await?;
    Ok(ok(&KeyData::of(k, &extras)))
}

/// `POST /v2/keys.createKey`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    pub api_id: String,
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub byte_length: Option<i64>,
    pub external_id: Option<String>,
    pub meta: Option<Value>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub expires: Option<i64>,
    pub credits: Option<CreditsIn>,
    pub ratelimits: Option<Vec<RatelimitIn>>,
    pub enabled: Option<bool>,
    pub recoverable: Option<bool>,
}

pub async fn create(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<CreateKey>) -> Answer {
    root.require(Permission::KeysWrite)?;
    let b = body.0;
    let tenant = &root.0.tenant_id;
    let api = api_of(&state, tenant, &b.api_id).await?;
    if let Some(p) = &b.prefix
        && p != &api.key_prefix
    {
        return Err(UnkeyError::field(
            "prefix",
            format!("must be {} or left out: a Keyroll key carries its API's prefix", api.key_prefix),
        ));
    }
    if b.byte_length.is_some_and(|n| !(16..=255).contains(&n)) {
        return Err(UnkeyError::field("byteLength", "must be between 16 and 255"));
    }
    no_roles(b.roles.as_ref())?;
    if b.recoverable == Some(true) {
        return Err(UnkeyError::PreconditionFailed(
            "Keyroll keeps only a hash of each key: a key cannot be recoverable".into(),
        ));
    }
    let credits = b.credits.as_ref().map(CreditsIn::to_credits).transpose()?.flatten();
    let ratelimit = ratelimit_of(b.ratelimits.as_deref().unwrap_or_default())?;
    let expires_at = b.expires.map(|t| time_of("expires", t)).transpose()?;
    let ctx = root.0.ctx(&state);
    let (external_id, owner_name) = match &b.external_id {
        Some(x) => (x.as_str(), x.as_str()),
        None => (UNASSIGNED, "Keys without an owner"),
    };
    let consumer = app::consumers::ensure(&ctx, external_id, owner_name)
        .await
        .map_err(|e| UnkeyError::from_service(e, NotFound::Api))?;
    let input = NewKeyInput {
        api_id: api.id,
        consumer_id: consumer.id,
        name: b.name,
        scopes: b.permissions.unwrap_or_default(),
        meta: b.meta,
        enabled: b.enabled,
        expires_at,
        ratelimit,
        credits,
        ip_allowlist: None,
    };
    let created = app::keys::create(&ctx, input).await.map_err(|e| UnkeyError::from_service(e, NotFound::Api))?;
    Ok(ok(&json!({ "keyId": created.key.id, "key": created.secret.expose() })))
}

/// `POST /v2/keys.verifyKey`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKey {
    pub key: String,
    pub tags: Option<Vec<String>>,
    pub permissions: Option<String>,
    pub credits: Option<VerifyCredits>,
    pub ratelimits: Option<Vec<VerifyRatelimit>>,
    pub keyspaces: Option<Vec<String>>,
    pub migration_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct VerifyCredits {
    pub cost: i64,
}

#[derive(Debug, Deserialize)]
pub struct VerifyRatelimit {
    pub name: String,
    pub cost: Option<i64>,
    pub limit: Option<i64>,
    pub duration: Option<i64>,
}

/// Unkey's code for Keyroll's: a revoked key is a deleted one, a malformed one is not found.
fn unkey_code(code: Code) -> &'static str {
    match code {
        Code::Valid => "VALID",
        Code::Malformed | Code::NotFound | Code::Revoked => "NOT_FOUND",
        Code::Expired => "EXPIRED",
        Code::Disabled => "DISABLED",
        Code::InsufficientScope => "INSUFFICIENT_PERMISSIONS",
        Code::IpNotAllowed => "FORBIDDEN",
        Code::RateLimited => "RATE_LIMITED",
        Code::UsageExceeded => "USAGE_EXCEEDED",
    }
}

fn check_verify(b: &VerifyKey) -> Result<(Option<ScopeQuery>, u64), UnkeyError> {
    if b.key.is_empty() {
        return Err(UnkeyError::field("key", "must not be empty"));
    }
    if b.migration_id.is_some() {
        return Err(UnkeyError::field(
            "migrationId",
            "is not supported: bring existing keys over with POST /v1/keys/import",
        ));
    }
    if b.tags.as_ref().is_some_and(|t| t.len() > 20 || t.iter().any(|t| t.is_empty() || t.len() > 128)) {
        return Err(UnkeyError::field("tags", "must be at most 20 tags of 1 to 128 characters"));
    }
    for (i, r) in b.ratelimits.iter().flatten().enumerate() {
        if r.cost.is_some_and(|c| c != 1) || r.limit.is_some() || r.duration.is_some() {
            return Err(UnkeyError::field(
                &format!("ratelimits[{i}]"),
                "may only name the key's rate limit: a Keyroll key has one, costing 1 per verification",
            ));
        }
    }
    let query = match b.permissions.as_deref() {
        Some(q) => Some(ScopeQuery::parse(q).map_err(|e| UnkeyError::QuerySyntax(format!("permissions {e}")))?),
        None => None,
    };
    let cost = match &b.credits {
        None => 1,
        Some(c) => u64::try_from(c.cost)
            .ok()
            .filter(|c| i64::try_from(*c).is_ok_and(|c| c <= verify::MAX_COST))
            .ok_or_else(|| UnkeyError::field("credits.cost", format!("must be from 0 to {}", verify::MAX_COST)))?,
    };
    Ok((query, cost))
}

pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: UnkeyRoot,
    body: UnkeyBody<VerifyKey>,
) -> Answer {
    let started = Instant::now();
    root.require(Permission::KeysRead)?;
    let b = body.0;
    let (query, cost) = check_verify(&b)?;
    let spaces = b.keyspaces.as_deref().unwrap_or_default();
    let apis: Vec<ApiId> = spaces.iter().filter_map(|s| ApiId::parse(s).ok()).collect();
    if !spaces.is_empty() && apis.is_empty() {
        // No keyspace named can hold the key.
        return Ok(ok(&json!({ "valid": false, "code": "NOT_FOUND" })));
    }
    let input = VerifyInput {
        key: &b.key,
        apis: &apis,
        tenant_id: Some(root.0.tenant_id.as_str()),
        scopes: &[],
        query: query.as_ref(),
        ip: crate::http::client_ip::client_ip(&req),
        cost,
    };
    let verdict =
        verify::verify(&state.cache, &state.db, &state.usage, &state.limiter, &state.credits, &state.legacy, &input)
            .await?;
    state.metrics.verified(verdict.code, started.elapsed());
    let code = unkey_code(verdict.code);
    let Some(rec) = verdict.record.as_ref().filter(|_| code != "NOT_FOUND") else {
        return Ok(ok(&json!({ "valid": false, "code": "NOT_FOUND" })));
    };
    let d = &rec.data;
    let mut data = json!({
        "valid": verdict.code == Code::Valid,
        "code": code,
        "keyId": d.id,
        "keyspaceId": d.api_id,
        "meta": d.meta,
        "enabled": d.enabled,
        "permissions": d.scopes,
    });
    if let Some(name) = &d.name {
        data["name"] = json!(name);
    }
    if let Some(end) = ends_at(d.expires_at, d.grace_ends_at) {
        data["expires"] = json!(ms(end));
    }
    if let Some(remaining) = verdict.credits {
        data["credits"] = json!(remaining);
    }
    if let Some(c) = &d.consumer
        && let Some(identity) = Identity::of(&c.id, &c.external_id, &c.meta)
    {
        data["identity"] = json!(identity);
    }
    if let (Some(rl), Some(limit)) = (&verdict.ratelimit, d.ratelimit) {
        let name = b.ratelimits.as_ref().and_then(|r| r.first()).map_or(RATELIMIT_NAME, |r| r.name.as_str());
        data["ratelimits"] = json!([{
            "exceeded": !rl.allowed, "id": format!("{}.{RATELIMIT_NAME}", d.lineage_id), "name": name,
            "limit": rl.limit, "duration": u64::from(limit.window_seconds) * 1_000, "reset": rl.reset_at_ms,
            "remaining": rl.remaining, "autoApply": true,
        }]);
    }
    Ok(ok(&data))
}

/// `POST /v2/keys.rerollKey`: a rotation whose overlap is `expiration` milliseconds (0 ends the
/// old key now; `null` keeps it as long as the rotation rules allow, or to its own expiry).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RerollKey {
    pub key_id: String,
    pub expiration: Option<i64>,
}

pub async fn reroll(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<RerollKey>) -> Answer {
    root.require(Permission::KeysRotate)?;
    let b = body.0;
    let current = live_key(&state, &root.0.tenant_id, &b.key_id).await?;
    let overlap = match b.expiration {
        Some(ms) if ms < 0 => return Err(UnkeyError::field("expiration", "must be 0 or more milliseconds")),
        // Whole seconds, rounded up: the old key never ends before the time asked.
        Some(ms) => ms / 1_000 + i64::from(ms % 1_000 != 0),
        None => {
            let longest = app::rotation::rules_for(&state.db, &current).await?.max_overlap.num_seconds();
            let left = current.expires_at.map_or(longest, |t| (t - Utc::now()).num_seconds().max(0));
            longest.min(left)
        }
    };
    let input = RotateInput { overlap_seconds: Some(overlap), ..RotateInput::new(Trigger::Api) };
    let rotated = app::rotation::rotate_key(&root.0.ctx(&state), &b.key_id, false, input)
        .await
        .map_err(|e| UnkeyError::from_service(e, NotFound::Key))?;
    Ok(ok(&json!({ "keyId": rotated.key.id, "key": rotated.secret.expose() })))
}

/// `POST /v2/keys.getKey`. Keyroll keeps no plaintext, so `decrypt` never adds one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetKey {
    pub key_id: String,
    pub decrypt: Option<bool>,
}

pub async fn get(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<GetKey>) -> Answer {
    root.require(Permission::KeysRead)?;
    let k = live_key(&state, &root.0.tenant_id, &body.0.key_id).await?;
    key_answer(&state, &root.0.tenant_id, &k).await
}

/// `POST /v2/keys.whoami`: the key behind a secret.
#[derive(Debug, Deserialize)]
pub struct Whoami {
    pub key: String,
}

pub async fn whoami(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<Whoami>) -> Answer {
    root.require(Permission::KeysRead)?;
    let secret = body.0.key;
    // Root keys are not API keys; a key that starts like ours but does not hold is no key.
    // Imported keys of other formats are looked up like any other.
    match ApiKey::check(&secret) {
        Ok(false) => {}
        Err(_) if !ApiKey::has_our_head(&secret) => {}
        _ => return Err(key_not_found()),
    }
    let tenant = &root.0.tenant_id;
    let k = match store::keys::find_by_hash(&state.db, &KeyHash::of(&secret)).await? {
        Some(k) if k.tenant_id == tenant.as_str() && !k.is_root && k.revoked_at.is_none() => k,
        _ => return Err(key_not_found()),
    };
    key_answer(&state, tenant, &k).await
}

/// `POST /v2/keys.updateKey`: absent fields stay, `null` clears.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKey {
    pub key_id: String,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub meta: Option<Option<Value>>,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub expires: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub credits: Option<Option<CreditsIn>>,
    pub ratelimits: Option<Vec<RatelimitIn>>,
    pub enabled: Option<bool>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
}

pub async fn update(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<UpdateKey>) -> Answer {
    root.require(Permission::KeysWrite)?;
    let b = body.0;
    let tenant = &root.0.tenant_id;
    let k = live_key(&state, tenant, &b.key_id).await?;
    no_roles(b.roles.as_ref())?;
    if let Some(wanted) = &b.external_id {
        let owner = match k.consumer_id.as_deref().map(ConsumerId::parse) {
            Some(Ok(id)) => Some(store::consumers::get(&state.db, tenant, &id).await?.external_id),
            _ => None,
        };
        let same = match wanted {
            Some(x) => owner.as_deref() == Some(x.as_str()),
            None => owner.as_deref() == Some(UNASSIGNED),
        };
        if !same {
            return Err(UnkeyError::field(
                "externalId",
                "cannot change: a Keyroll key stays with its consumer; create a key for the other one",
            ));
        }
    }
    let credits = match &b.credits {
        None => None,
        Some(None) => Some(None),
        Some(Some(c)) if c.remaining.is_none() && c.refill.is_none() => None,
        Some(Some(c)) if c.remaining.is_none() => {
            return Err(UnkeyError::field("credits.remaining", "is required with a refill"));
        }
        Some(Some(c)) => Some(c.to_credits()?),
    };
    let changes = KeyChanges {
        name: b.name,
        scopes: b.permissions,
        meta: b.meta.map(|m| m.unwrap_or_else(|| json!({}))),
        enabled: b.enabled,
        expires_at: b.expires.map(|e| e.map(|t| time_of("expires", t)).transpose()).transpose()?,
        ratelimit: b.ratelimits.as_deref().map(ratelimit_of).transpose()?,
        credits,
        ip_allowlist: None,
    };
    app::keys::update(&root.0.ctx(&state), &b.key_id, changes)
        .await
        .map_err(|e| UnkeyError::from_service(e, NotFound::Key))?;
    Ok(ok(&json!({})))
}

/// `POST /v2/keys.deleteKey`: the key is revoked on every node; Keyroll keeps its row for the
/// audit trail, `permanent` or not.
#[derive(Debug, Deserialize)]
pub struct DeleteKey {
    #[serde(rename = "keyId")]
    pub key_id: String,
    pub permanent: Option<bool>,
}

pub async fn delete(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<DeleteKey>) -> Answer {
    root.require(Permission::KeysWrite)?;
    let id = body.0.key_id;
    live_key(&state, &root.0.tenant_id, &id).await?;
    app::keys::revoke(&root.0.ctx(&state), &id, "deleted through the Unkey-compatible API")
        .await
        .map_err(|e| UnkeyError::from_service(e, NotFound::Key))?;
    Ok(ok(&json!({})))
}

/// `POST /v2/apis.listKeys`: the API's keys that are not revoked, newest first.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListKeys {
    pub api_id: String,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub external_id: Option<String>,
    pub decrypt: Option<bool>,
    pub revalidate_keys_cache: Option<bool>,
}

pub async fn list(state: web::Data<AppState>, root: UnkeyRoot, body: UnkeyBody<ListKeys>) -> Answer {
    root.require(Permission::KeysRead)?;
    let b = body.0;
    let tenant = &root.0.tenant_id;
    let api = api_of(&state, tenant, &b.api_id).await?;
    let limit = match b.limit {
        None => 100,
        Some(n) => u64::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| UnkeyError::field("limit", "must be from 1 to 100"))?,
    };
    let cursor = b.cursor.as_deref().map(Cursor::decode).transpose().map_err(|m| UnkeyError::field("cursor", m))?;
    let consumer_id = match &b.external_id {
        None => None,
        Some(x) => match store::consumers::by_external_id(&state.db, tenant, x).await? {
            Some(c) => Some(ConsumerId::from_trusted(c.id)),
            None => {
                return Ok(HttpResponse::Ok().json(json!({
                    "meta": super::Meta { request_id: crate::http::request_id::current() },
                    "data": [], "pagination": { "hasMore": false },
                })));
            }
        },
    };
    let filter =
        KeyFilter { api_id: Some(ApiId::from_trusted(api.id)), consumer_id, unrevoked: true, ..KeyFilter::default() };
    let page = store::keys::list(&state.db, tenant, &filter, limit, cursor.as_ref()).await?;
    let extras = extras(&state, tenant, &page.items).await?;
    let data: Vec<KeyData> = page.items.iter().map(|k| KeyData::of(k, &extras)).collect();
    let mut pagination = json!({ "hasMore": page.next_cursor.is_some() });
    if let Some(c) = page.next_cursor {
        pagination["cursor"] = json!(c);
    }
    Ok(HttpResponse::Ok().json(json!({
        "meta": super::Meta { request_id: crate::http::request_id::current() },
        "data": data,
        "pagination": pagination,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_unkey_code() {
        for c in Code::ALL {
            let u = unkey_code(c);
            assert!(
                [
                    "VALID",
                    "NOT_FOUND",
                    "EXPIRED",
                    "DISABLED",
                    "INSUFFICIENT_PERMISSIONS",
                    "FORBIDDEN",
                    "RATE_LIMITED",
                    "USAGE_EXCEEDED"
                ]
                .contains(&u)
            );
        }
        assert_eq!(unkey_code(Code::Revoked), "NOT_FOUND");
    }
}

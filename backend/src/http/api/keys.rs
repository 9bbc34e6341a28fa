//! `/v1/keys`: key versions of the tenant's APIs.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::views::{Checks, CreateKey, CreatedKey, KeyList, KeyView, PatchKey, RevokeKey};
use crate::app::{self, keys::KeyChanges, keys::NewKeyInput};
use crate::domain::{ApiId, ConsumerId, KeyId, KeyState};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::keys::{self as store, KeyFilter};

pub(crate) fn parse_id(s: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(s).map_err(|_| ApiError::NotFound("no such key"))
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
    let b = body.value;
    let input = NewKeyInput {
        api_id: b.api_id,
        consumer_id: b.consumer_id,
        name: b.name,
        scopes: b.scopes.unwrap_or_default(),
        meta: b.meta,
        enabled: b.enabled,
        expires_at: b.expires_at,
        ratelimit: b.ratelimit.map(Into::into),
        credits: b.credits.map(Into::into),
        ip_allowlist: b.ip_allowlist,
    };
    let ctx = root.ctx(&state);
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let created = app::keys::create(&ctx, input).await?;
        let created = CreatedKey { key: created.key.into(), secret: created.secret.expose().to_owned() };
        Ok((StatusCode::CREATED, serde_json::to_value(created).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// Filters of the key list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    pub api_id: Option<String>,
    pub consumer_id: Option<String>,
    pub lineage_id: Option<String>,
    /// `valid`, `superseded`, `expired`, `disabled` or `revoked`.
    pub state: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

/// List keys (never secrets), newest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<KeyList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
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
        unrevoked: false,
        root: false,
        search: None,
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
    root.require(crate::app::Permission::KeysRead)?;
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
    let b = body.value;
    let changes = KeyChanges {
        name: b.name,
        scopes: b.scopes,
        meta: b.meta,
        enabled: b.enabled,
        expires_at: b.expires_at,
        ratelimit: b.ratelimit.map(|r| r.map(Into::into)),
        credits: b.credits.map(|c| c.map(Into::into)),
        ip_allowlist: b.ip_allowlist,
    };
    Ok(web::Json(app::keys::update(&root.ctx(&state), &id, changes).await?.into()))
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
    Ok(web::Json(app::keys::revoke(&root.ctx(&state), &id, &body.value.reason).await?.into()))
}

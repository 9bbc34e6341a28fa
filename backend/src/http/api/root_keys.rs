//! `/v1/root-keys`: the tenant's management credentials, keys of its system API.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::views::{CreateRootKey, CreatedKey, KeyList, KeyView, RevokeKey};
use crate::app;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::keys::{self as store, KeyFilter};

/// Create a root key. Its scopes cannot exceed those of the key that creates it.
#[utoipa::path(post, path = "/v1/root-keys", tag = "root-keys", request_body = CreateRootKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = CreatedKey), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateRootKey>,
) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let ctx = root.ctx(&state);
    let input = app::root_keys::NewRootKey { name: b.name, scopes: b.scopes, expires_at: b.expires_at };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let created = app::root_keys::create(&ctx, input).await?;
        let created = CreatedKey { key: created.key.into(), secret: created.secret.expose().to_owned() };
        Ok((StatusCode::CREATED, serde_json::to_value(created).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// List root keys (never secrets).
#[utoipa::path(get, path = "/v1/root-keys", tag = "root-keys", params(PageQuery),
    responses((status = 200, body = KeyList), (status = 403, body = Problem)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<KeyList>, ApiError> {
    root.require(crate::app::Permission::RootKeys)?;
    let (limit, cursor) = query::<PageQuery>(&req)?.parse()?;
    let filter = KeyFilter { root: true, ..KeyFilter::default() };
    let page = store::list(&state.db, &root.tenant_id, &filter, limit, cursor.as_ref()).await?;
    Ok(web::Json(KeyList::from_page(page)))
}

/// Revoke a root key now, on every node.
#[utoipa::path(post, path = "/v1/root-keys/{id}/revoke", tag = "root-keys", params(("id" = String, Path)),
    request_body = RevokeKey,
    responses((status = 200, body = KeyView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<RevokeKey>,
) -> Result<web::Json<KeyView>, ApiError> {
    Ok(web::Json(app::root_keys::revoke(&root.ctx(&state), &id, &body.value.reason).await?.into()))
}

//! `/v1/root-keys`: the tenant's management credentials, keys of its system API.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::keys::{future, revoke_one};
use super::views::{Checks, CreateRootKey, CreatedKey, KeyList, KeyView, RevokeKey};
use crate::domain::{ApiId, KeyHead, ScopeSet};
use crate::http::auth::{ROOT_SCOPES, Root};
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::apis;
use crate::store::keys::{self as store, KeyFilter, NewKey};

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
    root.require("*")?;
    let b = body.value;
    let mut c = Checks::default();
    let name = c.optional_name(b.name.as_deref());
    for (i, s) in b.scopes.iter().enumerate() {
        if s != "*" && !ROOT_SCOPES.contains(&s.as_str()) {
            c.push(format!("scopes[{i}]"), format!("must be * or one of {}", ROOT_SCOPES.join(", ")));
        }
    }
    if b.scopes.is_empty() {
        c.push("scopes", "must name at least one scope");
    }
    let expires_at = future(&mut c, "expires_at", b.expires_at);
    c.finish()?;
    let Some(name) = name else { return Err(ApiError::field("name", "is invalid")) };
    let scopes =
        ScopeSet::parse_all(&b.scopes).map_err(|(i, e)| ApiError::field(format!("scopes[{i}]"), e.to_string()))?;
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let system = apis::system(&state.db, &root.tenant_id).await?;
        let new = NewKey::root(
            root.tenant_id.clone(),
            ApiId::from_trusted(system.id),
            name,
            scopes,
            expires_at,
            Some(root.actor()),
        );
        let (model, secret) = super::keys::insert_audited(&state.db, new, &KeyHead::Root).await?;
        state.cache.announce_created(&[secret.hash()]).await;
        let created = CreatedKey { key: model.into(), secret: secret.expose().to_owned() };
        Ok((StatusCode::CREATED, serde_json::to_value(created).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// List root keys (never secrets).
#[utoipa::path(get, path = "/v1/root-keys", tag = "root-keys", params(PageQuery),
    responses((status = 200, body = KeyList), (status = 403, body = Problem)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<KeyList>, ApiError> {
    root.require("*")?;
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
    root.require("*")?;
    revoke_one(&state, &root.tenant_id, &root.actor(), &id, &body.value.reason, true).await.map(web::Json)
}

//! `/v1/apis`: keyspaces.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::views::{ApiList, ApiView, CreateApi, PatchApi};
use crate::app;
use crate::domain::ApiId;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::apis;

pub(crate) fn parse_id(s: &str) -> Result<ApiId, ApiError> {
    ApiId::parse(s).map_err(|_| ApiError::NotFound("no such API"))
}

/// Create an API.
#[utoipa::path(post, path = "/v1/apis", tag = "apis", request_body = CreateApi,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = ApiView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateApi>,
) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let ctx = root.ctx(&state);
    let input = app::apis::NewApiInput {
        name: b.name,
        key_prefix: b.key_prefix,
        environment: b.environment,
        scope_catalogue: b.scope_catalogue,
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let api = app::apis::create(&ctx, input).await?;
        Ok((StatusCode::CREATED, serde_json::to_value(ApiView::from(api)).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// List APIs, newest first.
#[utoipa::path(get, path = "/v1/apis", tag = "apis", params(PageQuery),
    responses((status = 200, body = ApiList), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<ApiList>, ApiError> {
    root.require(crate::app::Permission::ApisRead)?;
    let (limit, cursor) = query::<PageQuery>(&req)?.parse()?;
    let page = apis::list(&state.db, &root.tenant_id, limit, cursor.as_ref()).await?;
    Ok(web::Json(ApiList::from_page(page)))
}

/// Read an API.
#[utoipa::path(get, path = "/v1/apis/{id}", tag = "apis", params(("id" = String, Path)),
    responses((status = 200, body = ApiView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<ApiView>, ApiError> {
    root.require(crate::app::Permission::ApisRead)?;
    let api = apis::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?;
    Ok(web::Json(api.into()))
}

/// Update an API's name, scope catalogue or default rate limit.
#[utoipa::path(patch, path = "/v1/apis/{id}", tag = "apis", params(("id" = String, Path)), request_body = PatchApi,
    responses((status = 200, body = ApiView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PatchApi>,
) -> Result<web::Json<ApiView>, ApiError> {
    let b = body.value;
    let changes = app::apis::ApiChanges {
        name: b.name,
        scope_catalogue: b.scope_catalogue,
        default_ratelimit: b.default_ratelimit.map(|r| r.map(Into::into)),
        leak_policy: b
            .leak_policy
            .map(|lp| app::apis::LeakPolicyInput { action: lp.action, grace_seconds: lp.grace_seconds }),
        token_ttl_seconds: b.token_ttl_seconds,
        stripe_meter_event: b.stripe_meter_event,
        gateway: b.gateway,
        legacy_key_formats: b.legacy_key_formats,
    };
    Ok(web::Json(app::apis::update(&root.ctx(&state), &id, changes).await?.into()))
}

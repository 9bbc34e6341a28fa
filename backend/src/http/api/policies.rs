//! `/v1/policies`: rotation policies per API, with per-consumer overrides.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app;
use crate::domain::PolicyId;
use crate::domain::policy::Schedule;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::entities::rotation_policy;
use crate::store::policies;

pub use crate::app::policies::PolicyBody;

/// A rotation policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub id: String,
    pub api_id: String,
    pub consumer_id: Option<String>,
    pub interval_days: Option<i64>,
    pub cron: Option<String>,
    pub window_seconds: i64,
    pub overlap_seconds: i64,
    pub notice_seconds: Vec<i64>,
    pub retire_mode: String,
    pub max_active: i32,
    pub on_full: String,
    pub delivery: String,
    pub enabled: bool,
    /// When a key issued now would be rotated under this policy.
    pub next_rotation_preview: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<rotation_policy::Model> for PolicyView {
    fn from(p: rotation_policy::Model) -> Self {
        let preview = Schedule::parse(p.interval_days, p.cron.as_deref(), TimeDelta::seconds(p.window_seconds))
            .ok()
            .and_then(|s| s.next_due(Utc::now()));
        Self {
            id: p.id,
            api_id: p.api_id,
            consumer_id: p.consumer_id,
            interval_days: p.interval_days,
            cron: p.cron,
            window_seconds: p.window_seconds,
            overlap_seconds: p.overlap_seconds,
            notice_seconds: serde_json::from_value(p.notice_seconds).unwrap_or_default(),
            retire_mode: p.retire_mode,
            max_active: p.max_active,
            on_full: p.on_full,
            delivery: p.delivery,
            enabled: p.enabled,
            next_rotation_preview: preview,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A page of policies.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    pub data: Vec<PolicyView>,
    pub next_cursor: Option<String>,
}

fn parse_id(s: &str) -> Result<PolicyId, ApiError> {
    PolicyId::parse(s).map_err(|_| ApiError::NotFound("no such policy"))
}

/// Create a rotation policy for an API, or a consumer's override of it.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = PolicyBody,
    responses((status = 201, body = PolicyView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let ctx = root.ctx(&state);
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let saved = app::policies::create(&ctx, &body.value).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(PolicyView::from(saved)).map_err(|e| ApiError::Internal(e.into()))?,
        ))
    })
    .await
}

/// List rotation policies.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(PageQuery),
    responses((status = 200, body = PolicyList)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<PolicyList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let (limit, cursor) = query::<PageQuery>(&req)?.parse()?;
    let page = policies::list(&state.db, &root.tenant_id, limit, cursor.as_ref()).await?;
    Ok(web::Json(PolicyList { data: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Read a rotation policy.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)),
    responses((status = 200, body = PolicyView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<PolicyView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    Ok(web::Json(policies::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?.into()))
}

/// Change a rotation policy (its API and consumer stay).
#[utoipa::path(patch, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)), request_body = PolicyBody,
    responses((status = 200, body = PolicyView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PolicyBody>,
) -> Result<web::Json<PolicyView>, ApiError> {
    Ok(web::Json(app::policies::update(&root.ctx(&state), &id, &body.value).await?.into()))
}

/// Delete a rotation policy (keys are no longer rotated by it).
#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    app::policies::delete(&root.ctx(&state), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

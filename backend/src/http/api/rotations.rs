//! Rotation: `POST /v1/keys/{id}/rotate`, `POST /v1/root-keys/{id}/rotate`, and `/v1/rotations`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::KeyView;
use crate::app::rotation::progress::{Progress, progress};
use crate::app::rotation::{self, RotateInput};
use crate::domain::rotation::{RotationState, Trigger};
use crate::domain::{KeyId, RotationId, TenantId};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::entities::rotation as rotation_entity;
use crate::store::{apis, keys, rotations};

pub use crate::app::rotation::DEFAULT_OVERLAP_SECONDS;

/// `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the current version stays valid beside the new one (default 86400; 0 ends it now).
    pub overlap_seconds: Option<i64>,
    /// Scopes of the new version (default: the current version's).
    pub scopes: Option<Vec<String>>,
    /// Metadata of the new version (default: the current version's).
    pub meta: Option<serde_json::Value>,
    /// `at_deadline` (default) or `when_drained`.
    pub retire_mode: Option<String>,
    /// The new version's expiry (default: the current version's, so a rotation never turns an
    /// expiring key into a permanent one); `null` for none.
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// `POST /v1/rotations/{id}/extend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub grace_ends_at: DateTime<Utc>,
}

/// A rotation and its migration progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationView {
    pub id: String,
    pub lineage_id: String,
    pub from_key_id: String,
    pub to_key_id: String,
    /// `manual`, `policy`, `self_service`, `playbook` or `api`.
    pub trigger: String,
    pub actor: Option<String>,
    pub retire_mode: String,
    pub compromise: bool,
    /// `in_progress`, `completed`, `rolled_back` or `cancelled`.
    pub state: String,
    pub reason: Option<String>,
    pub started_at: DateTime<Utc>,
    pub grace_ends_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub progress: Option<Progress>,
}

/// A page of rotations.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationList {
    pub data: Vec<RotationView>,
    pub next_cursor: Option<String>,
}

/// A new version, its secret (shown once) and the rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedView {
    pub key: KeyView,
    pub secret: String,
    pub rotation: RotationView,
}

impl RotationView {
    /// The record as of now, with its progress when computed.
    #[must_use]
    pub fn from_model(r: rotation_entity::Model, progress: Option<Progress>) -> Self {
        Self {
            state: rotation::effective_state(&r, Utc::now()).as_str().to_owned(),
            id: r.id,
            lineage_id: r.lineage_id,
            from_key_id: r.from_key_id,
            to_key_id: r.to_key_id,
            trigger: r.trigger,
            actor: r.actor,
            retire_mode: r.retire_mode,
            compromise: r.compromise,
            reason: r.reason,
            started_at: r.started_at,
            grace_ends_at: r.grace_ends_at,
            ended_at: r.ended_at,
            progress,
        }
    }
}

async fn view(
    state: &AppState,
    tenant: &TenantId,
    r: rotation_entity::Model,
    with_progress: bool,
) -> Result<RotationView, ApiError> {
    let progress = if with_progress {
        let from = keys::get_any(&state.db, tenant, &KeyId::from_trusted(r.from_key_id.clone())).await?;
        let to = keys::get_any(&state.db, tenant, &KeyId::from_trusted(r.to_key_id.clone())).await?;
        Some(progress(&state.db, &r, &from, &to).await?)
    } else {
        None
    };
    Ok(RotationView::from_model(r, progress))
}

fn parse_rotation_id(s: &str) -> Result<RotationId, ApiError> {
    RotationId::parse(s).map_err(|_| ApiError::NotFound("no such rotation"))
}

async fn rotate_any(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: &str,
    body: Body<RotateBody>,
    is_root: bool,
) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let input = RotateInput {
        overlap_seconds: b.overlap_seconds,
        scopes: b.scopes,
        meta: b.meta,
        retire_mode: b.retire_mode,
        expires_at: b.expires_at,
        trigger: Trigger::Api,
    };
    let ctx = root.ctx(&state);
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let rotated = rotation::rotate_key(&ctx, id, is_root, input).await?;
        let out = RotatedView {
            rotation: view(&state, &root.tenant_id, rotated.rotation, false).await?,
            key: rotated.key.into(),
            secret: rotated.secret.expose().to_owned(),
        };
        Ok((StatusCode::CREATED, serde_json::to_value(out).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// Rotate a key: a new version in the same lineage, the current one valid beside it until the
/// end of the overlap window.
#[utoipa::path(post, path = "/v1/keys/{id}/rotate", tag = "rotations", params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    request_body = RotateBody,
    responses((status = 201, body = RotatedView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "In grace, revoked, or the lineage is full")),
    security(("root_key" = [])))]
pub async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
    body: Body<RotateBody>,
) -> Result<HttpResponse, ApiError> {
    root.require(crate::app::Permission::KeysRotate)?;
    rotate_any(state, req, root, &id, body, false).await
}

/// Rotate a root key, with the same overlap rules as any key.
#[utoipa::path(post, path = "/v1/root-keys/{id}/rotate", tag = "root-keys", params(("id" = String, Path)),
    request_body = RotateBody,
    responses((status = 201, body = RotatedView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn rotate_root_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
    body: Body<RotateBody>,
) -> Result<HttpResponse, ApiError> {
    root.require(crate::app::Permission::RootKeys)?;
    rotate_any(state, req, root, &id, body, true).await
}

/// Filters of the rotation list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotationQuery {
    /// `in_progress`, `completed`, `rolled_back` or `cancelled`.
    pub state: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

/// List rotations, newest first.
#[utoipa::path(get, path = "/v1/rotations", tag = "rotations", params(RotationQuery),
    responses((status = 200, body = RotationList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
) -> Result<web::Json<RotationList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let q = query::<RotationQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let st = match q.state.as_deref() {
        Some(s) => Some(
            RotationState::parse(s)
                .ok_or_else(|| ApiError::field("state", "must be in_progress, completed, rolled_back or cancelled"))?,
        ),
        None => None,
    };
    let page = rotations::list(&state.db, &root.tenant_id, st, limit, cursor.as_ref()).await?;
    let mut data = Vec::with_capacity(page.items.len());
    for r in page.items {
        data.push(view(&state, &root.tenant_id, r, false).await?);
    }
    Ok(web::Json(RotationList { data, next_cursor: page.next_cursor }))
}

/// A rotation with its migration progress.
#[utoipa::path(get, path = "/v1/rotations/{id}", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = RotationView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RotationView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let r = rotations::get(&state.db, &root.tenant_id, &parse_rotation_id(&id)?).await?;
    Ok(web::Json(view(&state, &root.tenant_id, r, true).await?))
}

/// Retire the old version now.
#[utoipa::path(post, path = "/v1/rotations/{id}/complete", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = RotationView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn complete(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RotationView>, ApiError> {
    let r = rotation::complete(&root.ctx(&state), &parse_rotation_id(&id)?).await?;
    Ok(web::Json(view(&state, &root.tenant_id, r, true).await?))
}

/// Undo: the old version becomes current again and the new one is revoked (refused for
/// rotations caused by a compromise).
#[utoipa::path(post, path = "/v1/rotations/{id}/rollback", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = RotationView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn rollback(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RotationView>, ApiError> {
    let r = rotation::rollback(&root.ctx(&state), &parse_rotation_id(&id)?).await?;
    Ok(web::Json(view(&state, &root.tenant_id, r, true).await?))
}

/// Move the end of the overlap window, within the policy's limit and the old key's expiry.
#[utoipa::path(post, path = "/v1/rotations/{id}/extend", tag = "rotations", params(("id" = String, Path)),
    request_body = ExtendBody,
    responses((status = 200, body = RotationView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn extend(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<ExtendBody>,
) -> Result<web::Json<RotationView>, ApiError> {
    let r = rotation::extend(&root.ctx(&state), &parse_rotation_id(&id)?, body.value.grace_ends_at).await?;
    Ok(web::Json(view(&state, &root.tenant_id, r, true).await?))
}

/// `POST /v1/rotations/bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    pub api_id: String,
    #[serde(default)]
    pub filter: crate::app::rotation::bulk::BulkFilter,
    /// Overlap of every old version (default 86400; 0 ends them at once).
    pub overlap_seconds: Option<i64>,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
    /// The keys are compromised: their rotations cannot be rolled back.
    #[serde(default)]
    pub compromise: bool,
}

/// A dry run's report, or the job that does the work.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkAnswer {
    pub dry_run: bool,
    #[serde(flatten)]
    pub plan: crate::app::rotation::bulk::BulkPlan,
    /// The job running the rotation (follow it at `/v1/jobs/{id}`).
    pub job_id: Option<String>,
}

/// Rotate every current key of an API that matches the filter (incident response). With
/// `dry_run` only counts what would change; otherwise starts a tracked job.
#[utoipa::path(post, path = "/v1/rotations/bulk", tag = "rotations", request_body = BulkBody,
    responses((status = 200, body = BulkAnswer, description = "Dry run"), (status = 202, body = BulkAnswer),
        (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn bulk(state: web::Data<AppState>, root: Root, body: Body<BulkBody>) -> Result<HttpResponse, ApiError> {
    root.require(crate::app::Permission::KeysRotate)?;
    let b = body.value;
    let api = apis::get(&state.db, &root.tenant_id, &super::apis::parse_id(&b.api_id)?).await?;
    let overlap = b.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if !(0..=30 * 86_400).contains(&overlap) {
        return Err(ApiError::field("overlap_seconds", "must be between 0 and 2592000"));
    }
    if let Some(c) = &b.filter.consumer_id {
        super::consumers::parse_id(c).map_err(|_| ApiError::field("filter.consumer_id", "must be a consumer id"))?;
    }
    let plan = crate::app::rotation::bulk::plan(&state.db, &root.tenant_id, &api.id, &b.filter).await?;
    if b.dry_run {
        return Ok(HttpResponse::Ok().json(BulkAnswer { dry_run: true, plan, job_id: None }));
    }
    let req = crate::app::rotation::bulk::BulkRequest {
        tenant_id: root.tenant_id.as_str().to_owned(),
        api_id: api.id,
        filter: b.filter,
        overlap_seconds: overlap,
        compromise: b.compromise,
        actor: root.actor().to_string(),
        as_of: Utc::now(),
        playbook: false,
    };
    let job_id = crate::app::rotation::bulk::start(&root.ctx(&state), &req, &plan).await?;
    Ok(HttpResponse::Accepted().json(BulkAnswer { dry_run: false, plan, job_id }))
}

/// A tracked job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    /// `{"done": n, "total": m}` for bulk work.
    pub progress: serde_json::Value,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A job of this tenant, with its progress.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "rotations", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn job(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<JobView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let id = crate::domain::JobId::parse(&id).map_err(|_| ApiError::NotFound("no such job"))?;
    let j = crate::store::jobs::get(&state.db, id.as_str()).await?;
    if j.tenant_id.as_deref() != Some(root.tenant_id.as_str()) {
        return Err(ApiError::NotFound("no such job"));
    }
    Ok(web::Json(JobView {
        id: j.id,
        kind: j.kind,
        state: j.state,
        progress: j.progress,
        attempts: j.attempts,
        last_error: j.last_error,
        created_at: j.created_at,
        updated_at: j.updated_at,
    }))
}

//! `/v1/policies`: rotation policies per API, with per-consumer overrides.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::Checks;
use super::{apis, consumers};
use crate::domain::policy::Schedule;
use crate::domain::rotation::RetireMode;
use crate::domain::{PolicyId, TenantId};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::{Body, double_option};
use crate::http::pagination::{PageQuery, query};
use crate::rotation::Handoff;
use crate::state::AppState;
use crate::store::entities::rotation_policy;
use crate::store::{StoreError, policies};

const DAY: i64 = 86_400;

/// `POST /v1/policies` (and, all optional, `PATCH`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub api_id: Option<String>,
    /// Set for a consumer's override of the API's policy.
    pub consumer_id: Option<String>,
    /// Rotate every N days (1–3650) …
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<i64>)]
    pub interval_days: Option<Option<i64>>,
    /// … or at each occurrence of a cron expression (UTC).
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub cron: Option<Option<String>>,
    /// With `cron`: how long after an occurrence a rotation may still start (default 3600).
    pub window_seconds: Option<i64>,
    /// Overlap of old and new version (default 86400; at least 1800 and shorter than the period).
    pub overlap_seconds: Option<i64>,
    /// Advance notices before each rotation (default `[1209600, 86400]`: 14 days and 1 day).
    pub notice_seconds: Option<Vec<i64>>,
    /// `at_deadline` (default) or `when_drained`.
    pub retire_mode: Option<String>,
    /// Versions of one lineage valid at once (1–10, default 2).
    pub max_active: Option<i32>,
    /// At `max_active`: `end_oldest` (default) or `refuse`.
    pub on_full: Option<String>,
    /// How the consumer gets the new key: `pickup` (the default: fetched with the current key,
    /// `POST /v1/self/pickup`) or `webhook` (in the `rotation.started` webhook to the consumer's
    /// own endpoints; fetched as with `pickup` until one of them accepts it).
    pub delivery: Option<String>,
    pub enabled: Option<bool>,
}

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

/// A policy with the defaults, before a body is applied.
pub(crate) fn new_policy(tenant: &TenantId, api_id: String, consumer_id: Option<String>) -> rotation_policy::Model {
    let now = Utc::now();
    rotation_policy::Model {
        id: PolicyId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        api_id,
        consumer_id,
        interval_days: None,
        cron: None,
        window_seconds: 3_600,
        overlap_seconds: DAY,
        notice_seconds: serde_json::json!([14 * DAY, DAY]),
        retire_mode: "at_deadline".into(),
        max_active: 2,
        on_full: "end_oldest".into(),
        delivery: "pickup".into(),
        enabled: true,
        created_at: now,
        updated_at: now,
    }
}

/// Applies a body onto a policy and checks the result as a whole.
pub(crate) fn apply(p: &mut rotation_policy::Model, b: &PolicyBody, master_key: bool) -> Result<(), ApiError> {
    let mut c = Checks::default();
    if let Some(v) = b.interval_days {
        p.interval_days = v;
    }
    if let Some(v) = &b.cron {
        p.cron.clone_from(v);
    }
    if let Some(v) = b.window_seconds {
        if (0..=7 * DAY).contains(&v) {
            p.window_seconds = v
        } else {
            c.push("window_seconds", "must be between 0 and 604800")
        }
    }
    if let Some(v) = b.overlap_seconds {
        p.overlap_seconds = v;
    }
    if let Some(v) = &b.notice_seconds {
        if v.len() > 10 {
            c.push("notice_seconds", "must have at most 10 lead times");
        }
        for (i, s) in v.iter().enumerate() {
            if !(60..=365 * DAY).contains(s) {
                c.push(format!("notice_seconds[{i}]"), "must be between 60 and 31536000");
            }
        }
        p.notice_seconds = serde_json::json!(v);
    }
    if let Some(v) = &b.retire_mode {
        if RetireMode::parse(v).is_some() {
            p.retire_mode.clone_from(v)
        } else {
            c.push("retire_mode", "must be at_deadline or when_drained")
        }
    }
    if let Some(v) = b.max_active {
        if (1..=10).contains(&v) { p.max_active = v } else { c.push("max_active", "must be between 1 and 10") }
    }
    if let Some(v) = &b.on_full {
        if matches!(v.as_str(), "end_oldest" | "refuse") {
            p.on_full.clone_from(v)
        } else {
            c.push("on_full", "must be end_oldest or refuse")
        }
    }
    if let Some(v) = &b.delivery {
        if Handoff::parse(v).is_some() {
            p.delivery.clone_from(v)
        } else {
            c.push("delivery", "must be pickup or webhook")
        }
    }
    if !master_key {
        c.push("delivery", "keeping new keys for consumers needs KEYROLL_MASTER_KEY on every node");
    }
    if let Some(v) = b.enabled {
        p.enabled = v;
    }
    match Schedule::parse(p.interval_days, p.cron.as_deref(), TimeDelta::seconds(p.window_seconds)) {
        Ok(s) => {
            let period = s.period(Utc::now()).map_or(i64::MAX, |d| d.num_seconds());
            if p.overlap_seconds < 1_800 || p.overlap_seconds >= period {
                c.push("overlap_seconds", "must be at least 1800 and shorter than the time between rotations");
            }
        }
        Err(e) => {
            let field = if p.cron.is_some() && p.interval_days.is_none() { "cron" } else { "interval_days" };
            c.push(field, e.to_string());
        }
    }
    c.finish()
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
    root.require("policies:write")?;
    let b = &body.value;
    let api_id = b.api_id.as_deref().ok_or_else(|| ApiError::field("api_id", "is required"))?;
    let api = crate::store::apis::get(&state.db, &root.tenant_id, &apis::parse_id(api_id)?).await?;
    let consumer_id = match &b.consumer_id {
        Some(id) => Some(existing_consumer(&state, &root.tenant_id, id).await?),
        None => None,
    };
    let mut p = new_policy(&root.tenant_id, api.id, consumer_id);
    apply(&mut p, b, state.master_key.is_some())?;
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let saved = insert_audited(&state.db, &root.actor(), p).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(PolicyView::from(saved)).map_err(|e| ApiError::Internal(e.into()))?,
        ))
    })
    .await
}

async fn existing_consumer(state: &AppState, tenant: &TenantId, id: &str) -> Result<String, ApiError> {
    match crate::store::consumers::get(&state.db, tenant, &consumers::parse_id(id)?).await {
        Err(StoreError::NotFound) => Err(ApiError::NotFound("consumer_id names no consumer of this tenant")),
        other => Ok(other?.id),
    }
}

/// List rotation policies.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(PageQuery),
    responses((status = 200, body = PolicyList)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<PolicyList>, ApiError> {
    root.require("keys:read")?;
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
    root.require("keys:read")?;
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
    root.require("policies:write")?;
    let mut p = policies::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?;
    if body.value.api_id.is_some() || body.value.consumer_id.is_some() {
        return Err(ApiError::field("api_id", "cannot be changed; create another policy"));
    }
    apply(&mut p, &body.value, state.master_key.is_some())?;
    Ok(web::Json(save_audited(&state.db, &root.actor(), p).await?.into()))
}

/// Delete a rotation policy (keys are no longer rotated by it).
#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    root.require("policies:write")?;
    delete_audited(&state.db, &root.tenant_id, &root.actor(), &parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn audited(p: &crate::store::entities::rotation_policy::Model) -> serde_json::Value {
    serde_json::to_value(PolicyView::from(p.clone())).unwrap_or_default()
}

fn scope_of(p: &crate::store::entities::rotation_policy::Model) -> String {
    p.consumer_id.as_ref().map_or_else(|| format!("API {}", p.api_id), |c| format!("consumer {c} of API {}", p.api_id))
}

/// Saves a new policy, with its audit entry.
///
/// # Errors
/// `Conflict` when the API or consumer already has one, database errors.
pub(crate) async fn insert_audited(
    db: &sea_orm::DatabaseConnection,
    actor: &str,
    p: crate::store::entities::rotation_policy::Model,
) -> Result<crate::store::entities::rotation_policy::Model, StoreError> {
    let tenant = TenantId::from_trusted(p.tenant_id.clone());
    crate::audit::write(db, &tenant, actor, async |txn| {
        let saved = policies::insert(txn, p).await?;
        let entry = crate::audit::Entry::new(
            "policy.created",
            "policy",
            saved.id.clone(),
            format!("Created a rotation policy for the {}", scope_of(&saved)),
        )
        .with(audited(&saved));
        Ok((saved, vec![entry]))
    })
    .await
}

/// Saves a changed policy, with what changed.
///
/// # Errors
/// `NotFound`, database errors.
pub(crate) async fn save_audited(
    db: &sea_orm::DatabaseConnection,
    actor: &str,
    p: crate::store::entities::rotation_policy::Model,
) -> Result<crate::store::entities::rotation_policy::Model, StoreError> {
    let tenant = TenantId::from_trusted(p.tenant_id.clone());
    let id = parse_id(&p.id).map_err(|_| StoreError::NotFound)?;
    crate::audit::write(db, &tenant, actor, async |txn| {
        let before = policies::get(txn, &tenant, &id).await?;
        let saved = policies::save(txn, p).await?;
        let entry = crate::audit::Entry::new(
            "policy.updated",
            "policy",
            saved.id.clone(),
            format!("Changed the rotation policy of the {}", scope_of(&saved)),
        )
        .change(audited(&before), audited(&saved));
        Ok((saved, vec![entry]))
    })
    .await
}

/// Deletes a policy, recording what it was.
///
/// # Errors
/// `NotFound`, database errors.
pub(crate) async fn delete_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    id: &crate::domain::PolicyId,
) -> Result<(), StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let before = policies::get(txn, tenant, id).await?;
        policies::delete(txn, tenant, id).await?;
        let entry = crate::audit::Entry::new(
            "policy.deleted",
            "policy",
            before.id.clone(),
            format!("Deleted the rotation policy of the {}", scope_of(&before)),
        )
        .with(serde_json::json!({ "before": audited(&before) }));
        Ok(((), vec![entry]))
    })
    .await
}

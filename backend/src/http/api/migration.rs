//! The migration view: `GET /v1/apis/{id}/migration` (every rotation of an API, and its
//! stragglers) and `GET /v1/rotations/{id}/migration` (one rotation), old versus new traffic over
//! time.

use actix_web::{HttpRequest, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::usage::{Range, UsageQuery};
use crate::app::rotation::migration::{self, Point, Straggler};
use crate::app::rotation::progress::{Progress, progress};
use crate::domain::{KeyId, RotationId, TenantId};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::pagination::query;
use crate::state::AppState;
use crate::store::{keys, rotations};

/// The range, and how close a deadline makes a straggler.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MigrationQuery {
    /// RFC 3339; default: the start of the oldest rotation shown (at most 60 buckets back).
    pub from: Option<String>,
    /// RFC 3339; default: now.
    pub to: Option<String>,
    /// `minute`, `hour` or `day`; default: chosen from the range.
    pub granularity: Option<String>,
    /// API only: a rotation is a straggler when its deadline is at most this many hours away
    /// (1–720; default 24).
    pub within_hours: Option<String>,
}

/// Old versus new traffic over time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MigrationSeries {
    pub granularity: String,
    pub from: String,
    pub to: String,
    /// Every bucket of the range, oldest first.
    pub data: Vec<Point>,
    /// Share of successful verifications on new versions over the range (0–1), if any.
    pub new_share: Option<f64>,
}

/// An API's migration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiMigration {
    pub api_id: String,
    pub rotations_in_progress: usize,
    /// Rotations ended within the range, counted in the series with those in progress.
    pub rotations_ended: usize,
    pub series: MigrationSeries,
    /// Old versions still used within the quiet period, deadline soon, soonest first.
    pub stragglers: Vec<Straggler>,
}

/// One rotation's migration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotationMigration {
    pub rotation_id: String,
    pub series: MigrationSeries,
    pub progress: Progress,
}

/// A range for `q`; without `from`, it starts a bucket before `since` and the bucket size fits.
fn range_of(q: &MigrationQuery, since: Option<DateTime<Utc>>) -> Result<Range, ApiError> {
    let to = q.to.clone();
    let mut from = q.from.clone();
    let mut granularity = q.granularity.clone();
    if let (None, Some(since)) = (&from, since) {
        let g =
            granularity.clone().unwrap_or_else(|| migration::Window::since(since, Utc::now()).granularity.to_owned());
        // An unknown size is named by `range` below; any start will do until then.
        let step = crate::store::usage::step_of(&g);
        let most = super::usage::widest(&g).unwrap_or(step);
        let start = (since - step).max(Utc::now() - most + step);
        from = Some(crate::time::rfc3339(start));
        granularity = Some(g);
    }
    UsageQuery { from, to, granularity }.range()
}

async fn series_of(
    state: &AppState,
    tenant: &TenantId,
    old: &[String],
    new: &[String],
    r: &Range,
) -> Result<MigrationSeries, ApiError> {
    let window = migration::Window { granularity: &r.granularity, step: r.step, from: r.from, to: r.to };
    let data = migration::series(&state.db, tenant, old, new, window).await?;
    Ok(MigrationSeries {
        granularity: r.granularity.clone(),
        from: crate::time::rfc3339(r.from),
        to: crate::time::rfc3339(r.to),
        new_share: migration::new_share(&data),
        data,
    })
}

/// How traffic moves from old to new versions across every rotation of an API, and which
/// consumers are late.
#[utoipa::path(get, path = "/v1/apis/{id}/migration", tag = "rotations", params(("id" = String, Path), MigrationQuery),
    responses((status = 200, body = ApiMigration), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn api(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<ApiMigration>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let a = crate::store::apis::get(&state.db, &root.tenant_id, &super::apis::parse_id(&id)?).await?;
    let q = query::<MigrationQuery>(&req)?;
    let horizon = match q.within_hours.as_deref() {
        None => 24,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=720).contains(h))
            .ok_or_else(|| ApiError::field("within_hours", "must be a whole number from 1 to 720"))?,
    };
    // Rotations that could matter: those in progress, and those ended in the last year at most.
    let candidates =
        migration::rotations_of_api(&state.db, &root.tenant_id, &a.id, Utc::now() - TimeDelta::days(366)).await?;
    let now = Utc::now();
    let open: Vec<_> = candidates
        .iter()
        .filter(|r| crate::app::rotation::effective_state(r, now) == crate::domain::rotation::RotationState::InProgress)
        .cloned()
        .collect();
    let since = open.iter().map(|r| r.started_at).min();
    let range = range_of(&q, since)?;
    let shown: Vec<_> =
        candidates.iter().filter(|r| r.started_at < range.to && r.ended_at.is_none_or(|e| e >= range.from)).collect();
    let old: Vec<String> = shown.iter().map(|r| r.from_key_id.clone()).collect();
    let new: Vec<String> = shown.iter().map(|r| r.to_key_id.clone()).collect();
    let series = series_of(&state, &root.tenant_id, &old, &new, &range).await?;
    let stragglers = migration::stragglers(
        &state.db,
        &root.tenant_id,
        &open,
        now,
        TimeDelta::hours(horizon),
        &state.settings.rotation,
    )
    .await?;
    Ok(web::Json(ApiMigration {
        api_id: a.id,
        rotations_in_progress: open.len(),
        rotations_ended: shown.len() - shown.iter().filter(|r| open.iter().any(|o| o.id == r.id)).count(),
        series,
        stragglers,
    }))
}

/// One rotation: old versus new traffic over time, and its progress.
#[utoipa::path(get, path = "/v1/rotations/{id}/migration", tag = "rotations",
    params(("id" = String, Path), MigrationQuery),
    responses((status = 200, body = RotationMigration), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn rotation(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RotationMigration>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let rid = RotationId::parse(&id).map_err(|_| ApiError::NotFound("no such rotation"))?;
    let r = rotations::get(&state.db, &root.tenant_id, &rid).await?;
    let q = query::<MigrationQuery>(&req)?;
    if q.within_hours.is_some() {
        return Err(ApiError::field("within_hours", "applies to an API's migration only"));
    }
    let range = range_of(&q, Some(r.started_at))?;
    let series = series_of(
        &state,
        &root.tenant_id,
        std::slice::from_ref(&r.from_key_id),
        std::slice::from_ref(&r.to_key_id),
        &range,
    )
    .await?;
    let from = keys::get_any(&state.db, &root.tenant_id, &KeyId::from_trusted(r.from_key_id.clone())).await?;
    let to = keys::get_any(&state.db, &root.tenant_id, &KeyId::from_trusted(r.to_key_id.clone())).await?;
    let progress = progress(&state.db, &r, &from, &to).await?;
    Ok(web::Json(RotationMigration { rotation_id: r.id, series, progress }))
}

//! `GET /v1/keys/{id}/usage`, `/v1/consumers/{id}/usage`, `/v1/apis/{id}/usage`: verification
//! outcomes by time bucket and code.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, web};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::pagination::query;
use crate::state::AppState;
use crate::store::usage::{self, Scope};

/// The range and bucket size.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// RFC 3339, rounded down to the bucket size; default: 60 buckets before `to`.
    pub from: Option<String>,
    /// RFC 3339; default: now.
    pub to: Option<String>,
    /// `minute`, `hour` (default) or `day`.
    pub granularity: Option<String>,
}

/// One bucket: its start, the count per outcome code, and their sum.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBucket {
    pub bucket_start: String,
    pub counts: BTreeMap<String, i64>,
    pub total: i64,
}

/// Usage over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    pub granularity: String,
    pub from: String,
    pub to: String,
    /// Buckets with at least one verification, oldest first.
    pub data: Vec<UsageBucket>,
    /// Per code over the whole range.
    pub totals: BTreeMap<String, i64>,
}

fn parse_time(field: &str, v: Option<&String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::field(field, "must be an RFC 3339 time like 2026-11-30T10:00:00Z"))
    })
    .transpose()
}

/// A checked range: bucket size and whole buckets.
#[derive(Debug, Clone)]
pub struct Range {
    pub granularity: String,
    pub step: TimeDelta,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The longest range one answer may span at `granularity`, or `None` for an unknown size.
#[must_use]
pub fn widest(granularity: &str) -> Option<TimeDelta> {
    match granularity {
        "minute" => Some(TimeDelta::days(2)),
        "hour" => Some(TimeDelta::days(31)),
        "day" => Some(TimeDelta::days(366)),
        _ => None,
    }
}

impl UsageQuery {
    /// # Errors
    /// 400 naming `granularity`, `from` or `to`.
    pub fn range(&self) -> Result<Range, ApiError> {
        let granularity = self.granularity.as_deref().unwrap_or("hour");
        let most = widest(granularity).ok_or_else(|| ApiError::field("granularity", "must be minute, hour or day"))?;
        let step = usage::step_of(granularity);
        let to = parse_time("to", self.to.as_ref())?.unwrap_or_else(Utc::now);
        // Buckets are whole: the range starts at the beginning of the bucket `from` falls in.
        let from = parse_time("from", self.from.as_ref())?.unwrap_or(to - step * 60);
        let from = from.duration_trunc(step).unwrap_or(from);
        if from >= to {
            return Err(ApiError::field("from", "must be before to"));
        }
        if to - from > most {
            return Err(ApiError::field(
                "from",
                format!("is too far from to: at most {} days at this granularity", most.num_days()),
            ));
        }
        Ok(Range { granularity: granularity.to_owned(), step, from, to })
    }
}

async fn usage_of(state: &AppState, root: &Root, req: &HttpRequest, scope: Scope<'_>) -> Result<UsageView, ApiError> {
    let Range { granularity, step, from, to } = query::<UsageQuery>(req)?.range()?;
    let rows = usage::counts(&state.db, &root.tenant_id, scope, &granularity, from, to).await?;
    let mut buckets: BTreeMap<DateTime<Utc>, BTreeMap<String, i64>> = BTreeMap::new();
    let mut totals = BTreeMap::new();
    for (at, code, n) in rows {
        let start = at.duration_trunc(step).unwrap_or(at);
        *buckets.entry(start).or_default().entry(code.clone()).or_default() += n;
        *totals.entry(code).or_default() += n;
    }
    let data = buckets
        .into_iter()
        .map(|(start, counts)| UsageBucket {
            bucket_start: crate::time::rfc3339(start),
            total: counts.values().sum(),
            counts,
        })
        .collect();
    Ok(UsageView { granularity, from: crate::time::rfc3339(from), to: crate::time::rfc3339(to), data, totals })
}

/// A key's verifications by time bucket and outcome code.
#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "usage", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn key(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<UsageView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let k = crate::store::keys::get(&state.db, &root.tenant_id, &super::keys::parse_id(&id)?, false).await?;
    Ok(web::Json(usage_of(&state, &root, &req, Scope::Key(&k.id)).await?))
}

/// A consumer's verifications (all its keys) by time bucket and outcome code.
#[utoipa::path(get, path = "/v1/consumers/{id}/usage", tag = "usage", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn consumer(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<UsageView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let c = crate::store::consumers::get(&state.db, &root.tenant_id, &super::consumers::parse_id(&id)?).await?;
    Ok(web::Json(usage_of(&state, &root, &req, Scope::Consumer(&c.id)).await?))
}

/// An API's verifications (all its keys) by time bucket and outcome code.
#[utoipa::path(get, path = "/v1/apis/{id}/usage", tag = "usage", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = UsageView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn api(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<UsageView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let a = crate::store::apis::get(&state.db, &root.tenant_id, &super::apis::parse_id(&id)?).await?;
    Ok(web::Json(usage_of(&state, &root, &req, Scope::Api(&a.id)).await?))
}

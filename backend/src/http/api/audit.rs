//! `/v1/audit-events`: the tenant's audit log, its exports and the check of its hash chain.

use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::views::Checks;
use crate::audit::export::{self, AuditView, Format};
use crate::audit::{ChainReport, Filter};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;

/// Filters of the audit log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries at or after this moment (RFC 3339).
    pub from: Option<String>,
    /// Entries before this moment (RFC 3339).
    pub to: Option<String>,
    /// `user:usr_…`, `root_key:key_…`, `policy:pol_…`, `consumer:con_…`, `system` or `cli`.
    pub actor: Option<String>,
    /// An action (`key.revoked`), or every action of a resource (`key.`).
    pub action: Option<String>,
    /// Entries about this object (a key, consumer, rotation, …).
    pub target_id: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
    /// Exports only: `jsonl` (default) or `csv`.
    pub format: Option<String>,
}

fn moment(c: &mut Checks, field: &str, v: Option<&str>) -> Option<DateTime<Utc>> {
    let v = v.filter(|s| !s.trim().is_empty())?;
    c.take(
        field,
        DateTime::parse_from_rfc3339(v.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| "must be an RFC 3339 time, e.g. 2026-11-30T09:00:00Z"),
    )
}

fn short_text(c: &mut Checks, field: &str, v: Option<&str>) -> Option<String> {
    let v = v.map(str::trim).filter(|s| !s.is_empty())?;
    if v.len() > 100 {
        c.push(field, "must be at most 100 characters");
        return None;
    }
    Some(v.to_owned())
}

impl AuditQuery {
    /// # Errors
    /// 400 naming the parameter.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        let mut c = Checks::default();
        let f = Filter {
            from: moment(&mut c, "from", self.from.as_deref()),
            to: moment(&mut c, "to", self.to.as_deref()),
            actor: short_text(&mut c, "actor", self.actor.as_deref()),
            action: short_text(&mut c, "action", self.action.as_deref()),
            target_id: short_text(&mut c, "target_id", self.target_id.as_deref()),
        };
        if let (Some(a), Some(b)) = (f.from, f.to)
            && a >= b
        {
            c.push("to", "must be after from");
        }
        c.finish()?;
        Ok(f)
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<AuditList>, ApiError> {
    root.require(crate::app::Permission::AuditRead)?;
    let q = query::<AuditQuery>(&req)?;
    let filter = q.filter()?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let before = cursor
        .map(|c| {
            c.after_id.parse::<i64>().map_err(|_| ApiError::field("cursor", "is not a cursor returned by this list"))
        })
        .transpose()?;
    let page = export::list(&state.db, &root.tenant_id, &filter, limit, before).await?;
    Ok(web::Json(AuditList { data: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// The audit log as a file, oldest entry first: JSON Lines or CSV, with the same filters.
#[utoipa::path(get, path = "/v1/audit-events/export", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "JSON Lines (`application/x-ndjson`) or CSV (`text/csv`)"),
        (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn export(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<HttpResponse, ApiError> {
    root.require(crate::app::Permission::AuditRead)?;
    let q = query::<AuditQuery>(&req)?;
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::field(
            if q.limit.is_some() { "limit" } else { "cursor" },
            "does not apply to an export, which holds every matching entry",
        ));
    }
    let filter = q.filter()?;
    let format = match q.format.as_deref() {
        None | Some("") => Format::JsonLines,
        Some(f) => Format::parse(f).ok_or_else(|| ApiError::field("format", "must be jsonl or csv"))?,
    };
    Ok(download(&state, &root.tenant_id, filter, format))
}

/// The streamed answer of an export.
pub(crate) fn download(
    state: &AppState,
    tenant: &crate::domain::TenantId,
    filter: Filter,
    format: Format,
) -> HttpResponse {
    let name = format!("audit-{}-{}.{}", tenant.as_str(), Utc::now().format("%Y%m%dT%H%M%SZ"), format.extension());
    let body = export::stream(state.db.clone(), tenant.clone(), filter, format)
        .map_err(|e| actix_web::error::ErrorInternalServerError(format!("the export stopped: {e}")));
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, format.content_type()))
        .insert_header((CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .streaming(body)
}

/// Checks the tenant's hash chain and names the first broken link, if any.
#[utoipa::path(get, path = "/v1/audit-events/verify", tag = "audit",
    responses((status = 200, body = ChainReport), (status = 403, body = Problem)), security(("root_key" = [])))]
pub async fn verify(state: web::Data<AppState>, root: Root) -> Result<web::Json<ChainReport>, ApiError> {
    root.require(crate::app::Permission::AuditRead)?;
    Ok(web::Json(crate::audit::verify(&state.db, &root.tenant_id).await?))
}

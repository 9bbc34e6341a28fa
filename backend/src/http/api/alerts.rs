//! `/v1/alerts`: what the anomaly detector and the notices raised, to acknowledge and resolve;
//! `/v1/alert-thresholds`: the tenant's thresholds.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alerts::AlertView;
use crate::app::{self, alerts::AlertChange};
use crate::domain::AlertId;
use crate::domain::anomaly::{AlertKind, Thresholds};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, FieldError, Problem};
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::alerts::{Filter, STATES};

/// Filters of the alert list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `open`, `acknowledged`, `resolved`, or `live` (open and acknowledged).
    pub state: Option<String>,
    /// One kind of alert.
    pub kind: Option<String>,
    /// Alerts about this key or API.
    pub subject_id: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

/// A page of alerts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertList {
    pub data: Vec<AlertView>,
    pub next_cursor: Option<String>,
}

impl AlertQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let mut errors = Vec::new();
        let mut f = Filter::default();
        match self.state.as_deref() {
            None => {}
            Some("live") => f.live = true,
            Some(s) if STATES.contains(&s) => f.state = Some(s.to_owned()),
            Some(_) => errors.push(FieldError::new("state", "must be open, acknowledged, resolved or live")),
        }
        match self.kind.as_deref() {
            None => {}
            Some(k) if AlertKind::parse(k).is_some() => f.kind = Some(k.to_owned()),
            Some(_) => errors.push(FieldError::new(
                "kind",
                format!("must be one of {}", AlertKind::ALL.map(AlertKind::as_str).join(", ")),
            )),
        }
        if let Some(s) = self.subject_id.as_deref() {
            if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                errors.push(FieldError::new("subject_id", "must be a key or API id"));
            } else {
                f.subject_id = Some(s.to_owned());
            }
        }
        if errors.is_empty() { Ok(f) } else { Err(ApiError::fields(errors)) }
    }
}

/// List alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, root: Root, req: HttpRequest) -> Result<web::Json<AlertList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let q = query::<AlertQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let f = q.filter()?;
    let page = crate::store::alerts::list(&state.db, &root.tenant_id, &f, limit, cursor.as_ref()).await?;
    Ok(web::Json(AlertList { data: page.items.iter().map(AlertView::of).collect(), next_cursor: page.next_cursor }))
}

fn parse(id: &str) -> Result<AlertId, ApiError> {
    AlertId::parse(id).map_err(|_| ApiError::NotFound("no such alert"))
}

/// Read an alert.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<AlertView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let a = crate::store::alerts::get(&state.db, &root.tenant_id, &parse(&id)?).await.map_err(not_found)?;
    Ok(web::Json(AlertView::of(&a)))
}

fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound("no such alert"),
        e => e.into(),
    }
}

/// Acknowledge an open alert: someone is on it.
#[utoipa::path(post, path = "/v1/alerts/{id}/acknowledge", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn acknowledge(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<AlertView>, ApiError> {
    Ok(web::Json(AlertView::of(&app::alerts::change(&root.ctx(&state), &id, AlertChange::Acknowledge).await?)))
}

/// Resolve an alert (`alert.resolved`); its next occurrence raises a new one.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn resolve(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<AlertView>, ApiError> {
    Ok(web::Json(AlertView::of(&app::alerts::change(&root.ctx(&state), &id, AlertChange::Resolve).await?)))
}

/// The tenant's anomaly thresholds (defaults where it set none).
#[utoipa::path(get, path = "/v1/alert-thresholds", tag = "alerts",
    responses((status = 200, body = Thresholds)), security(("root_key" = [])))]
pub async fn thresholds(state: web::Data<AppState>, root: Root) -> Result<web::Json<Thresholds>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let t = crate::store::tenants::get(&state.db, &root.tenant_id).await?;
    Ok(web::Json(Thresholds::from_settings(&t.settings)))
}

/// Change some of the tenant's thresholds. Audited.
#[utoipa::path(patch, path = "/v1/alert-thresholds", tag = "alerts", request_body = Object,
    responses((status = 200, body = Thresholds), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn update_thresholds(
    state: web::Data<AppState>,
    root: Root,
    body: Body<Value>,
) -> Result<web::Json<Thresholds>, ApiError> {
    let mut value = body.value;
    crate::http::json::integral_floats_as_integers(&mut value);
    Ok(web::Json(app::alerts::save_thresholds(&root.ctx(&state), &value).await?))
}

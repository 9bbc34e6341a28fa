//! `/v1/webhook-endpoints` and `/v1/events`: where events go, and what happened to them.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::consumers;
use super::views::Checks;
use crate::domain::TenantId;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::notify::webhook::new_secret;
use crate::state::AppState;
use crate::store::entities::{delivery, event, webhook_endpoint};
use crate::store::{StoreError, notify as store};

/// Event types an endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "key.created",
    "key.updated",
    "key.revoked",
    "key.expiring",
    "key.expired",
    "rotation.started",
    "rotation.completed",
    "rotation.rolled_back",
    "rotation.extended",
    "policy.rotation_due",
    "alert.raised",
    "alert.resolved",
    "credits.low",
    "ratelimit.exceeded",
    "playbook.run.started",
    "playbook.run.completed",
    "playbook.run.failed",
    "leak.reported",
];

/// `POST /v1/webhook-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `https://…` (or `http://` for local receivers).
    pub url: String,
    /// Event types to receive; `["*"]` (the default) for all.
    pub event_types: Option<Vec<String>>,
    /// Only this consumer's events (an endpoint run by the consumer).
    pub consumer_id: Option<String>,
}

/// `PATCH /v1/webhook-endpoints/{id}`: what is given changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `true` turns a disabled endpoint back on (its failure streak starts again at zero).
    pub enabled: Option<bool>,
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateEndpointSecret {
    /// How long the old secret keeps signing next to the new one (0–604800, default 86400).
    pub overlap_seconds: Option<i64>,
}

/// A webhook endpoint (the secret is shown only when it is created or rotated).
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub consumer_id: Option<String>,
    pub enabled: bool,
    pub failures: i32,
    pub disabled_at: Option<DateTime<Utc>>,
    /// While the secret is being rotated: until when the old secret signs too.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// `whsec_…`: only in the answer to the creation or a secret rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<webhook_endpoint::Model> for EndpointView {
    fn from(e: webhook_endpoint::Model) -> Self {
        Self {
            id: e.id,
            url: e.url,
            event_types: serde_json::from_value(e.event_types).unwrap_or_default(),
            consumer_id: e.consumer_id,
            enabled: e.enabled,
            failures: e.failures,
            disabled_at: e.disabled_at,
            previous_secret_until: e.previous_secret_until.filter(|t| *t > Utc::now()),
            created_at: e.created_at,
            secret: None,
        }
    }
}

/// A page of endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
    pub next_cursor: Option<String>,
}

/// One delivery attempt record.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    /// `webhook` or `email`.
    pub channel: String,
    pub endpoint_id: Option<String>,
    /// `pending`, `delivered`, `dead` or `held`.
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<delivery::Model> for DeliveryView {
    fn from(d: delivery::Model) -> Self {
        Self {
            id: d.id,
            channel: d.channel,
            endpoint_id: d.endpoint_id,
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// An event and its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryView>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventView>,
    pub next_cursor: Option<String>,
}

fn check_types(c: &mut Checks, types: &[String]) {
    if types.is_empty() {
        c.push("event_types", "must name at least one event type, or *");
    }
    for (i, t) in types.iter().enumerate() {
        if t != "*" && !EVENT_TYPES.contains(&t.as_str()) {
            c.push(format!("event_types[{i}]"), "is not a known event type");
        }
    }
}

fn check_url(c: &mut Checks, url: &str) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() && url.len() <= 2_000 => {}
        _ => c.push("url", "must be an http(s) URL of at most 2000 characters"),
    }
}

/// Add a webhook endpoint. The answer holds its signing secret, shown once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateEndpoint>,
) -> Result<HttpResponse, ApiError> {
    root.require("webhooks:write")?;
    let b = body.value;
    let mut c = Checks::default();
    check_url(&mut c, &b.url);
    let types = b.event_types.unwrap_or_else(|| vec!["*".into()]);
    check_types(&mut c, &types);
    c.finish()?;
    let consumer_id = match &b.consumer_id {
        Some(id) => {
            let cid = consumers::parse_id(id)?;
            match crate::store::consumers::get(&state.db, &root.tenant_id, &cid).await {
                Err(StoreError::NotFound) => {
                    return Err(ApiError::NotFound("consumer_id names no consumer of this tenant"));
                }
                other => Some(other?.id),
            }
        }
        None => None,
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let secret = new_secret();
        let ep = create_audited(
            &state.db,
            &root.tenant_id,
            &root.actor(),
            consumer_id,
            b.url.clone(),
            secret.clone(),
            types,
        )
        .await?;
        let mut view = EndpointView::from(ep);
        view.secret = Some(secret);
        Ok((StatusCode::CREATED, serde_json::to_value(view).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// List webhook endpoints (never their secrets).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = EndpointList)), security(("root_key" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
) -> Result<web::Json<EndpointList>, ApiError> {
    root.require("webhooks:write")?;
    let (limit, cursor) = query::<PageQuery>(&req)?.parse()?;
    let page = store::list_endpoints(&state.db, &root.tenant_id, limit, cursor.as_ref()).await?;
    Ok(web::Json(EndpointList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn endpoint_id(id: &str) -> Result<&str, ApiError> {
    crate::domain::WebhookEndpointId::parse(id).map(|_| id).map_err(|_| ApiError::NotFound("no such webhook endpoint"))
}

/// Read a webhook endpoint (never its secret).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<EndpointView>, ApiError> {
    root.require("webhooks:write")?;
    Ok(web::Json(store::tenant_endpoint(&state.db, &root.tenant_id, endpoint_id(&id)?).await?.into()))
}

/// Change an endpoint's URL or event types, or turn a disabled endpoint back on.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<UpdateEndpoint>,
) -> Result<web::Json<EndpointView>, ApiError> {
    root.require("webhooks:write")?;
    let mut ep = store::tenant_endpoint(&state.db, &root.tenant_id, endpoint_id(&id)?).await?;
    let b = body.value;
    let mut c = Checks::default();
    if let Some(url) = &b.url {
        check_url(&mut c, url);
    }
    if let Some(types) = &b.event_types {
        check_types(&mut c, types);
    }
    c.finish()?;
    if let Some(url) = b.url {
        ep.url = url;
    }
    if let Some(types) = b.event_types {
        ep.event_types = serde_json::Value::from(types);
    }
    match b.enabled {
        Some(true) if !ep.enabled => {
            ep.enabled = true;
            ep.failures = 0;
            ep.failing_since = None;
            ep.disabled_at = None;
        }
        Some(false) if ep.enabled => {
            ep.enabled = false;
            ep.disabled_at = Some(Utc::now());
        }
        _ => {}
    }
    Ok(web::Json(save_audited(&state.db, &root.tenant_id, &root.actor(), ep, "webhook_endpoint.updated").await?.into()))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    root.require("webhooks:write")?;
    delete_audited(&state.db, &root.tenant_id, &root.actor(), endpoint_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new signing secret, shown once. The old one keeps signing next to it for the overlap, so
/// receivers can switch without missing an event (`webhook-signature` then carries both).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    request_body = RotateEndpointSecret,
    responses((status = 200, body = EndpointView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<RotateEndpointSecret>,
) -> Result<web::Json<EndpointView>, ApiError> {
    root.require("webhooks:write")?;
    let overlap = body.value.overlap_seconds.unwrap_or(86_400);
    if !(0..=604_800).contains(&overlap) {
        return Err(ApiError::field("overlap_seconds", "must be between 0 and 604800"));
    }
    let mut ep = store::tenant_endpoint(&state.db, &root.tenant_id, endpoint_id(&id)?).await?;
    let secret = new_secret();
    ep.previous_secret = Some(std::mem::replace(&mut ep.secret, secret.clone()));
    ep.previous_secret_until = Some(Utc::now() + chrono::TimeDelta::seconds(overlap));
    let mut view = EndpointView::from(
        save_audited(&state.db, &root.tenant_id, &root.actor(), ep, "webhook_endpoint.secret_rotated").await?,
    );
    view.secret = Some(secret);
    Ok(web::Json(view))
}

/// Filters of the event log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The event log, newest first, with every delivery of each event.
#[utoipa::path(get, path = "/v1/events", tag = "webhooks", params(EventQuery),
    responses((status = 200, body = EventList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
) -> Result<web::Json<EventList>, ApiError> {
    root.require("audit:read")?;
    let q = query::<EventQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let page = store::list_events(&state.db, &root.tenant_id, q.event_type.as_deref(), limit, cursor.as_ref()).await?;
    let ids: Vec<String> = page.items.iter().map(|e| e.id.clone()).collect();
    let mut deliveries = store::deliveries_of(&state.db, &ids).await?;
    let data = page
        .items
        .into_iter()
        .map(|e: event::Model| {
            let mine: Vec<DeliveryView> = deliveries.extract_if(.., |d| d.event_id == e.id).map(Into::into).collect();
            EventView {
                id: e.id,
                event_type: e.event_type,
                data: e.payload,
                created_at: e.created_at,
                deliveries: mine,
            }
        })
        .collect();
    Ok(web::Json(EventList { data, next_cursor: page.next_cursor }))
}

/// What the audit log keeps of an endpoint: never its secrets.
fn audited(ep: &webhook_endpoint::Model) -> serde_json::Value {
    serde_json::json!({
        "url": ep.url, "consumer_id": ep.consumer_id, "event_types": ep.event_types, "enabled": ep.enabled,
        "previous_secret_until": ep.previous_secret_until.map(crate::time::rfc3339),
    })
}

/// Adds an endpoint, with its audit entry.
///
/// # Errors
/// Database errors.
pub(crate) async fn create_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    consumer_id: Option<String>,
    url: String,
    secret: String,
    types: Vec<String>,
) -> Result<webhook_endpoint::Model, StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let ep = store::create_endpoint(txn, tenant, consumer_id, url, secret, types).await?;
        let entry = crate::audit::Entry::new(
            "webhook_endpoint.created",
            "webhook_endpoint",
            ep.id.clone(),
            format!("Added the webhook endpoint {}", ep.url),
        )
        .with(audited(&ep));
        Ok((ep, vec![entry]))
    })
    .await
}

/// Saves a changed endpoint: `webhook_endpoint.updated` or `webhook_endpoint.secret_rotated`.
///
/// # Errors
/// `NotFound`, database errors.
pub(crate) async fn save_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    ep: webhook_endpoint::Model,
    action: &'static str,
) -> Result<webhook_endpoint::Model, StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let before = store::tenant_endpoint(txn, tenant, &ep.id).await?;
        let after = store::save_endpoint(txn, ep).await?;
        let summary = match (action, before.enabled, after.enabled) {
            ("webhook_endpoint.secret_rotated", ..) => format!("Rotated the signing secret of {}", after.url),
            (_, true, false) => format!("Disabled the webhook endpoint {}", after.url),
            (_, false, true) => format!("Enabled the webhook endpoint {}", after.url),
            _ => format!("Changed the webhook endpoint {}", after.url),
        };
        let entry = crate::audit::Entry::new(action, "webhook_endpoint", after.id.clone(), summary)
            .change(audited(&before), audited(&after));
        Ok((after, vec![entry]))
    })
    .await
}

/// Deletes an endpoint and its delivery log, recording what it was.
///
/// # Errors
/// `NotFound`, database errors.
pub(crate) async fn delete_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    id: &str,
) -> Result<(), StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let ep = store::delete_endpoint(txn, tenant, id).await?;
        let entry = crate::audit::Entry::new(
            "webhook_endpoint.deleted",
            "webhook_endpoint",
            ep.id.clone(),
            format!("Deleted the webhook endpoint {}", ep.url),
        )
        .with(serde_json::json!({ "before": audited(&ep) }));
        Ok(((), vec![entry]))
    })
    .await
}

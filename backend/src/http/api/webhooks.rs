//! `/v1/webhook-endpoints` and `/v1/events`: where events go, and what happened to them.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::entities::{delivery, event, webhook_endpoint};
use crate::store::notify as store;

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
    let b = body.value;
    let ctx = root.ctx(&state);
    let input = app::webhooks::NewEndpoint { url: b.url, event_types: b.event_types, consumer_id: b.consumer_id };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let created = app::webhooks::create(&ctx, input).await?;
        let mut view = EndpointView::from(created.endpoint);
        view.secret = Some(created.secret);
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
    root.require(crate::app::Permission::WebhooksWrite)?;
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
    root.require(crate::app::Permission::WebhooksWrite)?;
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
    let b = body.value;
    let changes = app::webhooks::EndpointChanges { url: b.url, event_types: b.event_types, enabled: b.enabled };
    Ok(web::Json(app::webhooks::update(&root.ctx(&state), &id, changes).await?.into()))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    app::webhooks::delete(&root.ctx(&state), &id).await?;
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
    let rotated = app::webhooks::rotate_secret(&root.ctx(&state), &id, body.value.overlap_seconds).await?;
    let mut view = EndpointView::from(rotated.endpoint);
    view.secret = Some(rotated.secret);
    Ok(web::Json(view))
}

/// Filters of the event log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
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
    root.require(crate::app::Permission::AuditRead)?;
    let q = query::<EventQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    if let Some(t) = q.event_type.as_deref()
        && crate::domain::EventType::parse(t).is_none()
    {
        return Err(ApiError::field("type", "is not an event type"));
    }
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

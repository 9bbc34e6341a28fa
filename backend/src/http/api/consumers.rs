//! `/v1/consumers`: the provider's customers.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::views::{ConsumerList, ConsumerView, CreateConsumer, PatchConsumer};
use crate::app;
use crate::domain::ConsumerId;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::consumers;

pub(crate) fn parse_id(s: &str) -> Result<ConsumerId, ApiError> {
    ConsumerId::parse(s).map_err(|_| ApiError::NotFound("no such consumer"))
}

/// Create a consumer.
#[utoipa::path(post, path = "/v1/consumers", tag = "consumers", request_body = CreateConsumer,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = ConsumerView), (status = 400, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateConsumer>,
) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let ctx = root.ctx(&state);
    let input = app::consumers::NewConsumerInput {
        external_id: b.external_id,
        name: b.name,
        email: b.email,
        meta: b.meta,
        stripe_customer_id: b.stripe_customer_id,
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let con = app::consumers::create(&ctx, input).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(ConsumerView::from(con)).map_err(|e| ApiError::Internal(e.into()))?,
        ))
    })
    .await
}

/// Filters of the consumer list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsumerQuery {
    /// Only the consumer with this external id.
    pub external_id: Option<String>,
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_]{1,64}$")]
    pub cursor: Option<String>,
}

/// List consumers, or find one by `external_id`.
#[utoipa::path(get, path = "/v1/consumers", tag = "consumers", params(ConsumerQuery),
    responses((status = 200, body = ConsumerList), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
) -> Result<web::Json<ConsumerList>, ApiError> {
    root.require(crate::app::Permission::ConsumersRead)?;
    let q = query::<ConsumerQuery>(&req)?;
    let (limit, cursor) = PageQuery { limit: q.limit.clone(), cursor: q.cursor.clone() }.parse()?;
    let page = consumers::list(&state.db, &root.tenant_id, q.external_id.as_deref(), limit, cursor.as_ref()).await?;
    Ok(web::Json(ConsumerList::from_page(page)))
}

/// Read a consumer.
#[utoipa::path(get, path = "/v1/consumers/{id}", tag = "consumers", params(("id" = String, Path)),
    responses((status = 200, body = ConsumerView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<ConsumerView>, ApiError> {
    root.require(crate::app::Permission::ConsumersRead)?;
    Ok(web::Json(consumers::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?.into()))
}

/// Update a consumer.
#[utoipa::path(patch, path = "/v1/consumers/{id}", tag = "consumers", params(("id" = String, Path)),
    request_body = PatchConsumer,
    responses((status = 200, body = ConsumerView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Another consumer has this external_id")),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PatchConsumer>,
) -> Result<web::Json<ConsumerView>, ApiError> {
    let b = body.value;
    let changes = app::consumers::ConsumerChanges {
        external_id: b.external_id,
        name: b.name,
        email: b.email,
        meta: b.meta,
        stripe_customer_id: b.stripe_customer_id,
    };
    Ok(web::Json(app::consumers::update(&root.ctx(&state), &id, changes).await?.into()))
}

/// Delete a consumer; its keys are revoked.
#[utoipa::path(delete, path = "/v1/consumers/{id}", tag = "consumers", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    app::consumers::delete(&root.ctx(&state), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

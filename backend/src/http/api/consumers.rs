//! `/v1/consumers`: the provider's customers.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::views::{Checks, ConsumerList, ConsumerView, CreateConsumer, PatchConsumer};
use crate::domain::ConsumerId;
use crate::domain::input::{Email, ExternalId, Meta, Name};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::consumers::{self, ConsumerPatch, NewConsumer};
use crate::store::keys;

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
    root.require("consumers:write")?;
    let b = body.value;
    let mut c = Checks::default();
    let external_id = c.take("external_id", ExternalId::parse(&b.external_id));
    let name = c.take("name", Name::parse(&b.name));
    let email = match &b.email {
        Some(e) => c.take("email", Email::parse(e)).map(|e| Some(e.into_string())),
        None => Some(None),
    };
    let meta = c.take("meta", Meta::parse(b.meta.unwrap_or_else(|| serde_json::json!({}))));
    c.finish()?;
    let (Some(external_id), Some(name), Some(email), Some(meta)) = (external_id, name, email, meta) else {
        return Err(ApiError::field("body", "is invalid"));
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let new = NewConsumer {
            external_id: external_id.into_string(),
            name: name.into_string(),
            email,
            meta: meta.into_value(),
        };
        let con = create_audited(&state.db, &root.tenant_id, &root.actor(), new).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(ConsumerView::from(con)).map_err(|e| ApiError::Internal(e.into()))?,
        ))
    })
    .await
}

/// Filters of the consumer list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConsumerQuery {
    /// Only the consumer with this external id.
    pub external_id: Option<String>,
    /// 1 to 100; 20 when absent.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
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
    root.require("consumers:read")?;
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
    root.require("consumers:read")?;
    Ok(web::Json(consumers::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?.into()))
}

/// Update a consumer.
#[utoipa::path(patch, path = "/v1/consumers/{id}", tag = "consumers", params(("id" = String, Path)),
    request_body = PatchConsumer,
    responses((status = 200, body = ConsumerView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PatchConsumer>,
) -> Result<web::Json<ConsumerView>, ApiError> {
    root.require("consumers:write")?;
    let id = parse_id(&id)?;
    let b = body.value;
    let mut c = Checks::default();
    let mut patch = ConsumerPatch::default();
    if let Some(n) = &b.name {
        patch.name = c.take("name", Name::parse(n)).map(Name::into_string);
    }
    match b.email {
        Some(Some(e)) => patch.email = c.take("email", Email::parse(&e)).map(|e| Some(e.into_string())),
        Some(None) => patch.email = Some(None),
        None => {}
    }
    if let Some(m) = b.meta {
        patch.meta = c.take("meta", Meta::parse(m)).map(Meta::into_value);
    }
    c.finish()?;
    let con = crate::audit::write(&state.db, &root.tenant_id, &root.actor(), async |txn| {
        let before = consumers::get(txn, &root.tenant_id, &id).await?;
        let after = consumers::update(txn, &root.tenant_id, &id, patch).await?;
        let entry = crate::audit::Entry::new(
            "consumer.updated",
            "consumer",
            after.id.clone(),
            format!("Changed the consumer {}", after.name),
        )
        .change(audited(&before), audited(&after));
        Ok::<_, crate::store::StoreError>((after, vec![entry]))
    })
    .await?;
    // Consumer meta is part of every verify answer of its keys.
    let hashes = keys::hashes_of(&state.db, &root.tenant_id, None, Some(&id)).await?;
    state.cache.invalidate(&hashes).await;
    Ok(web::Json(con.into()))
}

/// Delete a consumer; its keys are revoked.
#[utoipa::path(delete, path = "/v1/consumers/{id}", tag = "consumers", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn delete(state: web::Data<AppState>, root: Root, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    root.require("consumers:write")?;
    delete_consumer(&state, &root.tenant_id, &root.actor(), &parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a consumer (softly) and revokes its keys, announcing each revocation; returns how
/// many keys were revoked.
///
/// # Errors
/// `NotFound`, or database errors.
pub(crate) async fn delete_consumer(
    state: &AppState,
    tenant: &crate::domain::TenantId,
    actor: &str,
    id: &ConsumerId,
) -> Result<usize, crate::store::StoreError> {
    const REASON: &str = "consumer deleted";
    let txn = crate::store::begin_write(&state.db).await?;
    let gone = consumers::get(&txn, tenant, id).await?;
    consumers::soft_delete(&txn, tenant, id).await?;
    let revoked = keys::revoke_all_of_consumer(&txn, tenant, id, REASON).await?;
    let audience = crate::notify::audience_of(&txn, Some(id.as_str())).await?;
    let events = revoked.iter().map(|k| (super::keys::revoked_event(k, REASON, actor), audience.clone())).collect();
    crate::notify::emit_many(&txn, tenant, "key.revoked", events).await?;
    let entry = crate::audit::Entry::new(
        "consumer.deleted",
        "consumer",
        id.as_str(),
        format!("Deleted the consumer {} and revoked its {} active keys", gone.name, revoked.len()),
    )
    .with(serde_json::json!({ "consumer": audited(&gone), "revoked_key_ids": revoked.iter().map(|k| &k.id).collect::<Vec<_>>() }));
    crate::audit::record(&txn, tenant, actor, vec![entry]).await?;
    txn.commit().await?;
    let hashes: Vec<_> = revoked.iter().filter_map(|k| crate::domain::KeyHash::from_hex(&k.hash)).collect();
    state.cache.invalidate(&hashes).await;
    for k in &revoked {
        crate::rotation::cancel_for_revoked(state, &crate::domain::KeyId::from_trusted(k.id.clone())).await?;
    }
    Ok(revoked.len())
}

fn audited(c: &crate::store::entities::consumer::Model) -> serde_json::Value {
    serde_json::json!({ "external_id": c.external_id, "name": c.name, "email": c.email, "meta": c.meta })
}

/// Creates a consumer, with its audit entry.
///
/// # Errors
/// `Conflict` when the external id is taken, database errors.
pub(crate) async fn create_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &crate::domain::TenantId,
    actor: &str,
    new: NewConsumer,
) -> Result<crate::store::entities::consumer::Model, crate::store::StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let con = consumers::create(txn, tenant, new).await?;
        let entry = crate::audit::Entry::new(
            "consumer.created",
            "consumer",
            con.id.clone(),
            format!("Created the consumer {} ({})", con.name, con.external_id),
        )
        .with(audited(&con));
        Ok((con, vec![entry]))
    })
    .await
}

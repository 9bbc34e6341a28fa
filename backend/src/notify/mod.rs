//! Notifications: every event is written to the outbox in the same transaction as the change
//! that caused it, then delivered as signed webhooks (Standard Webhooks) to the tenant's and the
//! consumer's endpoints and as email to the consumer, with retries and a delivery log.

pub mod deliver;
pub mod email;
pub mod webhook;

use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::domain::TenantId;
use crate::store::StoreError;
use crate::store::notify as store;

/// Events a consumer also hears about by email.
pub const EMAILED: &[&str] =
    &["rotation.started", "key.expiring", "rotation.completed", "rotation.rolled_back", "key.revoked"];

/// Whom an event concerns.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub consumer_id: Option<String>,
    pub consumer_email: Option<String>,
}

/// Writes the event and its deliveries. Call it with the transaction of the change.
///
/// # Errors
/// Database errors (the caller's transaction then fails as a whole).
pub async fn emit(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    event_type: &str,
    data: Value,
    to: &Audience,
) -> Result<String, StoreError> {
    let event = store::insert_event(db, tenant, event_type, data).await?;
    for ep in store::endpoints_for(db, tenant, to.consumer_id.as_deref()).await? {
        let types: Vec<String> = serde_json::from_value(ep.event_types.clone()).unwrap_or_default();
        if types.iter().any(|t| t == "*" || t == event_type) {
            store::insert_delivery(db, tenant, &event.id, "webhook", Some(ep.id), None).await?;
        }
    }
    if let Some(email) = &to.consumer_email
        && EMAILED.contains(&event_type)
    {
        store::insert_delivery(db, tenant, &event.id, "email", None, Some(email.clone())).await?;
    }
    Ok(event.id)
}

/// Writes many events of one type and their deliveries in a few statements (bulk work).
///
/// # Errors
/// Database errors.
pub async fn emit_many(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    event_type: &str,
    items: Vec<(Value, Audience)>,
) -> Result<(), StoreError> {
    use crate::domain::{DeliveryId, EventId};
    use crate::store::entities::{delivery, event};
    use sea_orm::{EntityTrait, Set};
    let endpoints = store::endpoints_for_all(db, tenant).await?;
    let now = chrono::Utc::now();
    let mut events = Vec::with_capacity(items.len());
    let mut deliveries = Vec::new();
    for (data, to) in items {
        let id = EventId::generate().into_string();
        for ep in &endpoints {
            let types: Vec<String> = serde_json::from_value(ep.event_types.clone()).unwrap_or_default();
            let mine = ep.consumer_id.is_none() || ep.consumer_id == to.consumer_id;
            if mine && types.iter().any(|t| t == "*" || t == event_type) {
                deliveries.push((id.clone(), "webhook", Some(ep.id.clone()), None));
            }
        }
        if let Some(email) = &to.consumer_email
            && EMAILED.contains(&event_type)
        {
            deliveries.push((id.clone(), "email", None, Some(email.clone())));
        }
        events.push(event::ActiveModel {
            id: Set(id),
            tenant_id: Set(tenant.as_str().to_owned()),
            event_type: Set(event_type.to_owned()),
            payload: Set(data),
            created_at: Set(now),
        });
    }
    for chunk in events.chunks(1_000) {
        event::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    let rows: Vec<delivery::ActiveModel> = deliveries
        .into_iter()
        .map(|(event_id, channel, endpoint_id, recipient)| delivery::ActiveModel {
            id: Set(DeliveryId::generate().into_string()),
            tenant_id: Set(tenant.as_str().to_owned()),
            event_id: Set(event_id),
            channel: Set(channel.to_owned()),
            endpoint_id: Set(endpoint_id),
            recipient: Set(recipient),
            state: Set(store::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            locked_until: Set(None),
            last_status: Set(None),
            last_error: Set(None),
            delivered_at: Set(None),
            created_at: Set(now),
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        delivery::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    Ok(())
}

/// The audience of a key: its consumer, if any.
///
/// # Errors
/// Database errors.
pub async fn audience_of(db: &impl ConnectionTrait, consumer_id: Option<&str>) -> Result<Audience, StoreError> {
    use sea_orm::EntityTrait;
    let Some(cid) = consumer_id else { return Ok(Audience::default()) };
    let c = crate::store::entities::consumer::Entity::find_by_id(cid).one(db).await?;
    Ok(Audience { consumer_id: Some(cid.to_owned()), consumer_email: c.and_then(|c| c.email) })
}

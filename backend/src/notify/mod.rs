//! Notifications: every event is written to the outbox in the same transaction as the change
//! that caused it, then delivered as signed webhooks (Standard Webhooks) to the tenant's and the
//! consumer's endpoints and as email to the consumer, with retries and a delivery log.

pub mod email;
pub mod webhook;

use sea_orm::ConnectionTrait;
use serde_json::Value;

use crate::domain::{EventType, TenantId};
use crate::store::StoreError;
use crate::store::notify as store;

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
    event_type: EventType,
    data: Value,
    to: &Audience,
) -> Result<String, StoreError> {
    let event = store::insert_event(db, tenant, event_type.as_str(), data).await?;
    for ep in store::endpoints_for(db, tenant, to.consumer_id.as_deref()).await? {
        let types: Vec<String> = serde_json::from_value(ep.event_types.clone()).unwrap_or_default();
        if types.iter().any(|t| t == "*" || t == event_type.as_str()) {
            store::insert_delivery(db, tenant, &event.id, "webhook", Some(ep.id), None).await?;
        }
    }
    if let Some(email) = &to.consumer_email
        && event_type.emailed()
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
    event_type: EventType,
    items: Vec<(Value, Audience)>,
) -> Result<(), StoreError> {
    use crate::domain::EventId;
    use crate::store::entities::{delivery, event};
    let endpoints = store::endpoints_for_all(db, tenant).await?;
    let subscribed: Vec<_> = endpoints
        .iter()
        .filter(|ep| {
            let types: Vec<String> = serde_json::from_value(ep.event_types.clone()).unwrap_or_default();
            types.iter().any(|t| t == "*" || t == event_type.as_str())
        })
        .collect();
    let now = chrono::Utc::now();
    let mut events = Vec::with_capacity(items.len());
    let mut deliveries = Vec::new();
    let delivery = |event_id: &str, channel: &str, endpoint_id: Option<String>, recipient: Option<String>| {
        store::new_delivery(tenant, event_id, channel, endpoint_id, recipient, now)
    };
    for (data, to) in items {
        let id = EventId::generate().into_string();
        for ep in &subscribed {
            if ep.consumer_id.is_none() || ep.consumer_id == to.consumer_id {
                deliveries.push(delivery(&id, "webhook", Some(ep.id.clone()), None));
            }
        }
        if let Some(email) = to.consumer_email
            && event_type.emailed()
        {
            deliveries.push(delivery(&id, "email", None, Some(email)));
        }
        events.push(event::Model {
            id,
            tenant_id: tenant.as_str().to_owned(),
            event_type: event_type.as_str().to_owned(),
            payload: data,
            created_at: now,
        });
    }
    crate::store::insert_rows::<event::Entity>(db, &events).await?;
    crate::store::insert_rows::<delivery::Entity>(db, &deliveries).await?;
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

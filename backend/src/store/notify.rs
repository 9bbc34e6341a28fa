//! The event log, webhook endpoints and the delivery outbox.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, ExprTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value;

use super::entities::{delivery, event, webhook_endpoint};
use super::page::{Cursor, Page, paginate};
use super::{StoreError, begin_write};
use crate::domain::{DeliveryId, EventId, TenantId, WebhookEndpointId};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
pub const HELD: &str = "held";

/// Inserts an event.
///
/// # Errors
/// Database errors.
pub async fn insert_event(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    event_type: &str,
    payload: Value,
) -> Result<event::Model, StoreError> {
    let m = event::Model {
        id: EventId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        event_type: event_type.to_owned(),
        payload,
        created_at: Utc::now(),
    };
    Ok(m.into_active_model().reset_all().insert(db).await?)
}

/// A delivery of an event, due now.
#[must_use]
pub fn new_delivery(
    tenant: &TenantId,
    event_id: &str,
    channel: &str,
    endpoint_id: Option<String>,
    recipient: Option<String>,
    now: DateTime<Utc>,
) -> delivery::Model {
    delivery::Model {
        id: DeliveryId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        event_id: event_id.to_owned(),
        channel: channel.to_owned(),
        endpoint_id,
        recipient,
        state: PENDING.into(),
        attempts: 0,
        next_attempt_at: now,
        locked_until: None,
        last_status: None,
        last_error: None,
        delivered_at: None,
        created_at: now,
    }
}

/// Queues one delivery of an event.
///
/// # Errors
/// Database errors.
pub async fn insert_delivery(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    event_id: &str,
    channel: &str,
    endpoint_id: Option<String>,
    recipient: Option<String>,
) -> Result<(), StoreError> {
    new_delivery(tenant, event_id, channel, endpoint_id, recipient, Utc::now())
        .into_active_model()
        .reset_all()
        .insert(db)
        .await?;
    Ok(())
}

/// Enabled endpoints that receive a tenant's (or one consumer's) events.
///
/// # Errors
/// Database errors.
pub async fn endpoints_for(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    consumer_id: Option<&str>,
) -> Result<Vec<webhook_endpoint::Model>, StoreError> {
    let mut cond = sea_orm::Condition::any().add(webhook_endpoint::Column::ConsumerId.is_null());
    if let Some(c) = consumer_id {
        cond = cond.add(webhook_endpoint::Column::ConsumerId.eq(c));
    }
    Ok(webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::TenantId.eq(tenant.as_str()))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .filter(cond)
        .all(db)
        .await?)
}

/// Every enabled endpoint of the tenant, tenant-wide and per consumer (for bulk work).
///
/// # Errors
/// Database errors.
pub async fn endpoints_for_all(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<webhook_endpoint::Model>, StoreError> {
    Ok(webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::TenantId.eq(tenant.as_str()))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(db)
        .await?)
}

/// A new endpoint.
///
/// # Errors
/// Database errors.
pub async fn create_endpoint(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    consumer_id: Option<String>,
    url: String,
    secret: String,
    event_types: Vec<String>,
) -> Result<webhook_endpoint::Model, StoreError> {
    let now = Utc::now();
    Ok(webhook_endpoint::Model {
        id: WebhookEndpointId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        consumer_id,
        url,
        secret,
        event_types: Value::from(event_types),
        enabled: true,
        failures: 0,
        disabled_at: None,
        previous_secret: None,
        previous_secret_until: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    }
    .into_active_model()
    .reset_all()
    .insert(db)
    .await?)
}

/// The tenant's endpoints, newest first.
///
/// # Errors
/// Database errors.
pub async fn list_endpoints(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<webhook_endpoint::Model>, StoreError> {
    let mut q = webhook_endpoint::Entity::find().filter(webhook_endpoint::Column::TenantId.eq(tenant.as_str()));
    if let Some(c) = cursor {
        q = q.filter(webhook_endpoint::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(webhook_endpoint::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |e| &e.id))
}

/// The tenant's events, newest first, optionally of one type.
///
/// # Errors
/// Database errors.
pub async fn list_events(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    event_type: Option<&str>,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<event::Model>, StoreError> {
    let mut q = event::Entity::find().filter(event::Column::TenantId.eq(tenant.as_str()));
    if let Some(t) = event_type {
        q = q.filter(event::Column::EventType.eq(t));
    }
    if let Some(c) = cursor {
        q = q.filter(event::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(event::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |e| &e.id))
}

/// Deliveries of the given events.
///
/// # Errors
/// Database errors.
pub async fn deliveries_of(
    db: &impl ConnectionTrait,
    event_ids: &[String],
) -> Result<Vec<delivery::Model>, StoreError> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(delivery::Entity::find()
        .filter(delivery::Column::EventId.is_in(event_ids.iter().map(String::as_str)))
        .order_by_asc(delivery::Column::Id)
        .all(db)
        .await?)
}

/// Claims due deliveries for sending (leased until `until`).
///
/// # Errors
/// Database errors.
pub async fn claim(
    db: &DatabaseConnection,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<delivery::Model>, StoreError> {
    let now = Utc::now();
    let backend = db.get_database_backend();
    let lock = if backend == DatabaseBackend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE deliveries SET locked_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $2 \
           AND (locked_until IS NULL OR locked_until < $2) ORDER BY next_attempt_at LIMIT $3{lock}) \
         RETURNING *"
    );
    let stmt = Statement::from_sql_and_values(backend, sql, [until.into(), now.into(), limit.into()]);
    let txn = begin_write(db).await?;
    let rows = delivery::Entity::find().from_raw_sql(stmt).all(&txn).await?;
    txn.commit().await?;
    Ok(rows)
}

/// Records the outcome of one attempt.
///
/// # Errors
/// Database errors.
pub async fn record_attempt(
    db: &impl ConnectionTrait,
    id: &str,
    state: &str,
    status: Option<i32>,
    error: Option<String>,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let delivered = (state == DELIVERED).then(Utc::now);
    delivery::Entity::update_many()
        .col_expr(delivery::Column::State, Expr::value(state))
        .col_expr(delivery::Column::LastStatus, Expr::value(status))
        .col_expr(delivery::Column::LastError, Expr::value(error))
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(delivery::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(delivery::Column::DeliveredAt, Expr::value(delivered))
        .filter(delivery::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// One endpoint, by id (any tenant: for the worker).
///
/// # Errors
/// Database errors.
pub async fn endpoint(db: &impl ConnectionTrait, id: &str) -> Result<Option<webhook_endpoint::Model>, StoreError> {
    Ok(webhook_endpoint::Entity::find_by_id(id).one(db).await?)
}

/// One event, by id (any tenant: for the worker).
///
/// # Errors
/// Database errors.
pub async fn event(db: &impl ConnectionTrait, id: &str) -> Result<Option<event::Model>, StoreError> {
    Ok(event::Entity::find_by_id(id).one(db).await?)
}

/// Records how a delivery to an endpoint ended: a success clears the failure streak, a failure
/// lengthens it.
///
/// # Errors
/// Database errors.
pub async fn endpoint_outcome(db: &DatabaseConnection, id: &str, ok: bool) -> Result<(), StoreError> {
    let now = Utc::now();
    let col = |c| Expr::col((webhook_endpoint::Entity, c));
    if ok {
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::Failures, Expr::value(0))
            .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(webhook_endpoint::Column::Id.eq(id))
            .exec(db)
            .await?;
        return Ok(());
    }
    webhook_endpoint::Entity::update_many()
        .col_expr(webhook_endpoint::Column::Failures, col(webhook_endpoint::Column::Failures).add(1))
        .col_expr(
            webhook_endpoint::Column::FailingSince,
            Expr::case(webhook_endpoint::Column::FailingSince.is_null(), now)
                .finally(col(webhook_endpoint::Column::FailingSince))
                .into(),
        )
        .filter(webhook_endpoint::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Disables the endpoint when its failure streak is long enough in count and time; returns it
/// when it was disabled now. Call it in the transaction that also records why.
///
/// # Errors
/// Database errors.
pub async fn disable_if_failing(
    db: &impl ConnectionTrait,
    id: &str,
    disable_after: i32,
    disable_after_time: chrono::TimeDelta,
) -> Result<Option<webhook_endpoint::Model>, StoreError> {
    let now = Utc::now();
    let disabled = webhook_endpoint::Entity::update_many()
        .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
        .col_expr(webhook_endpoint::Column::DisabledAt, Expr::value(now))
        .filter(webhook_endpoint::Column::Id.eq(id))
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .filter(webhook_endpoint::Column::Failures.gte(disable_after))
        .filter(webhook_endpoint::Column::FailingSince.lte(now - disable_after_time))
        .exec(db)
        .await?;
    if disabled.rows_affected == 0 {
        return Ok(None);
    }
    Ok(webhook_endpoint::Entity::find_by_id(id).one(db).await?)
}

/// One endpoint of the tenant.
///
/// # Errors
/// `NotFound`, or database errors.
pub async fn tenant_endpoint(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &str,
) -> Result<webhook_endpoint::Model, StoreError> {
    webhook_endpoint::Entity::find_by_id(id)
        .filter(webhook_endpoint::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Saves a changed endpoint.
///
/// # Errors
/// Database errors.
pub async fn save_endpoint(
    db: &impl ConnectionTrait,
    mut ep: webhook_endpoint::Model,
) -> Result<webhook_endpoint::Model, StoreError> {
    ep.updated_at = Utc::now();
    Ok(ep.into_active_model().reset_all().update(db).await?)
}

/// Deletes an endpoint with its delivery log.
///
/// # Errors
/// `NotFound`, or database errors.
pub async fn delete_endpoint(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &str,
) -> Result<webhook_endpoint::Model, StoreError> {
    let ep = tenant_endpoint(db, tenant, id).await?;
    delivery::Entity::delete_many().filter(delivery::Column::EndpointId.eq(ep.id.as_str())).exec(db).await?;
    webhook_endpoint::Entity::delete_by_id(ep.id.as_str()).exec(db).await?;
    Ok(ep)
}

/// Pending deliveries, for metrics.
///
/// # Errors
/// Database errors.
pub async fn pending_count(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    Ok(delivery::Entity::find().filter(delivery::Column::State.eq(PENDING)).count(db).await?)
}

/// How long the oldest delivery that is due has been waiting, in seconds (0 when none is).
///
/// # Errors
/// Database errors.
pub async fn lag_seconds(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    use sea_orm::{QueryOrder, QuerySelect};
    let now = chrono::Utc::now();
    let oldest: Option<chrono::DateTime<chrono::Utc>> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::NextAttemptAt)
        .filter(delivery::Column::State.eq(PENDING))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .order_by_asc(delivery::Column::NextAttemptAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(oldest.map_or(0, |t| u64::try_from((now - t).num_seconds()).unwrap_or(0)))
}

/// Endpoints whose signing secrets are still stored as written before sealing (`whsec_…`).
///
/// # Errors
/// Database errors.
pub async fn unsealed_endpoints(db: &impl ConnectionTrait) -> Result<Vec<webhook_endpoint::Model>, StoreError> {
    Ok(webhook_endpoint::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(webhook_endpoint::Column::Secret.starts_with("whsec_"))
                .add(webhook_endpoint::Column::PreviousSecret.starts_with("whsec_")),
        )
        .all(db)
        .await?)
}

/// Replaces an endpoint's stored secrets (sealing them), unless they changed meanwhile.
///
/// # Errors
/// Database errors.
pub async fn replace_secrets(
    db: &impl ConnectionTrait,
    ep: &webhook_endpoint::Model,
    secret: String,
    previous: Option<String>,
) -> Result<(), StoreError> {
    webhook_endpoint::Entity::update_many()
        .col_expr(webhook_endpoint::Column::Secret, Expr::value(secret))
        .col_expr(webhook_endpoint::Column::PreviousSecret, Expr::value(previous))
        .filter(webhook_endpoint::Column::Id.eq(ep.id.as_str()))
        .filter(webhook_endpoint::Column::Secret.eq(ep.secret.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

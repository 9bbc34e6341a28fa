//! Rotation policies, advance notices sent, and secrets awaiting pickup.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{pending_secret, rotation_policy, sent_notice};
use super::page::{Cursor, Page, paginate};
use super::{StoreError, is_unique_violation};
use crate::domain::{PolicyId, TenantId};

/// Inserts a policy.
///
/// # Errors
/// `Conflict` when the API (or the consumer of the API) has a policy already.
pub async fn insert(
    db: &impl ConnectionTrait,
    model: rotation_policy::Model,
) -> Result<rotation_policy::Model, StoreError> {
    model.into_active_model().reset_all().insert(db).await.map_err(|e| {
        StoreError::from(e).unique_as_conflict("this API (or this consumer of it) has a rotation policy already")
    })
}

/// Saves a changed policy.
///
/// # Errors
/// Database errors.
pub async fn save(
    db: &impl ConnectionTrait,
    model: rotation_policy::Model,
) -> Result<rotation_policy::Model, StoreError> {
    let mut am = model.into_active_model().reset_all();
    am.updated_at = sea_orm::Set(Utc::now());
    Ok(am.update(db).await?)
}

/// One policy of the tenant.
///
/// # Errors
/// `NotFound`.
pub async fn get(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &PolicyId,
) -> Result<rotation_policy::Model, StoreError> {
    rotation_policy::Entity::find_by_id(id.as_str())
        .filter(rotation_policy::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// An API's own policy (not a consumer's override of it), if it has one.
///
/// # Errors
/// Database errors.
pub async fn of_api(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    api_id: &str,
) -> Result<Option<rotation_policy::Model>, StoreError> {
    Ok(rotation_policy::Entity::find()
        .filter(rotation_policy::Column::TenantId.eq(tenant.as_str()))
        .filter(rotation_policy::Column::ApiId.eq(api_id))
        .filter(rotation_policy::Column::ConsumerId.is_null())
        .one(db)
        .await?)
}

/// Deletes a policy.
///
/// # Errors
/// `NotFound`.
pub async fn delete(db: &impl ConnectionTrait, tenant: &TenantId, id: &PolicyId) -> Result<(), StoreError> {
    let res = rotation_policy::Entity::delete_many()
        .filter(rotation_policy::Column::Id.eq(id.as_str()))
        .filter(rotation_policy::Column::TenantId.eq(tenant.as_str()))
        .exec(db)
        .await?;
    if res.rows_affected == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// A page of the tenant's policies, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<rotation_policy::Model>, StoreError> {
    let mut q = rotation_policy::Entity::find().filter(rotation_policy::Column::TenantId.eq(tenant.as_str()));
    if let Some(c) = cursor {
        q = q.filter(rotation_policy::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(rotation_policy::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |p| &p.id))
}

/// Every enabled policy (for the scheduler).
///
/// # Errors
/// Database errors.
pub async fn enabled(db: &impl ConnectionTrait) -> Result<Vec<rotation_policy::Model>, StoreError> {
    Ok(rotation_policy::Entity::find().filter(rotation_policy::Column::Enabled.eq(true)).all(db).await?)
}

/// The policy in force for a key: the consumer's override, else the API's.
///
/// # Errors
/// Database errors.
pub async fn effective(
    db: &impl ConnectionTrait,
    api_id: &str,
    consumer_id: Option<&str>,
) -> Result<Option<rotation_policy::Model>, StoreError> {
    let all = rotation_policy::Entity::find().filter(rotation_policy::Column::ApiId.eq(api_id)).all(db).await?;
    let own = consumer_id.and_then(|c| all.iter().find(|p| p.consumer_id.as_deref() == Some(c)).cloned());
    Ok(own.or_else(|| all.into_iter().find(|p| p.consumer_id.is_none())))
}

/// Consumers of an API that have their own policy.
///
/// # Errors
/// Database errors.
pub async fn overridden_consumers(db: &impl ConnectionTrait, api_id: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<Option<String>> = rotation_policy::Entity::find()
        .select_only()
        .column(rotation_policy::Column::ConsumerId)
        .filter(rotation_policy::Column::ApiId.eq(api_id))
        .filter(rotation_policy::Column::ConsumerId.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().flatten().collect())
}

/// Records a notice; `false` when it was sent already (so it is sent once).
///
/// # Errors
/// Database errors.
pub async fn mark_notice(db: &impl ConnectionTrait, key_id: &str, lead_seconds: i64) -> Result<bool, StoreError> {
    let row = sent_notice::Model { key_id: key_id.to_owned(), lead_seconds, sent_at: Utc::now() };
    match row.into_active_model().reset_all().insert(db).await {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Keeps a sealed secret for pickup.
///
/// # Errors
/// Database errors.
pub async fn hold_secret(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    key_id: &str,
    lineage_id: &str,
    sealed: String,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    pending_secret::Model {
        key_id: key_id.to_owned(),
        tenant_id: tenant.as_str().to_owned(),
        lineage_id: lineage_id.to_owned(),
        sealed,
        created_at: Utc::now(),
        expires_at,
    }
    .into_active_model()
    .reset_all()
    .insert(db)
    .await?;
    Ok(())
}

/// Takes (and deletes) the newest unexpired secret waiting in a lineage.
///
/// # Errors
/// Database errors.
pub async fn take_secret(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    lineage_id: &str,
) -> Result<Option<pending_secret::Model>, StoreError> {
    let found = pending_secret::Entity::find()
        .filter(pending_secret::Column::TenantId.eq(tenant.as_str()))
        .filter(pending_secret::Column::LineageId.eq(lineage_id))
        .filter(pending_secret::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(pending_secret::Column::KeyId)
        .one(db)
        .await?;
    if let Some(p) = &found {
        let res = pending_secret::Entity::delete_by_id(p.key_id.as_str()).exec(db).await?;
        // Someone else took it at the same moment: it is shown once only.
        if res.rows_affected == 0 {
            return Ok(None);
        }
    }
    Ok(found)
}

/// The unexpired secret kept for this key version, if any (left in place).
///
/// # Errors
/// Database errors.
pub async fn kept_secret(db: &impl ConnectionTrait, key_id: &str) -> Result<Option<pending_secret::Model>, StoreError> {
    Ok(pending_secret::Entity::find_by_id(key_id)
        .filter(pending_secret::Column::ExpiresAt.gt(Utc::now()))
        .one(db)
        .await?)
}

/// Forgets the secret kept for this key version: it has been handed over.
///
/// # Errors
/// Database errors.
pub async fn forget_secret(db: &impl ConnectionTrait, key_id: &str) -> Result<(), StoreError> {
    pending_secret::Entity::delete_by_id(key_id).exec(db).await?;
    Ok(())
}

/// Whether an unexpired secret waits for pickup in a lineage.
///
/// # Errors
/// Database errors.
pub async fn has_pending(db: &impl ConnectionTrait, tenant: &TenantId, lineage_id: &str) -> Result<bool, StoreError> {
    Ok(pending_secret::Entity::find()
        .filter(pending_secret::Column::TenantId.eq(tenant.as_str()))
        .filter(pending_secret::Column::LineageId.eq(lineage_id))
        .filter(pending_secret::Column::ExpiresAt.gt(Utc::now()))
        .one(db)
        .await?
        .is_some())
}

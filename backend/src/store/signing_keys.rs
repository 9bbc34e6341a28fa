//! A tenant's signing keys (see the migration `tokens_portal`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::StoreError;
use super::entities::signing_key;
use crate::domain::TenantId;

/// Access-token keys, published in the JWKS.
pub const TOKEN: &str = "token";
/// The key of portal links.
pub const PORTAL: &str = "portal";

/// Every key of one purpose of the tenant, oldest activation first.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    purpose: &str,
) -> Result<Vec<signing_key::Model>, StoreError> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::TenantId.eq(tenant.as_str()))
        .filter(signing_key::Column::Purpose.eq(purpose))
        .order_by_asc(signing_key::Column::ActivatesAt)
        .order_by_asc(signing_key::Column::Id)
        .all(db)
        .await?)
}

/// Adds a key.
///
/// # Errors
/// Database errors.
pub async fn insert(db: &impl ConnectionTrait, model: signing_key::Model) -> Result<signing_key::Model, StoreError> {
    Ok(model.into_active_model().reset_all().insert(db).await?)
}

/// Marks a key revoked at `at` (once: a revoked key keeps its first time).
///
/// # Errors
/// `NotFound` when the tenant has no such token key.
pub async fn revoke(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    kid: &str,
    at: DateTime<Utc>,
) -> Result<signing_key::Model, StoreError> {
    let k = signing_key::Entity::find_by_id(kid)
        .filter(signing_key::Column::TenantId.eq(tenant.as_str()))
        .filter(signing_key::Column::Purpose.eq(TOKEN))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)?;
    if k.revoked_at.is_some() {
        return Ok(k);
    }
    let mut am = k.into_active_model();
    am.revoked_at = sea_orm::Set(Some(at));
    Ok(am.update(db).await?)
}

/// The tenants that have token keys (for the rotation schedule).
///
/// # Errors
/// Database errors.
pub async fn tenants_with_token_keys(db: &impl ConnectionTrait) -> Result<Vec<String>, StoreError> {
    Ok(signing_key::Entity::find()
        .select_only()
        .column(signing_key::Column::TenantId)
        .filter(signing_key::Column::Purpose.eq(TOKEN))
        .distinct()
        .into_tuple::<String>()
        .all(db)
        .await?)
}

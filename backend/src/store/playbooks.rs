//! A tenant's own playbooks.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::StoreError;
use super::entities::{playbook, playbook_run};
use crate::domain::{PlaybookId, RunId, TenantId};

/// How many playbooks a tenant may keep.
pub const MAX_PER_TENANT: u64 = 200;

/// One playbook of the tenant.
///
/// # Errors
/// `NotFound`.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId, id: &PlaybookId) -> Result<playbook::Model, StoreError> {
    playbook::Entity::find_by_id(id.as_str())
        .filter(playbook::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The tenant's playbooks, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<Vec<playbook::Model>, StoreError> {
    Ok(playbook::Entity::find()
        .filter(playbook::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(playbook::Column::Id)
        .limit(MAX_PER_TENANT)
        .all(db)
        .await?)
}

/// Inserts a playbook unless the tenant has [`MAX_PER_TENANT`] already.
///
/// # Errors
/// `Conflict` past [`MAX_PER_TENANT`], database errors.
pub async fn insert(db: &impl ConnectionTrait, row: playbook::Model) -> Result<playbook::Model, StoreError> {
    use sea_orm::PaginatorTrait;
    let n = playbook::Entity::find().filter(playbook::Column::TenantId.eq(row.tenant_id.as_str())).count(db).await?;
    if n >= MAX_PER_TENANT {
        return Err(StoreError::Conflict(format!("a team keeps at most {MAX_PER_TENANT} playbooks")));
    }
    Ok(row.into_active_model().reset_all().insert(db).await?)
}

/// A run of the tenant.
///
/// # Errors
/// `NotFound`, database errors.
pub async fn get_run(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &RunId,
) -> Result<playbook_run::Model, StoreError> {
    playbook_run::Entity::find_by_id(id.as_str())
        .filter(playbook_run::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The tenant's latest `limit` runs, newest first.
///
/// # Errors
/// Database errors.
pub async fn list_runs(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    limit: u64,
) -> Result<Vec<playbook_run::Model>, StoreError> {
    Ok(playbook_run::Entity::find()
        .filter(playbook_run::Column::TenantId.eq(tenant.as_str()))
        .order_by_desc(playbook_run::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

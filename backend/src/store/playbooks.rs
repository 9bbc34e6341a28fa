//! A tenant's own playbooks.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::StoreError;
use super::entities::{playbook, playbook_run};
use crate::domain::{PlaybookId, RunId, TenantId};
use crate::playbooks::catalogue::Definition;

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

/// Saves a new playbook, with its audit entry.
///
/// # Errors
/// `Conflict` past [`MAX_PER_TENANT`], database errors.
pub async fn create_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &TenantId,
    actor: &str,
    d: &Definition,
) -> Result<playbook::Model, StoreError> {
    use sea_orm::PaginatorTrait;
    let now = Utc::now();
    let row = playbook::Model {
        id: PlaybookId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        name: d.name.clone(),
        description: d.description.clone(),
        target_kind: d.target.as_str().to_owned(),
        steps: serde_json::to_value(&d.steps).unwrap_or_default(),
        created_by: Some(actor.to_owned()),
        created_at: now,
        updated_at: now,
    };
    crate::audit::write(db, tenant, actor, async |txn| {
        let n = playbook::Entity::find().filter(playbook::Column::TenantId.eq(tenant.as_str())).count(txn).await?;
        if n >= MAX_PER_TENANT {
            return Err(StoreError::Conflict(format!("a team keeps at most {MAX_PER_TENANT} playbooks")));
        }
        let saved = row.clone().into_active_model().reset_all().insert(txn).await?;
        let entry = crate::audit::Entry::new(
            "playbook.created",
            "playbook",
            saved.id.clone(),
            format!("Created the playbook \"{}\" ({} steps, on a {})", d.name, d.steps.len(), d.target.as_str()),
        )
        .with(serde_json::json!({"target": d.target.as_str(), "steps": d.steps}));
        Ok((saved, vec![entry]))
    })
    .await
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

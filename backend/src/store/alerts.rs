//! Alerts of a tenant: lookups and lists. Raising and changing them is in `crate::alerts`.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::alert;
use super::{Cursor, Page, StoreError};
use crate::domain::{AlertId, TenantId};

/// `open`, `acknowledged`, `resolved`.
pub const STATES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// One alert of the tenant.
///
/// # Errors
/// `NotFound`, database errors.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId, id: &AlertId) -> Result<alert::Model, StoreError> {
    alert::Entity::find_by_id(id.as_str())
        .filter(alert::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// One state, or the live ones (open and acknowledged) with `live`.
    pub state: Option<String>,
    pub live: bool,
    pub kind: Option<String>,
    pub subject_id: Option<String>,
}

/// The tenant's alerts, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    f: &Filter,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<alert::Model>, StoreError> {
    let mut q = alert::Entity::find().filter(alert::Column::TenantId.eq(tenant.as_str()));
    if let Some(s) = &f.state {
        q = q.filter(alert::Column::State.eq(s.as_str()));
    } else if f.live {
        q = q.filter(alert::Column::State.ne("resolved"));
    }
    if let Some(k) = &f.kind {
        q = q.filter(alert::Column::Kind.eq(k.as_str()));
    }
    if let Some(s) = &f.subject_id {
        q = q.filter(alert::Column::SubjectId.eq(s.as_str()));
    }
    if let Some(c) = cursor {
        q = q.filter(alert::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(alert::Column::Id).limit(limit + 1).all(db).await?;
    Ok(super::page::paginate(rows, limit, |a| &a.id))
}

/// How many alerts of the tenant are open (not yet acknowledged).
///
/// # Errors
/// Database errors.
pub async fn open_count(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<u64, StoreError> {
    Ok(alert::Entity::find()
        .filter(alert::Column::TenantId.eq(tenant.as_str()))
        .filter(alert::Column::State.eq("open"))
        .count(db)
        .await?)
}

/// Open alerts of every tenant, for the platform's metrics.
///
/// # Errors
/// Database errors.
pub async fn open_total(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    Ok(alert::Entity::find().filter(alert::Column::State.eq("open")).count(db).await?)
}

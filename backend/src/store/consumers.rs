//! Consumers: the provider's customers. Deleting one is soft and revokes its keys.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::Value;

use super::StoreError;
use super::entities::consumer;
use super::page::{Cursor, Page, paginate};
use crate::domain::{ConsumerId, TenantId};

/// A consumer to create.
#[derive(Debug, Clone)]
pub struct NewConsumer {
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub meta: Value,
    pub stripe_customer_id: Option<String>,
}

/// Creates a consumer.
///
/// # Errors
/// `Conflict` when the external id is taken in this tenant.
pub async fn create(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    new: NewConsumer,
) -> Result<consumer::Model, StoreError> {
    let now = Utc::now();
    let model = consumer::Model {
        id: ConsumerId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        external_id: new.external_id,
        name: new.name,
        email: new.email,
        meta: new.meta,
        stripe_customer_id: new.stripe_customer_id,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    };
    model
        .into_active_model()
        .reset_all()
        .insert(db)
        .await
        .map_err(|e| StoreError::from(e).unique_as_conflict("a consumer with this external_id exists already"))
}

/// One live consumer of the tenant.
///
/// # Errors
/// `NotFound`, also for deleted consumers.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId, id: &ConsumerId) -> Result<consumer::Model, StoreError> {
    consumer::Entity::find_by_id(id.as_str())
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// A page of live consumers, newest first, optionally only the one with `external_id`.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    external_id: Option<&str>,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<consumer::Model>, StoreError> {
    let mut q = consumer::Entity::find()
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::DeletedAt.is_null());
    if let Some(x) = external_id {
        q = q.filter(consumer::Column::ExternalId.eq(x));
    }
    if let Some(c) = cursor {
        q = q.filter(consumer::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(consumer::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |c| &c.id))
}

/// The names of these consumers of the tenant (deleted ones too), by id.
///
/// # Errors
/// Database errors.
pub async fn names(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows: Vec<(String, String)> = consumer::Entity::find()
        .select_only()
        .column(consumer::Column::Id)
        .column(consumer::Column::Name)
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Changes to a consumer.
#[derive(Debug, Clone, Default)]
pub struct ConsumerPatch {
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub meta: Option<Value>,
    /// `Some(None)` clears it.
    pub stripe_customer_id: Option<Option<String>>,
}

/// Applies a patch.
///
/// # Errors
/// `NotFound`; `Conflict` when the new external id is taken.
pub async fn update(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &ConsumerId,
    p: ConsumerPatch,
) -> Result<consumer::Model, StoreError> {
    let mut am = get(db, tenant, id).await?.into_active_model();
    if let Some(v) = p.external_id {
        am.external_id = Set(v);
    }
    if let Some(v) = p.name {
        am.name = Set(v);
    }
    if let Some(v) = p.email {
        am.email = Set(v);
    }
    if let Some(v) = p.meta {
        am.meta = Set(v);
    }
    if let Some(v) = p.stripe_customer_id {
        am.stripe_customer_id = Set(v);
    }
    am.updated_at = Set(Utc::now());
    am.update(db)
        .await
        .map_err(|e| StoreError::from(e).unique_as_conflict("a consumer with this external_id exists already"))
}

/// Marks the consumer deleted (its keys are revoked by the caller in the same transaction).
///
/// # Errors
/// `NotFound`.
pub async fn soft_delete(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &ConsumerId,
) -> Result<consumer::Model, StoreError> {
    let mut am = get(db, tenant, id).await?.into_active_model();
    let now = Utc::now();
    am.deleted_at = Set(Some(now));
    am.updated_at = Set(now);
    Ok(am.update(db).await?)
}

/// A page of live consumers whose name, external id or email contains `q` (case-insensitive),
/// newest first.
///
/// # Errors
/// Database errors.
pub async fn search(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    q: &str,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<consumer::Model>, StoreError> {
    use sea_orm::ExprTrait;
    use sea_orm::sea_query::{Expr, Func, LikeExpr};
    let mut query = consumer::Entity::find()
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::DeletedAt.is_null());
    let q = q.trim().to_lowercase();
    if !q.is_empty() {
        let pattern = format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let like =
            |c: consumer::Column| Expr::expr(Func::lower(Expr::col(c))).like(LikeExpr::new(&pattern).escape('\\'));
        query = query.filter(
            sea_orm::Condition::any()
                .add(like(consumer::Column::Name))
                .add(like(consumer::Column::ExternalId))
                .add(like(consumer::Column::Email)),
        );
    }
    if let Some(c) = cursor {
        query = query.filter(consumer::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = query.order_by_desc(consumer::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |c| &c.id))
}

/// The live consumers with this email address (case-insensitive), at most ten.
///
/// # Errors
/// Database errors.
pub async fn by_email(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    email: &str,
) -> Result<Vec<consumer::Model>, StoreError> {
    use sea_orm::sea_query::{Expr, ExprTrait, Func};
    Ok(consumer::Entity::find()
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::DeletedAt.is_null())
        .filter(ExprTrait::eq(Expr::expr(Func::lower(Expr::col(consumer::Column::Email))), email.to_lowercase()))
        .limit(10)
        .all(db)
        .await?)
}

/// The live consumer of the tenant with this external id.
///
/// # Errors
/// Database errors.
pub async fn by_external_id(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    external_id: &str,
) -> Result<Option<consumer::Model>, StoreError> {
    Ok(consumer::Entity::find()
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::DeletedAt.is_null())
        .filter(consumer::Column::ExternalId.eq(external_id))
        .one(db)
        .await?)
}

/// These consumers of the tenant (deleted ones too).
///
/// # Errors
/// Database errors.
pub async fn many(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[&str],
) -> Result<Vec<consumer::Model>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(consumer::Entity::find()
        .filter(consumer::Column::TenantId.eq(tenant.as_str()))
        .filter(consumer::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

//! APIs (keyspaces) of a tenant. The system API that holds root keys is never listed here.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::Value;

use super::StoreError;
use super::entities::api;
use super::page::{Cursor, Page, paginate};
use crate::domain::input::RateLimit;
use crate::domain::{ApiId, Environment, KeyHead, KeyPrefix, TenantId};

/// The prefix and environment of every tenant's system API, whose keys are root keys.
pub const SYSTEM_PREFIX: &str = "kr";
pub const SYSTEM_ENVIRONMENT: &str = "root";

/// The head of the keys of `api`: its prefix and environment, or the root keys' head.
///
/// # Errors
/// `Db` for a stored prefix that is not one (a corrupt row).
pub fn head_of(api: &api::Model) -> Result<KeyHead, StoreError> {
    if api.is_system {
        return Ok(KeyHead::Root);
    }
    KeyHead::of_api(&api.key_prefix, &api.environment)
        .map_err(|e| StoreError::Db(sea_orm::DbErr::Custom(format!("API {} has a bad key head: {e}", api.id))))
}

/// Creates an API.
///
/// # Errors
/// `Conflict` when the tenant already has an API with this prefix and environment.
pub async fn create(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    name: String,
    prefix: &KeyPrefix,
    env: Environment,
    scope_catalogue: Vec<String>,
) -> Result<api::Model, StoreError> {
    let now = Utc::now();
    let model = api::Model {
        id: ApiId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        name,
        key_prefix: prefix.as_str().to_owned(),
        environment: env.as_str().to_owned(),
        is_system: false,
        scope_catalogue: Value::from(scope_catalogue),
        default_ratelimit: None,
        leak_action: "rotate".into(),
        leak_grace_seconds: 900,
        token_ttl_seconds: 900,
        stripe_meter_event: None,
        gateway: None,
        legacy_key_formats: false,
        created_at: now,
        updated_at: now,
    };
    model.into_active_model().reset_all().insert(db).await.map_err(|e| {
        StoreError::from(e).unique_as_conflict("an API with this key_prefix and environment exists already")
    })
}

/// Creates the tenant's system API (root keys).
///
/// # Errors
/// Database errors.
pub async fn create_system(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<api::Model, StoreError> {
    let now = Utc::now();
    let model = api::Model {
        id: ApiId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        name: "Root keys".into(),
        key_prefix: SYSTEM_PREFIX.into(),
        environment: SYSTEM_ENVIRONMENT.into(),
        is_system: true,
        scope_catalogue: Value::Array(vec![]),
        default_ratelimit: None,
        // A leaked root key opens the whole management API: it is revoked at once.
        leak_action: "revoke".into(),
        leak_grace_seconds: 0,
        token_ttl_seconds: 900,
        stripe_meter_event: None,
        gateway: None,
        legacy_key_formats: false,
        created_at: now,
        updated_at: now,
    };
    Ok(model.into_active_model().reset_all().insert(db).await?)
}

/// The tenant's system API.
///
/// # Errors
/// `NotFound` when the tenant has none (it always should).
pub async fn system(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<api::Model, StoreError> {
    api::Entity::find()
        .filter(api::Column::TenantId.eq(tenant.as_str()))
        .filter(api::Column::IsSystem.eq(true))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// One of the tenant's (non-system) APIs.
///
/// # Errors
/// `NotFound`.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId, id: &ApiId) -> Result<api::Model, StoreError> {
    api::Entity::find_by_id(id.as_str())
        .filter(api::Column::TenantId.eq(tenant.as_str()))
        .filter(api::Column::IsSystem.eq(false))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// An API by its id alone (the gateway endpoint names it before any key is read); never the
/// system API.
///
/// # Errors
/// Database errors.
pub async fn find(db: &impl ConnectionTrait, id: &ApiId) -> Result<Option<api::Model>, StoreError> {
    Ok(api::Entity::find_by_id(id.as_str()).filter(api::Column::IsSystem.eq(false)).one(db).await?)
}

/// An API of the tenant, the system API (root keys) included.
///
/// # Errors
/// `NotFound`.
pub async fn get_any(db: &impl ConnectionTrait, tenant: &TenantId, id: &ApiId) -> Result<api::Model, StoreError> {
    api::Entity::find_by_id(id.as_str())
        .filter(api::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// A page of the tenant's APIs, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<api::Model>, StoreError> {
    let mut q =
        api::Entity::find().filter(api::Column::TenantId.eq(tenant.as_str())).filter(api::Column::IsSystem.eq(false));
    if let Some(c) = cursor {
        q = q.filter(api::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(api::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |a| &a.id))
}

/// Changes to an API.
#[derive(Debug, Clone, Default)]
pub struct ApiPatch {
    pub name: Option<String>,
    pub scope_catalogue: Option<Vec<String>>,
    pub default_ratelimit: Option<Option<RateLimit>>,
    /// `(action, grace_seconds)`.
    pub leak_policy: Option<(String, i64)>,
    pub token_ttl_seconds: Option<i64>,
    /// `Some(None)` stops reporting the API's verifications.
    pub stripe_meter_event: Option<Option<String>>,
    /// `Some(None)` goes back to the defaults.
    pub gateway: Option<Option<Value>>,
    pub legacy_key_formats: Option<bool>,
}

/// Applies a patch.
///
/// # Errors
/// `NotFound`.
pub async fn update(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &ApiId,
    p: ApiPatch,
) -> Result<api::Model, StoreError> {
    let mut am = get(db, tenant, id).await?.into_active_model();
    if let Some(v) = p.name {
        am.name = Set(v);
    }
    if let Some(v) = p.scope_catalogue {
        am.scope_catalogue = Set(Value::from(v));
    }
    if let Some(v) = p.default_ratelimit {
        am.default_ratelimit = Set(v.and_then(|r| serde_json::to_value(r).ok()));
    }
    if let Some((action, grace)) = p.leak_policy {
        am.leak_action = Set(action);
        am.leak_grace_seconds = Set(grace);
    }
    if let Some(ttl) = p.token_ttl_seconds {
        am.token_ttl_seconds = Set(ttl);
    }
    if let Some(v) = p.stripe_meter_event {
        am.stripe_meter_event = Set(v);
    }
    if let Some(v) = p.gateway {
        am.gateway = Set(v);
    }
    if let Some(v) = p.legacy_key_formats {
        am.legacy_key_formats = Set(v);
    }
    am.updated_at = Set(Utc::now());
    Ok(am.update(db).await?)
}

/// The ids of every API (of any tenant) that accepts keys of a foreign format.
///
/// # Errors
/// Database errors.
pub async fn with_legacy_formats(db: &impl ConnectionTrait) -> Result<Vec<String>, StoreError> {
    Ok(api::Entity::find()
        .select_only()
        .column(api::Column::Id)
        .filter(api::Column::LegacyKeyFormats.eq(true))
        .into_tuple()
        .all(db)
        .await?)
}

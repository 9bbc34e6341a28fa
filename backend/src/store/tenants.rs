//! Tenants and their owners. A new tenant gets its system API and a first root key.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};
use serde_json::json;

use super::entities::{api, membership, tenant, user};
use super::{StoreError, apis};
use crate::domain::TenantId;

/// Inserts a tenant with the id given, its owner (or reuses the user with that email, else
/// makes one with `new_owner_id`), the owner's membership and the system API. Returns the tenant,
/// the owner's user id and the system API.
///
/// # Errors
/// Database errors.
pub async fn insert(
    txn: &impl ConnectionTrait,
    id: &TenantId,
    name: &str,
    owner_email: &str,
    new_owner_id: &str,
) -> Result<(tenant::Model, String, api::Model), StoreError> {
    let now = Utc::now();
    let slug = format!("{}-{}", slugify(name), &id.as_str()[id.as_str().len() - 6..]);
    let t = tenant::Model {
        id: id.as_str().to_owned(),
        name: name.to_owned(),
        slug,
        plan: "free".into(),
        settings: json!({}),
        created_at: now,
    }
    .into_active_model()
    .reset_all()
    .insert(txn)
    .await?;

    let user_id = match user::Entity::find().filter(user::Column::Email.eq(owner_email)).one(txn).await? {
        Some(u) => u.id,
        None => {
            user::Model {
                id: new_owner_id.to_owned(),
                email: owner_email.to_owned(),
                name: None,
                password_hash: None,
                totp_secret: None,
                totp_last_step: None,
                created_at: now,
            }
            .into_active_model()
            .reset_all()
            .insert(txn)
            .await?
            .id
        }
    };
    membership::Model { user_id: user_id.clone(), tenant_id: t.id.clone(), role: "owner".into(), created_at: now }
        .into_active_model()
        .reset_all()
        .insert(txn)
        .await?;
    let system = apis::create_system(txn, id).await?;
    Ok((t, user_id, system))
}

fn slugify(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    s.truncate(40);
    if s.is_empty() { "tenant".into() } else { s }
}

/// One tenant.
///
/// # Errors
/// `NotFound`, database errors.
pub async fn get(db: &impl ConnectionTrait, id: &TenantId) -> Result<tenant::Model, StoreError> {
    tenant::Entity::find_by_id(id.as_str()).one(db).await?.ok_or(StoreError::NotFound)
}

/// Sets one of a tenant's settings.
///
/// # Errors
/// `NotFound`, database errors.
pub async fn set_setting(
    db: &impl ConnectionTrait,
    id: &TenantId,
    name: &str,
    value: serde_json::Value,
) -> Result<tenant::Model, StoreError> {
    use sea_orm::{ActiveModelTrait, Set};
    let t = get(db, id).await?;
    let mut settings = t.settings.clone();
    if !settings.is_object() {
        settings = json!({});
    }
    settings[name] = value;
    let mut am = t.into_active_model();
    am.settings = Set(settings);
    Ok(am.update(db).await?)
}

/// Every tenant, oldest first.
///
/// # Errors
/// Database errors.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<tenant::Model>, StoreError> {
    use sea_orm::QueryOrder;
    Ok(tenant::Entity::find().order_by_asc(tenant::Column::Id).all(db).await?)
}

/// Does any tenant exist yet?
///
/// # Errors
/// Database errors.
pub async fn any(db: &impl ConnectionTrait) -> Result<bool, StoreError> {
    Ok(tenant::Entity::find().one(db).await?.is_some())
}

/// The tenant with this slug.
///
/// # Errors
/// `NotFound`.
pub async fn by_slug(db: &impl ConnectionTrait, slug: &str) -> Result<tenant::Model, StoreError> {
    use sea_orm::{ColumnTrait, QueryFilter};
    tenant::Entity::find().filter(tenant::Column::Slug.eq(slug)).one(db).await?.ok_or(StoreError::NotFound)
}

/// Sets the tenant's plan.
///
/// # Errors
/// `NotFound`; database errors.
pub async fn set_plan(db: &impl ConnectionTrait, id: &TenantId, plan: &str) -> Result<(), StoreError> {
    use sea_orm::{ActiveModelTrait, Set};
    let t = get(db, id).await?;
    let mut am = t.into_active_model();
    am.plan = Set(plan.to_owned());
    am.update(db).await?;
    Ok(())
}

//! Tenants and their owners. A new tenant gets its system API and a first root key.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
};
use serde_json::json;

use super::entities::{membership, tenant, user};
use super::keys::{self, NewKey};
use super::{StoreError, apis};
use crate::domain::{ApiId, ApiKey, KeyHead, ScopeSet, TenantId, UserId};

/// What creating a tenant returns: the only time the root key is shown.
#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: tenant::Model,
    pub root_key: ApiKey,
}

/// Creates a tenant, its owner (or reuses the user with that email), the system API and a
/// root key with every scope — in one transaction.
///
/// # Errors
/// Database errors.
pub async fn create(db: &DatabaseConnection, name: &str, owner_email: &str) -> Result<CreatedTenant, StoreError> {
    let txn = super::begin_write(db).await?;
    let now = Utc::now();
    let id = TenantId::generate();
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
    .insert(&txn)
    .await?;

    let user_id = match user::Entity::find().filter(user::Column::Email.eq(owner_email)).one(&txn).await? {
        Some(u) => u.id,
        None => {
            user::Model {
                id: UserId::generate().into_string(),
                email: owner_email.to_owned(),
                name: None,
                password_hash: None,
                totp_secret: None,
                totp_last_step: None,
                created_at: now,
            }
            .into_active_model()
            .reset_all()
            .insert(&txn)
            .await?
            .id
        }
    };
    membership::Model { user_id, tenant_id: t.id.clone(), role: "owner".into(), created_at: now }
        .into_active_model()
        .reset_all()
        .insert(&txn)
        .await?;

    let system = apis::create_system(&txn, &id).await?;
    let (_, root_key) = keys::insert(
        &txn,
        NewKey::root(
            id.clone(),
            ApiId::from_trusted(system.id),
            Some("Initial root key".into()),
            ScopeSet::parse_all(&["*"]).unwrap_or_default(),
            None,
            Some("cli".into()),
        ),
        &KeyHead::Root,
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedTenant { tenant: t, root_key })
}

fn slugify(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s = s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
    s.truncate(40);
    if s.is_empty() { "tenant".into() } else { s }
}

/// Does any tenant exist yet?
///
/// # Errors
/// Database errors.
pub async fn any(db: &impl ConnectionTrait) -> Result<bool, StoreError> {
    Ok(tenant::Entity::find().one(db).await?.is_some())
}

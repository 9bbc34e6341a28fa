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
pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    owner_email: &str,
    via: Via,
) -> Result<CreatedTenant, StoreError> {
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
    membership::Model { user_id: user_id.clone(), tenant_id: t.id.clone(), role: "owner".into(), created_at: now }
        .into_active_model()
        .reset_all()
        .insert(&txn)
        .await?;

    let system = apis::create_system(&txn, &id).await?;
    let (root_model, root_key) = keys::insert(
        &txn,
        NewKey::root(
            id.clone(),
            ApiId::from_trusted(system.id),
            Some("Initial root key".into()),
            ScopeSet::parse_all(&["*"]).unwrap_or_default(),
            None,
            Some(match via {
                Via::Cli => "cli".to_owned(),
                Via::Signup => format!("user:{user_id}"),
            }),
        ),
        &KeyHead::Root,
    )
    .await?;
    let actor = root_model.created_by.clone().unwrap_or_default();
    let entries = vec![
        crate::audit::Entry::new(
            "tenant.created",
            "tenant",
            t.id.clone(),
            format!("Created the team {} with the owner {owner_email}", t.name),
        )
        .with(json!({ "name": t.name, "slug": t.slug, "owner_email": owner_email, "via": via.as_str() })),
        crate::audit::entries::key_created(&root_model),
    ];
    crate::audit::record(&txn, &id, &actor, entries).await?;
    txn.commit().await?;
    Ok(CreatedTenant { tenant: t, root_key })
}

/// How a tenant came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `keyroll tenant create`.
    Cli,
    /// `/setup` or `/signup`: the owner acts.
    Signup,
}

impl Via {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Signup => "signup",
        }
    }
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

//! Teams: creating one (with its owner, system API and first root key), and its settings.

use serde_json::json;

use super::keys::insert;
use super::{Actor, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::{ApiId, ApiKey, ScopeSet, TenantId, UserId};
use crate::state::AppState;
use crate::store::entities::tenant;
use crate::store::keys::NewKey;
use crate::store::{accounts, tenants};

/// What creating a tenant returns: the only time the root key is shown.
#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: tenant::Model,
    pub root_key: ApiKey,
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

/// Creates a tenant, its owner (or reuses the user with that email), the system API and a
/// root key with every scope — in one change.
///
/// # Errors
/// Database errors.
pub async fn create(state: &AppState, name: &str, owner_email: &str, via: Via) -> Result<CreatedTenant, ServiceError> {
    let id = TenantId::generate();
    let owner = match accounts::user_by_email(&state.db, owner_email).await? {
        Some(u) => u.id,
        None => UserId::generate().into_string(),
    };
    let actor = match via {
        Via::Cli => Actor::Cli,
        Via::Signup => Actor::User(owner.clone()),
    };
    let ctx = Ctx::acting(state, id.clone(), actor);
    let created = commit(&ctx, async |txn, change| {
        let (t, _, system) = tenants::insert(txn, &id, name, owner_email, &owner).await?;
        change.audit(
            Entry::new(
                "tenant.created",
                "tenant",
                t.id.clone(),
                format!("Created the team {} with the owner {owner_email}", t.name),
            )
            .with(json!({ "name": t.name, "slug": t.slug, "owner_email": owner_email, "via": via.as_str() })),
        );
        let root = NewKey::root(
            id.clone(),
            ApiId::from_trusted(system.id.clone()),
            Some("Initial root key".into()),
            ScopeSet::parse_all(&["*"]).unwrap_or_default(),
            None,
            Some(ctx.actor_id()),
        );
        let created = insert(txn, change, root, &system).await?;
        Ok(CreatedTenant { tenant: t, root_key: created.secret })
    })
    .await?;
    // With billing on, the team's Stripe customer is made with it; when Stripe is out of reach
    // it is made at the team's first billing call instead.
    if let Err(e) = super::billing::ensure_customer(state, &id).await {
        tracing::warn!(tenant = %created.tenant.id, error = %e, "the Stripe customer was not made yet");
    }
    Ok(created)
}

/// How long the team keeps its audit log: 30 to 3650 days. Owners only.
///
/// # Errors
/// `Forbidden` below owner, `Invalid` out of bounds.
pub async fn set_audit_retention(ctx: &Ctx<'_>, days: u32, before: u32) -> Result<tenant::Model, ServiceError> {
    ctx.require(Permission::Tenant)?;
    if !(30..=3_650).contains(&days) {
        return Err(ServiceError::field("audit_retention_days", "must be between 30 and 3650"));
    }
    super::billing::admit_value(ctx, crate::domain::plan::Limit::AuditRetentionDays, u64::from(days)).await?;
    commit(ctx, async |txn, change| {
        let tenant = tenants::set_setting(txn, &ctx.tenant, "audit_retention_days", days.into()).await?;
        change.audit(
            Entry::new(
                "settings.updated",
                "tenant",
                tenant.id.clone(),
                format!("Audit entries are now kept {days} days (were {before})"),
            )
            .change(json!({ "audit_retention_days": before }), json!({ "audit_retention_days": days })),
        );
        Ok(tenant)
    })
    .await
}

/// One of the tenant's settings (a section of its `settings` object), or the default when it is
/// missing or does not read.
///
/// # Errors
/// Database errors.
pub async fn setting<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    tenant: &TenantId,
    name: &str,
) -> Result<T, ServiceError> {
    let t = tenants::get(&state.db, tenant).await?;
    Ok(t.settings.get(name).cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default())
}

/// Replaces one of the tenant's settings, audited as `action` with the values before and after.
///
/// # Errors
/// Database errors.
pub async fn put_setting<T: serde::Serialize>(
    ctx: &Ctx<'_>,
    name: &str,
    before: &T,
    after: &T,
    action: &'static str,
    summary: &str,
) -> Result<(), ServiceError> {
    let value = serde_json::to_value(after).map_err(|e| ServiceError::Internal(e.into()))?;
    let before = serde_json::to_value(before).map_err(|e| ServiceError::Internal(e.into()))?;
    commit(ctx, async |txn, change| {
        tenants::set_setting(txn, &ctx.tenant, name, value.clone()).await?;
        change.audit(
            Entry::new(action, "tenant", ctx.tenant.as_str().to_owned(), summary.to_owned())
                .change(before.clone(), value.clone()),
        );
        Ok(())
    })
    .await
}

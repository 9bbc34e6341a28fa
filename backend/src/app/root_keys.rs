//! Root keys: the tenant's management credentials, keys of its system API.

use chrono::{DateTime, Utc};

use super::keys::{Created, future, insert, revoke_version};
use super::permission::ROOT_SCOPES;
use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::domain::{ApiId, ScopeSet};
use crate::store::apis;
use crate::store::entities::key;
use crate::store::keys::NewKey;

/// A new root key.
#[derive(Debug, Clone, Default)]
pub struct NewRootKey {
    pub name: Option<String>,
    /// `*`, or some of [`ROOT_SCOPES`].
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The scopes of a root key: `*` or management scopes, at least one.
pub fn check_root_scopes(c: &mut Checks, field: &str, items: &[String]) -> Option<ScopeSet> {
    let before = c.0.len();
    if items.is_empty() {
        c.push(field, "must name at least one scope");
    }
    for (i, s) in items.iter().enumerate() {
        if s != "*" && !ROOT_SCOPES.contains(&s.as_str()) {
            c.push(format!("{field}[{i}]"), format!("must be * or one of {}", ROOT_SCOPES.join(", ")));
        }
    }
    if c.0.len() > before {
        return None;
    }
    c.take(field, ScopeSet::parse_all(items).map_err(|(_, e)| e.to_string()))
}

/// Creates a root key.
///
/// # Errors
/// `Forbidden` without the root-key permission, `Invalid` naming every bad field.
pub async fn create(ctx: &Ctx<'_>, input: NewRootKey) -> Result<Created, ServiceError> {
    ctx.require(Permission::RootKeys)?;
    let mut c = Checks::default();
    let name = c.optional_name(input.name.as_deref());
    let scopes = check_root_scopes(&mut c, "scopes", &input.scopes);
    let expires_at = future(&mut c, "expires_at", input.expires_at);
    let (Some(name), Some(scopes)) = (name, scopes) else { return Err(ServiceError::Invalid(c.0)) };
    c.finish()?;
    commit(ctx, async |txn, change| {
        let system = apis::system(txn, &ctx.tenant).await?;
        let new = NewKey::root(
            ctx.tenant.clone(),
            ApiId::from_trusted(system.id.clone()),
            name,
            scopes,
            expires_at,
            Some(ctx.actor_id()),
        );
        insert(txn, change, new, &system).await
    })
    .await
}

/// Revokes a root key now, on every node.
///
/// # Errors
/// `NotFound`, `Invalid` for a bad reason.
pub async fn revoke(ctx: &Ctx<'_>, id: &str, reason: &str) -> Result<key::Model, ServiceError> {
    ctx.require(Permission::RootKeys)?;
    revoke_version(ctx, id, true, reason).await
}

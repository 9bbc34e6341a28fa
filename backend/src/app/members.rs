//! Members of a team: invite, change a role, remove. Only owners hand out or change the owner
//! role, nobody changes their own, and a team never loses its last owner.

use serde_json::json;

use super::{Actor, Ctx, Permission, Role, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::input::Email;
use crate::domain::plan::Limit;
use crate::store::accounts;
use crate::store::entities::user;

/// An invited person: their account (made now if they had none).
#[derive(Debug)]
pub struct Invited {
    pub user: user::Model,
    pub new_account: bool,
}

/// May the actor give or take away `role`?
fn may_handle(ctx: &Ctx<'_>, role: Role) -> Result<(), ServiceError> {
    ctx.require(Permission::Members)?;
    if role == Role::Owner { ctx.require(Permission::Tenant) } else { Ok(()) }
}

fn role(raw: &str) -> Result<Role, ServiceError> {
    Role::parse(raw).ok_or_else(|| ServiceError::field("role", "must be owner, admin, developer or viewer"))
}

/// Adds a person by email with a role.
///
/// # Errors
/// `Invalid` for a bad email or role, `Forbidden` for a role the actor may not give, `Conflict`
/// when the person is a member already.
pub async fn invite(ctx: &Ctx<'_>, email: &str, role_name: &str) -> Result<Invited, ServiceError> {
    ctx.require(Permission::Members)?;
    let email = Email::parse(email).map_err(|m| ServiceError::field("email", m))?;
    let role = role(role_name)?;
    may_handle(ctx, role)?;
    let user = accounts::invited_user(ctx.db(), email.as_str()).await?;
    if accounts::membership(ctx.db(), &user.id, ctx.tenant.as_str()).await?.is_none() {
        super::billing::admit(ctx, Limit::Members, 1).await?;
    }
    let new_account = user.password_hash.is_none();
    commit(ctx, async |txn, change| {
        if accounts::membership(txn, &user.id, ctx.tenant.as_str()).await?.is_some() {
            return Err(ServiceError::Conflict("this person is already a member".into()));
        }
        accounts::add_member(txn, &user.id, &ctx.tenant, role.as_str()).await?;
        change.audit(
            Entry::new(
                "member.invited",
                "member",
                user.id.clone(),
                format!("Invited {} as {}", email.as_str(), role.as_str()),
            )
            .with(json!({ "email": email.as_str(), "role": role.as_str(), "new_account": new_account })),
        );
        Ok(())
    })
    .await?;
    Ok(Invited { user, new_account })
}

/// Gives a member another role, or removes them (`None`).
///
/// # Errors
/// `NotFound` for someone not in the team, `Forbidden` for a change the actor may not make,
/// `Conflict` when the team would have no owner left.
pub async fn change(ctx: &Ctx<'_>, user_id: &str, new_role: Option<&str>) -> Result<(), ServiceError> {
    ctx.require(Permission::Members)?;
    let new_role = new_role.map(role).transpose()?;
    if ctx.actor == Actor::User(user_id.to_owned()) {
        return Err(ServiceError::Forbidden(Permission::Tenant));
    }
    commit(ctx, async |txn, change| {
        let Some(target) = accounts::membership(txn, user_id, ctx.tenant.as_str()).await? else {
            return Err(ServiceError::NotFound("no such member"));
        };
        may_handle(ctx, Role::parse(&target.role).unwrap_or(Role::Viewer))?;
        let who = accounts::members(txn, &ctx.tenant)
            .await?
            .into_iter()
            .find(|(m, _)| m.user_id == user_id)
            .map(|(_, u)| u.email)
            .unwrap_or_default();
        let entry = match new_role {
            None => {
                accounts::remove_member(txn, user_id, &ctx.tenant).await?;
                Entry::new("member.removed", "member", user_id, format!("Removed {who} from the team"))
                    .with(json!({ "email": who, "before": { "role": target.role } }))
            }
            Some(r) => {
                may_handle(ctx, r)?;
                accounts::add_member(txn, user_id, &ctx.tenant, r.as_str()).await?;
                Entry::new(
                    "member.role_changed",
                    "member",
                    user_id,
                    format!("Changed the role of {who} from {} to {}", target.role, r.as_str()),
                )
                .with(json!({ "email": who, "before": { "role": target.role }, "after": { "role": r.as_str() } }))
            }
        };
        if !accounts::members(txn, &ctx.tenant).await?.iter().any(|(m, _)| m.role == "owner") {
            return Err(ServiceError::Conflict("a team needs at least one owner".into()));
        }
        change.audit(entry);
        Ok(())
    })
    .await
}

/// A member's single-use password link, made by an owner or admin for someone who cannot get
/// one by email (the link works once, for 24 hours). Only for a member of this team alone:
/// an account that is in other teams too could otherwise be taken over from this one.
///
/// # Errors
/// `NotFound` for someone not in the team; `Forbidden` for the actor themselves, a role the actor
/// may not handle, or an account in other teams.
pub async fn password_link(ctx: &Ctx<'_>, user_id: &str) -> Result<String, ServiceError> {
    ctx.require(Permission::Members)?;
    if ctx.actor == Actor::User(user_id.to_owned()) {
        return Err(ServiceError::Forbidden(Permission::Tenant));
    }
    let Some(m) = accounts::membership(ctx.db(), user_id, ctx.tenant.as_str()).await? else {
        return Err(ServiceError::NotFound("no such member"));
    };
    may_handle(ctx, Role::parse(&m.role).unwrap_or(Role::Owner))?;
    if accounts::memberships(ctx.db(), user_id).await?.len() > 1 {
        return Err(ServiceError::Forbidden(Permission::Tenant));
    }
    commit(ctx, async |txn, change| {
        let token = accounts::start_reset(txn, user_id, chrono::TimeDelta::hours(24)).await?;
        let email = accounts::user(txn, user_id).await?.email;
        change.audit(Entry::new(
            "member.password_link",
            "member",
            user_id.to_owned(),
            format!("Made a single-use password link for {email}"),
        ));
        Ok(token)
    })
    .await
}

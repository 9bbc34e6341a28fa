//! Dashboard accounts: users, their memberships of tenants, browser sessions and
//! password-reset links.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};

use super::StoreError;
use super::entities::{membership, password_reset, session, tenant, user};
use crate::crypto::{new_token, token_digest};
use crate::domain::{TenantId, UserId};

/// The user with this email (compared as stored: emails are kept lower-case).
///
/// # Errors
/// Database errors.
pub async fn user_by_email(db: &impl ConnectionTrait, email: &str) -> Result<Option<user::Model>, StoreError> {
    Ok(user::Entity::find().filter(user::Column::Email.eq(email)).one(db).await?)
}

/// # Errors
/// `NotFound`, or database errors.
pub async fn user(db: &impl ConnectionTrait, id: &str) -> Result<user::Model, StoreError> {
    user::Entity::find_by_id(id).one(db).await?.ok_or(StoreError::NotFound)
}

/// Sets a user's name and password hash (the owner created by `tenant create` has neither).
///
/// # Errors
/// Database errors.
pub async fn set_profile(
    db: &impl ConnectionTrait,
    user_id: &str,
    name: Option<&str>,
    password_hash: &str,
) -> Result<(), StoreError> {
    let mut q = user::Entity::update_many().col_expr(user::Column::PasswordHash, Expr::value(password_hash));
    if let Some(n) = name {
        q = q.col_expr(user::Column::Name, Expr::value(n));
    }
    q.filter(user::Column::Id.eq(user_id)).exec(db).await?;
    Ok(())
}

/// A new user with a password.
///
/// # Errors
/// `Conflict` when the email is taken; database errors.
pub async fn create_user(
    db: &impl ConnectionTrait,
    email: &str,
    name: &str,
    password_hash: &str,
) -> Result<user::Model, StoreError> {
    user::Model {
        id: UserId::generate().into_string(),
        email: email.to_owned(),
        name: Some(name.to_owned()),
        password_hash: Some(password_hash.to_owned()),
        totp_secret: None,
        totp_last_step: None,
        created_at: Utc::now(),
    }
    .into_active_model()
    .reset_all()
    .insert(db)
    .await
    .map_err(|e| StoreError::from(e).unique_as_conflict("an account with this email exists"))
}

/// The tenants a user belongs to, with the role in each, by name.
///
/// # Errors
/// Database errors.
pub async fn memberships(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<(membership::Model, tenant::Model)>, StoreError> {
    let ms = membership::Entity::find().filter(membership::Column::UserId.eq(user_id)).all(db).await?;
    let tenants = tenant::Entity::find()
        .filter(tenant::Column::Id.is_in(ms.iter().map(|m| m.tenant_id.as_str())))
        .all(db)
        .await?;
    let mut out: Vec<_> =
        ms.into_iter().filter_map(|m| tenants.iter().find(|t| t.id == m.tenant_id).cloned().map(|t| (m, t))).collect();
    out.sort_by_key(|a| a.1.name.to_lowercase());
    Ok(out)
}

/// A user's membership of one tenant.
///
/// # Errors
/// Database errors.
pub async fn membership(
    db: &impl ConnectionTrait,
    user_id: &str,
    tenant: &str,
) -> Result<Option<membership::Model>, StoreError> {
    Ok(membership::Entity::find_by_id((user_id.to_owned(), tenant.to_owned())).one(db).await?)
}

/// Adds a user to a tenant (or changes the role).
///
/// # Errors
/// Database errors.
pub async fn add_member(
    db: &impl ConnectionTrait,
    user_id: &str,
    tenant: &TenantId,
    role: &str,
) -> Result<(), StoreError> {
    match membership(db, user_id, tenant.as_str()).await? {
        Some(m) if m.role == role => Ok(()),
        Some(m) => {
            let mut am = m.into_active_model();
            am.role = sea_orm::Set(role.to_owned());
            am.update(db).await?;
            Ok(())
        }
        None => {
            membership::Model {
                user_id: user_id.to_owned(),
                tenant_id: tenant.as_str().to_owned(),
                role: role.to_owned(),
                created_at: Utc::now(),
            }
            .into_active_model()
            .reset_all()
            .insert(db)
            .await?;
            Ok(())
        }
    }
}

/// Starts a session; returns the cookie's token (only its digest is stored).
///
/// # Errors
/// Database errors.
pub async fn start_session(
    db: &impl ConnectionTrait,
    user_id: &str,
    tenant_id: Option<String>,
    ip: Option<String>,
    ttl: TimeDelta,
    mfa_pending: bool,
) -> Result<(String, session::Model), StoreError> {
    let (token, id) = new_token();
    let (csrf, _) = new_token();
    let now = Utc::now();
    let s = session::Model {
        id,
        user_id: user_id.to_owned(),
        tenant_id,
        csrf,
        ip,
        mfa_pending,
        created_at: now,
        expires_at: now + ttl,
    }
    .into_active_model()
    .reset_all()
    .insert(db)
    .await?;
    Ok((token, s))
}

/// The live session of a cookie token, with its user.
///
/// # Errors
/// Database errors.
pub async fn session(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<(session::Model, user::Model)>, StoreError> {
    let Some(s) = session::Entity::find_by_id(token_digest(token))
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let u = user::Entity::find_by_id(s.user_id.as_str()).one(db).await?;
    Ok(u.map(|u| (s, u)))
}

/// Ends the session of a cookie token.
///
/// # Errors
/// Database errors.
pub async fn end_session(db: &impl ConnectionTrait, token: &str) -> Result<(), StoreError> {
    session::Entity::delete_by_id(token_digest(token)).exec(db).await?;
    Ok(())
}

/// Ends every session of a user (after a password change).
///
/// # Errors
/// Database errors.
pub async fn end_sessions_of(db: &impl ConnectionTrait, user_id: &str) -> Result<(), StoreError> {
    session::Entity::delete_many().filter(session::Column::UserId.eq(user_id)).exec(db).await?;
    Ok(())
}

/// Ends every session of a user but one (after they changed their password in that one).
///
/// # Errors
/// Database errors.
pub async fn end_other_sessions(db: &impl ConnectionTrait, user_id: &str, keep: &str) -> Result<u64, StoreError> {
    let done = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::Id.ne(keep))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Switches the tenant a session works in.
///
/// # Errors
/// Database errors.
pub async fn switch_tenant(db: &impl ConnectionTrait, session_id: &str, tenant: &str) -> Result<(), StoreError> {
    session::Entity::update_many()
        .col_expr(session::Column::TenantId, Expr::value(tenant))
        .filter(session::Column::Id.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A password-reset link's token, valid for `ttl`.
///
/// # Errors
/// Database errors.
pub async fn start_reset(db: &impl ConnectionTrait, user_id: &str, ttl: TimeDelta) -> Result<String, StoreError> {
    let (token, id) = new_token();
    let now = Utc::now();
    password_reset::Model { id, user_id: user_id.to_owned(), created_at: now, expires_at: now + ttl, used_at: None }
        .into_active_model()
        .reset_all()
        .insert(db)
        .await?;
    Ok(token)
}

/// The user a reset token is for, if it is unused and unexpired.
///
/// # Errors
/// Database errors.
pub async fn reset_user(db: &impl ConnectionTrait, token: &str) -> Result<Option<String>, StoreError> {
    Ok(password_reset::Entity::find_by_id(token_digest(token))
        .filter(password_reset::Column::ExpiresAt.gt(Utc::now()))
        .filter(password_reset::Column::UsedAt.is_null())
        .one(db)
        .await?
        .map(|r| r.user_id))
}

/// Uses a reset token up; false when it was already used (or never valid).
///
/// # Errors
/// Database errors.
pub async fn use_reset(db: &impl ConnectionTrait, token: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let res = password_reset::Entity::update_many()
        .col_expr(password_reset::Column::UsedAt, Expr::value(now))
        .filter(password_reset::Column::Id.eq(token_digest(token)))
        .filter(password_reset::Column::UsedAt.is_null())
        .filter(password_reset::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The members of a tenant with their users, owners first.
///
/// # Errors
/// Database errors.
pub async fn members(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<(membership::Model, user::Model)>, StoreError> {
    let ms = membership::Entity::find().filter(membership::Column::TenantId.eq(tenant.as_str())).all(db).await?;
    let users =
        user::Entity::find().filter(user::Column::Id.is_in(ms.iter().map(|m| m.user_id.as_str()))).all(db).await?;
    let rank = |r: &str| ["owner", "admin", "developer", "viewer"].iter().position(|x| *x == r).unwrap_or(9);
    let mut out: Vec<_> =
        ms.into_iter().filter_map(|m| users.iter().find(|u| u.id == m.user_id).cloned().map(|u| (m, u))).collect();
    out.sort_by_key(|(m, u)| (rank(&m.role), u.email.clone()));
    Ok(out)
}

/// Removes a user from a tenant.
///
/// # Errors
/// Database errors.
pub async fn remove_member(db: &impl ConnectionTrait, user_id: &str, tenant: &TenantId) -> Result<(), StoreError> {
    membership::Entity::delete_by_id((user_id.to_owned(), tenant.as_str().to_owned())).exec(db).await?;
    Ok(())
}

/// A user invited by email, without a password until they follow the link.
///
/// # Errors
/// Database errors.
pub async fn invited_user(db: &impl ConnectionTrait, email: &str) -> Result<user::Model, StoreError> {
    if let Some(u) = user_by_email(db, email).await? {
        return Ok(u);
    }
    Ok(user::Model {
        id: UserId::generate().into_string(),
        email: email.to_owned(),
        name: None,
        password_hash: None,
        totp_secret: None,
        totp_last_step: None,
        created_at: Utc::now(),
    }
    .into_active_model()
    .reset_all()
    .insert(db)
    .await?)
}

/// Turns two-factor sign-in on (`Some(sealed secret)`) or off.
///
/// # Errors
/// Database errors.
pub async fn set_totp(db: &impl ConnectionTrait, user_id: &str, sealed: Option<String>) -> Result<(), StoreError> {
    user::Entity::update_many()
        .col_expr(user::Column::TotpSecret, Expr::value(sealed))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Accepts a TOTP time step once: true when it is later than every step accepted before.
///
/// # Errors
/// Database errors.
pub async fn accept_totp_step(db: &impl ConnectionTrait, user_id: &str, step: i64) -> Result<bool, StoreError> {
    let res = user::Entity::update_many()
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(user_id))
        .filter(
            sea_orm::Condition::any()
                .add(user::Column::TotpLastStep.is_null())
                .add(user::Column::TotpLastStep.lt(step)),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

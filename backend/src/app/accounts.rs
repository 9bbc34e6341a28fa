//! People's own accounts: signing in, passwords, two-factor sign-in. Each change is audited
//! in the teams the person belongs to.

use chrono::TimeDelta;

use super::commit::commit_account;
use super::{Actor, Ctx, Origin, ServiceError, commit};
use crate::audit::Entry;
use crate::state::AppState;
use crate::store::accounts;

/// Starts a session for `user_id` (in `tenant`, when there is one) and records the sign-in
/// there unless a second factor is still to come; returns the session token.
///
/// # Errors
/// Database errors.
pub async fn sign_in(
    state: &AppState,
    user_id: &str,
    tenant: Option<String>,
    ip: Option<String>,
    ttl: TimeDelta,
    mfa_pending: bool,
    origin: Origin,
) -> Result<String, ServiceError> {
    let Some(t) = tenant.clone().filter(|_| !mfa_pending) else {
        let (token, _) = accounts::start_session(&state.db, user_id, tenant, ip, ttl, mfa_pending).await?;
        return Ok(token);
    };
    let ctx = Ctx::new(
        state,
        crate::domain::TenantId::from_trusted(t),
        Actor::User(user_id.to_owned()),
        super::Grants::none(),
        origin,
    );
    commit(&ctx, async |txn, change| {
        let (token, _) = accounts::start_session(txn, user_id, tenant, ip, ttl, mfa_pending).await?;
        let email = accounts::user(txn, user_id).await?.email;
        change.audit(Entry::new("user.signed_in", "user", user_id, format!("{email} signed in")));
        Ok(token)
    })
    .await
}

/// Sets a new password by a reset link (used once) and ends every session of the person.
/// Returns the person's id, or `None` when the link is not (or no longer) valid.
///
/// # Errors
/// Database errors.
pub async fn reset_password(
    state: &AppState,
    token: &str,
    user_id: &str,
    password_hash: &str,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    let actor = Actor::User(user_id.to_owned());
    let done = commit_account(state, user_id, &actor, origin, async |txn| {
        if !accounts::use_reset(txn, token, chrono::Utc::now()).await? {
            return Err(ServiceError::NotFound("the link is not valid"));
        }
        accounts::set_profile(txn, user_id, None, password_hash).await?;
        accounts::end_sessions_of(txn, user_id).await?;
        let email = accounts::user(txn, user_id).await?.email;
        let entry = Entry::new(
            "user.password_reset",
            "user",
            user_id,
            format!("{email} chose a new password by email link; all their sessions ended"),
        );
        Ok(((), entry))
    })
    .await;
    match done {
        Ok(()) => Ok(true),
        Err(ServiceError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A signed-in person changes their own password (the adapter has checked the current one):
/// every other session of theirs ends.
///
/// # Errors
/// Database errors.
pub async fn change_password(
    state: &AppState,
    user_id: &str,
    session_id: &str,
    password_hash: &str,
    origin: &Origin,
) -> Result<u64, ServiceError> {
    let actor = Actor::User(user_id.to_owned());
    commit_account(state, user_id, &actor, origin, async |txn| {
        accounts::set_profile(txn, user_id, None, password_hash).await?;
        let ended = accounts::end_other_sessions(txn, user_id, session_id).await?;
        let entry = Entry::new(
            "user.password_changed",
            "user",
            user_id,
            format!("Changed their password; {ended} other session(s) ended"),
        );
        Ok((ended, entry))
    })
    .await
}

/// Sets a password from the command line and ends every session of the person.
///
/// # Errors
/// Database errors.
pub async fn set_password_cli(state: &AppState, user_id: &str, password_hash: &str) -> Result<(), ServiceError> {
    commit_account(state, user_id, &Actor::Cli, &Origin::default(), async |txn| {
        accounts::set_profile(txn, user_id, None, password_hash).await?;
        accounts::end_sessions_of(txn, user_id).await?;
        let email = accounts::user(txn, user_id).await?.email;
        let entry = Entry::new(
            "user.password_set",
            "user",
            user_id,
            format!("The password of {email} was set from the command line; all their sessions ended"),
        );
        Ok(((), entry))
    })
    .await
}

/// Turns two-factor sign-in on with a sealed secret (and the step of the code that proved it),
/// or off (`None`).
///
/// # Errors
/// Database errors.
pub async fn set_two_factor(
    state: &AppState,
    user_id: &str,
    sealed: Option<(String, i64)>,
    origin: &Origin,
) -> Result<(), ServiceError> {
    let actor = Actor::User(user_id.to_owned());
    commit_account(state, user_id, &actor, origin, async |txn| {
        let email = accounts::user(txn, user_id).await?.email;
        let entry = match sealed {
            Some((secret, step)) => {
                accounts::set_totp(txn, user_id, Some(secret)).await?;
                accounts::accept_totp_step(txn, user_id, step).await?;
                Entry::new("user.two_factor_enabled", "user", user_id, format!("{email} turned on two-factor sign-in"))
            }
            None => {
                accounts::set_totp(txn, user_id, None).await?;
                Entry::new(
                    "user.two_factor_disabled",
                    "user",
                    user_id,
                    format!("{email} turned off two-factor sign-in"),
                )
            }
        };
        Ok(((), entry))
    })
    .await
}

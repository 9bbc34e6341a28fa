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
                crate::store::recovery_codes::replace(txn, user_id, &[]).await?;
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

/// How many recovery codes are made at once.
pub const RECOVERY_CODES: usize = 10;

/// A recovery code as typed: its ten letters and digits, lowercase, without the dash or spaces;
/// `None` when it cannot be one.
#[must_use]
pub fn recovery_code_of(typed: &str) -> Option<String> {
    let code: String = typed.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect();
    (code.len() == 10 && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())).then_some(code)
}

/// Makes a person's ten recovery codes anew (the old ones stop working) and returns them, to be
/// shown once (`xxxxx-xxxxx`). Only digests are kept.
///
/// # Errors
/// Database errors.
pub async fn new_recovery_codes(state: &AppState, user_id: &str, origin: &Origin) -> Result<Vec<String>, ServiceError> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    // Stored as typed back (`recovery_code_of`): ten characters, no dash.
    let raw: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| (0..10).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect())
        .collect();
    let digests: Vec<String> = raw.iter().map(|c| crate::crypto::token_digest(c)).collect();
    let codes: Vec<String> = raw.iter().map(|c| format!("{}-{}", &c[..5], &c[5..])).collect();
    let actor = Actor::User(user_id.to_owned());
    commit_account(state, user_id, &actor, origin, async |txn| {
        crate::store::recovery_codes::replace(txn, user_id, &digests).await?;
        let email = accounts::user(txn, user_id).await?.email;
        let entry = Entry::new(
            "user.recovery_codes_made",
            "user",
            user_id,
            format!("{email} made {RECOVERY_CODES} new two-factor recovery codes; the old ones no longer work"),
        );
        Ok(((), entry))
    })
    .await?;
    Ok(codes)
}

/// Signs in with a recovery code in place of the authenticator's code: true when the code was
/// one of the person's and unused (it is used now, and that is audited).
///
/// # Errors
/// Database errors.
pub async fn use_recovery_code(
    state: &AppState,
    user_id: &str,
    typed: &str,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    let Some(code) = recovery_code_of(typed) else { return Ok(false) };
    let digest = crate::crypto::token_digest(&code);
    let actor = Actor::User(user_id.to_owned());
    commit_account(state, user_id, &actor, origin, async |txn| {
        if !crate::store::recovery_codes::use_code(txn, user_id, &digest).await? {
            return Err(ServiceError::NotFound("no such recovery code"));
        }
        let left = crate::store::recovery_codes::unused(txn, user_id).await?;
        let email = accounts::user(txn, user_id).await?.email;
        let entry = Entry::new(
            "user.recovery_code_used",
            "user",
            user_id,
            format!("{email} signed in with a recovery code; {left} left"),
        );
        Ok(((), entry))
    })
    .await
    .map(|()| true)
    .or_else(|e| if matches!(e, ServiceError::NotFound(_)) { Ok(false) } else { Err(e) })
}

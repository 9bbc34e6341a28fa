//! Secrets shown once, after a redirect: a form that creates a key, a root key or a signing
//! secret holds what the page will show and redirects (303) to it, so reloading that page never
//! creates anything again, and shows the secret no second time.
//!
//! What is held is sealed with a fresh key that only the redirect's URL carries: the database
//! never has a readable secret, and the row is deleted when shown (or after 15 minutes).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{Ctx, ServiceError};
use crate::crypto::SealKey;
use crate::store::reveals;

/// How long a secret waits for its view.
pub const LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// The content of the page that shows a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reveal {
    /// "Key created", "Root key rotated", "Signing secret".
    pub heading: String,
    /// The secret's label on the page: "The new key (v2)".
    pub label: String,
    pub secret: String,
    /// What stays visible afterwards (`acme_live_oN5A`), when there is such a thing.
    pub start: Option<String>,
    /// A sentence under the secret.
    pub note: String,
    /// Where "Done" leads.
    pub done: String,
    /// A second way on: `(label, path)`.
    pub back: Option<(String, String)>,
    /// The secret is several lines (recovery codes), shown as they are rather than masked.
    #[serde(default)]
    pub lines: bool,
}

/// Holds a reveal for the one who acts; returns the path of the page that shows it once.
///
/// # Errors
/// `Internal` when it cannot be stored.
pub async fn hold(ctx: &Ctx<'_>, reveal: &Reveal) -> Result<String, ServiceError> {
    hold_at(ctx, reveal, "/app/shown").await
}

/// [`hold`], for a page of another area (`/portal/shown`).
///
/// # Errors
/// `Internal` when it cannot be stored.
pub async fn hold_at(ctx: &Ctx<'_>, reveal: &Reveal, base: &str) -> Result<String, ServiceError> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let json = serde_json::to_vec(reveal).map_err(|e| ServiceError::Internal(e.into()))?;
    let sealed = SealKey::from_bytes(key)
        .seal(&json)
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("a reveal could not be sealed")))?;
    let (id, _) = crate::crypto::new_token();
    let owner = ctx.actor.to_string();
    reveals::hold(&ctx.state.db, &id, ctx.tenant.as_str(), &owner, &sealed, Utc::now() + LIFETIME)
        .await
        .map_err(|e| ServiceError::Internal(e.into()))?;
    Ok(format!("{base}/{id}?k={}", URL_SAFE_NO_PAD.encode(key)))
}

/// Takes a held reveal: `Some` the first time its owner asks with its key, `None` ever after
/// (and for anyone else, or once it has expired).
///
/// # Errors
/// `Internal` on a database error.
pub async fn take(ctx: &Ctx<'_>, id: &str, key: &str) -> Result<Option<Reveal>, ServiceError> {
    let Some(key) = URL_SAFE_NO_PAD.decode(key).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
        return Ok(None);
    };
    if id.len() > 64 {
        return Ok(None);
    }
    let owner = ctx.actor.to_string();
    let sealed = reveals::take(&ctx.state.db, id, ctx.tenant.as_str(), &owner)
        .await
        .map_err(|e| ServiceError::Internal(e.into()))?;
    Ok(sealed
        .and_then(|s| SealKey::from_bytes(key).open(&s))
        .and_then(|plain| serde_json::from_slice::<Reveal>(&plain).ok()))
}

//! Access tokens for API keys (OAuth 2.0 client credentials), and their introspection.
//!
//! A token is issued only to a key that verifies `VALID` at that moment, through the same path
//! as `POST /v1/verify` (so it counts as a verification, spends the key's rate limit and
//! credits, and obeys its IP allowlist). It lives the API's token lifetime, never past the key's
//! own expiry or grace end.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{Ctx, ServiceError};
use crate::domain::{ApiId, KeyId, Scope, TokenId};
use crate::state::AppState;
use crate::tokens::{self, AccessClaims, Rejection};
use crate::verify::{self, Code, VerifyInput};

/// Why no token was issued (RFC 6749 §5.2, plus the limits of the key).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidScope(String),
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    /// The key's rate limit: retry after this many seconds.
    #[error("the key's rate limit is reached")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ServiceError> for TokenError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Conflict(m) => Self::Unavailable(m),
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

/// A token request as the adapter read it.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    /// The API key (`client_secret`, or the bearer token).
    pub key: &'a str,
    /// `client_id` when HTTP Basic was used: the key's lineage id.
    pub client_id: Option<&'a str>,
    /// The `scope` parameter, space-separated.
    pub scope: Option<&'a str>,
    pub ip: Option<IpAddr>,
}

/// An issued token.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
}

fn requested_scopes(scope: Option<&str>) -> Result<Vec<String>, TokenError> {
    let Some(s) = scope else { return Ok(Vec::new()) };
    let parts: Vec<String> = s.split(' ').filter(|p| !p.is_empty()).map(str::to_owned).collect();
    if parts.len() > 100 {
        return Err(TokenError::InvalidScope("at most 100 scopes may be asked for".into()));
    }
    if let Some(bad) = parts.iter().find(|p| !Scope::is_valid(p)) {
        return Err(TokenError::InvalidScope(format!("{bad} is not a scope (resource:action)")));
    }
    Ok(parts)
}

/// Issues an access token for a key.
///
/// # Errors
/// The OAuth error to answer.
pub async fn issue(state: &AppState, req: &TokenRequest<'_>) -> Result<Issued, TokenError> {
    let scopes = requested_scopes(req.scope)?;
    let input =
        VerifyInput { key: req.key, apis: &[], tenant_id: None, scopes: &scopes, query: None, ip: req.ip, cost: 1 };
    let verdict =
        verify::verify(&state.cache, &state.db, &state.usage, &state.limiter, &state.credits, &state.legacy, &input)
            .await
            .map_err(|e| TokenError::Internal(anyhow::Error::new(e)))?;
    let record = match (verdict.code, verdict.record) {
        (Code::Valid, Some(r)) => r,
        (Code::InsufficientScope, _) => {
            return Err(TokenError::InvalidScope("the key does not grant every scope asked for".into()));
        }
        (Code::RateLimited, _) => {
            let now = Utc::now().timestamp_millis();
            let wait = verdict.ratelimit.map_or(1, |r| ((r.reset_at_ms - now).max(0) + 999) / 1_000);
            return Err(TokenError::RateLimited(u64::try_from(wait).unwrap_or(1).max(1)));
        }
        (Code::UsageExceeded, _) => return Err(TokenError::UnauthorizedClient("the key has no credits left")),
        (Code::IpNotAllowed, _) => {
            return Err(TokenError::UnauthorizedClient("the key may not be used from this address"));
        }
        _ => return Err(TokenError::InvalidClient("the client is not valid")),
    };
    let d = &record.data;
    if req.client_id.is_some_and(|c| c != d.lineage_id) {
        return Err(TokenError::InvalidClient("the client is not valid"));
    }
    let tenant = crate::domain::TenantId::from_trusted(d.tenant_id.clone());
    let ttl = match state.keyring.ttl_of(&d.api_id) {
        Some(t) => t,
        None => {
            let api = crate::store::apis::get_any(&state.db, &tenant, &ApiId::from_trusted(d.api_id.clone()))
                .await
                .map_err(|e| TokenError::Internal(anyhow::Error::new(e)))?;
            state.keyring.hold_ttl(&d.api_id, api.token_ttl_seconds);
            api.token_ttl_seconds
        }
    };
    let master = state.master_key.as_deref();
    let mut keys = state.keyring.tenant(&state.db, &tenant, master).await.map_err(ServiceError::from)?;
    if keys.signer().is_none() {
        super::signing_keys::ensure(state, &tenant).await?;
        keys = state.keyring.tenant(&state.db, &tenant, master).await.map_err(ServiceError::from)?;
    }
    let signer =
        keys.signer().ok_or_else(|| TokenError::Unavailable("no signing key can be opened on this node".into()))?;
    let now = Utc::now();
    let ttl = ttl.clamp(1, crate::domain::signing::MAX_TOKEN_TTL.num_seconds());
    let mut exp = now.timestamp() + ttl;
    // Never past the key's own end.
    for end in [d.expires_at, d.grace_ends_at].into_iter().flatten() {
        exp = exp.min(end.timestamp());
    }
    if exp <= now.timestamp() {
        return Err(TokenError::InvalidClient("the client is not valid"));
    }
    let scope = if scopes.is_empty() { d.scopes.join(" ") } else { scopes.join(" ") };
    let claims = AccessClaims {
        iss: tokens::issuer(&state.base_url, &d.tenant_id),
        sub: d.consumer.as_ref().map_or_else(|| d.lineage_id.clone(), |c| c.id.clone()),
        aud: d.api_id.clone(),
        exp,
        iat: now.timestamp(),
        jti: TokenId::generate().into_string(),
        scope: scope.clone(),
        key_id: d.id.clone(),
        lineage_id: d.lineage_id.clone(),
        version: d.version,
    };
    let access_token = tokens::sign(signer, &claims).map_err(|e| TokenError::Internal(e.into()))?;
    Ok(Issued { access_token, expires_in: exp - now.timestamp(), scope })
}

/// What introspection tells of an active token.
#[derive(Debug)]
pub struct Introspected {
    pub claims: AccessClaims,
}

/// Whether a token of the context's tenant is active: signed by a published key of the tenant,
/// unexpired, and the key behind it still verifies (not revoked, disabled or expired).
///
/// # Errors
/// Database errors.
pub async fn introspect(ctx: &Ctx<'_>, token: &str, now: DateTime<Utc>) -> Result<Option<Introspected>, ServiceError> {
    if token.len() > 8_192 {
        return Ok(None);
    }
    let keys = ctx.state.keyring.tenant(ctx.db(), &ctx.tenant, ctx.state.master_key.as_deref()).await?;
    let issuer = tokens::issuer(&ctx.state.base_url, ctx.tenant.as_str());
    let claims = match tokens::check(&keys, &issuer, token, now) {
        Ok(c) => c,
        Err(Rejection::Invalid | Rejection::UnknownKey) => return Ok(None),
    };
    let Ok(key_id) = KeyId::parse(&claims.key_id) else { return Ok(None) };
    let key = match crate::store::keys::get(ctx.db(), &ctx.tenant, &key_id, false).await {
        Ok(k) => k,
        Err(crate::store::StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let state = crate::domain::KeyState::derive(&super::rotation::times(&key), now);
    Ok(state.verifies().then_some(Introspected { claims }))
}

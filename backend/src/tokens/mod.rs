//! Short-lived access tokens: Ed25519-signed JWTs (through `jsonwebtoken`), the tenant's JWKS
//! and discovery document, and the per-node keyring that holds the opened signing keys.
//!
//! Ed25519 (`EdDSA`) rather than ES256: the same strength, and signing is several times
//! cheaper, which is what token issuance spends its time on.

pub mod keyring;
pub mod material;
pub mod provider;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

pub use keyring::{Keyring, TenantKeys};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The consumer.
    pub sub: String,
    /// The API.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// Space-separated, a subset of the key's scopes.
    pub scope: String,
    pub key_id: String,
    pub lineage_id: String,
    pub version: i32,
}

/// A tenant's issuer URL: `{base}/t/{tenant_id}`.
#[must_use]
pub fn issuer(base: &str, tenant: &str) -> String {
    format!("{}/t/{tenant}", base.trim_end_matches('/'))
}

/// Signs claims with the active key.
///
/// # Errors
/// When the key cannot sign (a damaged key).
pub fn sign(signer: &keyring::Signer, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
    provider::install();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key)
}

/// Why a token is not good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT of ours, a bad signature, another issuer, or expired.
    Invalid,
    /// Signed by a key that was revoked (or is not ours any more).
    UnknownKey,
}

/// Checks a token's signature, issuer and expiry against the tenant's published keys.
///
/// # Errors
/// Why it is not good.
pub fn check(keys: &TenantKeys, issuer: &str, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, Rejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid)?;
    if header.alg != Algorithm::EdDSA {
        return Err(Rejection::Invalid);
    }
    let kid = header.kid.ok_or(Rejection::Invalid)?;
    let key = keys.verifier(&kid).ok_or(Rejection::UnknownKey)?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.validate_aud = false;
    v.leeway = 0;
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = jsonwebtoken::decode::<AccessClaims>(token, key, &v).map_err(|_| Rejection::Invalid)?;
    if data.claims.exp <= now.timestamp() {
        return Err(Rejection::Invalid);
    }
    Ok(data.claims)
}

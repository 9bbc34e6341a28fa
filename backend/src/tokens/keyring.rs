//! The signing keys of each tenant, opened and held per node for a few seconds: issuing a token
//! reads no database row and opens no sealed key.
//!
//! An entry is dropped on this node by every change of its tenant's keys, and lives at most
//! [`HOLD`] elsewhere, and never past the next activation it knows of. A revoked key therefore
//! stops signing on every node within [`HOLD`]; a scheduled activation happens on time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sea_orm::ConnectionTrait;

use super::material;
use crate::crypto::SealKey;
use crate::domain::TenantId;
use crate::domain::signing::{self, Phase, SigningTimes};
use crate::store::entities::signing_key;
use crate::store::{StoreError, signing_keys};

/// How long a node holds a tenant's keys.
pub const HOLD: Duration = Duration::from_secs(5);

/// The key that signs now.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub key: EncodingKey,
}

/// A key and its phase, for lists.
#[derive(Debug, Clone)]
pub struct KeyPhase {
    pub row: signing_key::Model,
    pub phase: Phase,
    /// When it stopped (or stops) signing: its successor's activation.
    pub superseded_at: Option<DateTime<Utc>>,
}

impl KeyPhase {
    /// When it leaves the JWKS (unless revoked before).
    #[must_use]
    pub fn unpublished_at(&self) -> Option<DateTime<Utc>> {
        self.row.revoked_at.or_else(|| self.superseded_at.map(|s| s + signing::RETIRING_FOR))
    }
}

/// A tenant's token keys at one instant.
pub struct TenantKeys {
    pub keys: Vec<KeyPhase>,
    signer: Option<Signer>,
    verifiers: Vec<(String, DecodingKey)>,
    /// The JWKS document, serialised once.
    pub jwks: String,
    /// Until when this view holds (the next activation, or the hold).
    fresh_until: DateTime<Utc>,
}

impl TenantKeys {
    /// Reads and opens a tenant's keys. Without a master key nothing can sign, but the JWKS is
    /// still published.
    ///
    /// # Errors
    /// Database errors.
    pub async fn load(
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        master: Option<&SealKey>,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let rows = signing_keys::list(db, tenant, signing_keys::TOKEN).await?;
        let times: Vec<SigningTimes> =
            rows.iter().map(|r| SigningTimes { activates_at: r.activates_at, revoked_at: r.revoked_at }).collect();
        let phases = signing::phases(&times, now);
        let keys: Vec<KeyPhase> = rows
            .into_iter()
            .zip(phases)
            .map(|(row, (phase, superseded_at))| KeyPhase { row, phase, superseded_at })
            .collect();
        let mut published = Vec::new();
        let mut verifiers = Vec::new();
        for k in keys.iter().filter(|k| k.phase.published()) {
            let Some(jwk) = k.row.public_jwk.clone().and_then(|v| serde_json::from_value::<Jwk>(v).ok()) else {
                tracing::warn!(kid = %k.row.id, "a signing key's public half cannot be read; it is not published");
                continue;
            };
            if let Ok(d) = material::decoding_key(&jwk) {
                verifiers.push((k.row.id.clone(), d));
                published.push(jwk);
            }
        }
        let signer = keys.iter().find(|k| k.phase == Phase::Active).and_then(|k| {
            let seed = master?.open(&k.row.private_sealed).and_then(|b| material::decode_secret(&b));
            if seed.is_none() {
                tracing::warn!(kid = %k.row.id, "the active signing key cannot be opened with this master key");
            }
            seed.map(|s| Signer { kid: k.row.id.clone(), key: material::encoding_key(&s) })
        });
        let hold = TimeDelta::from_std(HOLD).unwrap_or(TimeDelta::seconds(5));
        let next = keys
            .iter()
            .filter(|k| k.phase != Phase::Revoked)
            .flat_map(|k| [Some(k.row.activates_at), k.unpublished_at()])
            .flatten()
            .filter(|t| *t > now)
            .min();
        let fresh_until = next.map_or(now + hold, |t| t.min(now + hold));
        let jwks = serde_json::to_string(&JwkSet { keys: published }).unwrap_or_else(|_| r#"{"keys":[]}"#.into());
        Ok(Self { keys, signer, verifiers, jwks, fresh_until })
    }

    /// The key that signs now, if any.
    #[must_use]
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// The published key with this `kid`.
    #[must_use]
    pub fn verifier(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifiers.iter().find(|(k, _)| k == kid).map(|(_, d)| d)
    }
}

/// Every tenant's keys on this node, and each API's token lifetime.
pub struct Keyring {
    tenants: moka::sync::Cache<String, Arc<TenantKeys>>,
    ttls: moka::sync::Cache<String, i64>,
}

impl Default for Keyring {
    fn default() -> Self {
        // Before any JWT is made or read in this process.
        super::provider::install();
        Self {
            tenants: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(HOLD).build(),
            ttls: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
        }
    }
}

impl Keyring {
    /// The tenant's keys, from this node's hold or read anew.
    ///
    /// # Errors
    /// Database errors.
    pub async fn tenant(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        master: Option<&SealKey>,
    ) -> Result<Arc<TenantKeys>, StoreError> {
        let now = Utc::now();
        if let Some(k) = self.tenants.get(tenant.as_str())
            && k.fresh_until > now
        {
            return Ok(k);
        }
        let k = Arc::new(TenantKeys::load(db, tenant, master, now).await?);
        self.tenants.insert(tenant.as_str().to_owned(), k.clone());
        Ok(k)
    }

    /// Forgets a tenant's keys on this node (they changed).
    pub fn forget(&self, tenant: &TenantId) {
        self.tenants.invalidate(tenant.as_str());
    }

    /// An API's token lifetime, held for 30 s.
    #[must_use]
    pub fn ttl_of(&self, api_id: &str) -> Option<i64> {
        self.ttls.get(api_id)
    }

    pub fn hold_ttl(&self, api_id: &str, ttl: i64) {
        self.ttls.insert(api_id.to_owned(), ttl);
    }

    /// Forgets an API's token lifetime on this node (it changed).
    pub fn forget_ttl(&self, api_id: &str) {
        self.ttls.invalidate(api_id);
    }
}

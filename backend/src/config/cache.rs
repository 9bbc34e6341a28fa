//! The verification caches' settings.

use serde::{Deserialize, Serialize};

/// The verification caches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// Entries held in process (L1).
    pub l1_capacity: u64,
    /// How long a found key stays in L1 while the invalidation bus is up: each key 80–100 % of
    /// it, by its hash, so that keys cached together are not all read again together.
    pub l1_ttl_seconds: u64,
    /// How long an unknown hash is remembered in L1.
    pub negative_ttl_seconds: u64,
    /// L1 lifetime of every entry while the invalidation log cannot be read.
    pub degraded_ttl_ms: u64,
    /// Lifetime of a record in Redis (L2).
    pub l2_ttl_seconds: u64,
    /// The longest we wait for Redis on the verify path before falling back to the database.
    pub l2_timeout_ms: u64,
    /// How often every node reads the invalidation log: the longest a change lost on the Redis
    /// bus stays unseen by a node.
    pub tail_ms: u64,
    /// How long a verify client may keep a valid answer (`Cache-Control: max-age` on
    /// `/v1/verify`); 0 says `no-store`. A revocation reaches such clients this much later.
    pub client_ttl_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            l1_capacity: 100_000,
            l1_ttl_seconds: 300,
            negative_ttl_seconds: 10,
            degraded_ttl_ms: 1_000,
            l2_ttl_seconds: 3_600,
            l2_timeout_ms: 100,
            tail_ms: 200,
            client_ttl_seconds: 0,
        }
    }
}

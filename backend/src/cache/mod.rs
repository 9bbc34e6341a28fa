//! The verification caches: L1 in process (moka, bounded), L2 in Redis when configured, and the
//! invalidation bus that makes every node drop a changed key at once.
//!
//! Two rules keep caches from ever serving a row older than a mutation:
//! - an **epoch** counter is bumped on every invalidation this node sees; a lookup remembers the
//!   epoch before reading L2 or the database, and only fills L1 if it is unchanged;
//! - a mutation leaves a short-lived **tombstone** in Redis next to the record it deletes, and
//!   L2 fills are refused while a tombstone exists (a reader that loaded the row before the
//!   commit cannot put it back).

pub mod bus;
pub mod record;
pub mod redis_tier;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use sea_orm::DatabaseConnection;

use crate::cache::record::KeyRecord;
use crate::config::CacheSettings;
use crate::domain::KeyHash;
use crate::metrics::{CacheTier, Metrics};
use crate::store::{StoreError, keys};
use redis_tier::RedisTier;

#[derive(Clone)]
struct Entry {
    record: Option<Arc<KeyRecord>>,
    loaded_at: Instant,
}

/// The tiered cache of key records, shared by every worker of a node.
pub struct KeyCache {
    l1: Cache<[u8; 32], Entry>,
    epoch: AtomicU64,
    degraded: AtomicBool,
    positive_ttl: Duration,
    negative_ttl: Duration,
    degraded_ttl: Duration,
    l2: Option<RedisTier>,
    metrics: Arc<Metrics>,
}

impl KeyCache {
    #[must_use]
    pub fn new(settings: &CacheSettings, l2: Option<RedisTier>, metrics: Arc<Metrics>) -> Self {
        let positive_ttl = Duration::from_secs(settings.l1_ttl_seconds);
        Self {
            l1: Cache::builder()
                .max_capacity(settings.l1_capacity)
                .time_to_live(positive_ttl.max(Duration::from_secs(settings.negative_ttl_seconds)))
                .build(),
            epoch: AtomicU64::new(0),
            // With Redis configured, the node is degraded until the bus has subscribed.
            degraded: AtomicBool::new(l2.is_some()),
            positive_ttl,
            negative_ttl: Duration::from_secs(settings.negative_ttl_seconds),
            degraded_ttl: Duration::from_millis(settings.degraded_ttl_ms),
            l2,
            metrics,
        }
    }

    /// The record for `hash`, or `None` when no key has it.
    ///
    /// # Errors
    /// When the database cannot be read (L1 and L2 missed).
    pub async fn get(&self, hash: &KeyHash, db: &DatabaseConnection) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(e) = self.l1.get(&hash.0)
            && self.fresh(&e)
        {
            self.metrics.cache_lookup(CacheTier::L1, true);
            return Ok(e.record);
        }
        self.metrics.cache_lookup(CacheTier::L1, false);
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(l2) = &self.l2 {
            match l2.get(hash).await {
                Ok(Some(data)) => {
                    self.metrics.cache_lookup(CacheTier::L2, true);
                    let rec = Arc::new(KeyRecord::new(data));
                    self.fill_l1(hash, Some(rec.clone()), epoch);
                    return Ok(Some(rec));
                }
                Ok(None) => self.metrics.cache_lookup(CacheTier::L2, false),
                Err(e) => {
                    self.metrics.cache_lookup(CacheTier::L2, false);
                    tracing::debug!(error = %e, "redis tier unavailable, reading the database");
                }
            }
        }
        let data = keys::load_record(db, hash).await?;
        self.metrics.cache_lookup(CacheTier::Database, data.is_some());
        let rec = match data {
            Some(d) => {
                if let Some(l2) = &self.l2
                    && let Err(e) = l2.fill(hash, &d).await
                {
                    tracing::debug!(error = %e, "could not fill the redis tier");
                }
                Some(Arc::new(KeyRecord::new(d)))
            }
            None => None,
        };
        self.fill_l1(hash, rec.clone(), epoch);
        Ok(rec)
    }

    /// What L1 holds for a hash, fresh or not: `Some(true)` a key, `Some(false)` a cached miss.
    #[must_use]
    pub fn cached(&self, hash: &KeyHash) -> Option<bool> {
        self.l1.get(&hash.0).map(|e| e.record.is_some())
    }

    fn fresh(&self, e: &Entry) -> bool {
        let ttl = if self.degraded.load(Ordering::Relaxed) {
            self.degraded_ttl
        } else if e.record.is_some() {
            self.positive_ttl
        } else {
            self.negative_ttl
        };
        e.loaded_at.elapsed() < ttl
    }

    fn fill_l1(&self, hash: &KeyHash, record: Option<Arc<KeyRecord>>, epoch: u64) {
        // Only when no invalidation arrived since the read began; otherwise the row may predate it.
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.l1.insert(hash.0, Entry { record, loaded_at: Instant::now() });
        }
    }

    /// Called after a mutation commits: drops the hashes here, tombstones them in Redis, and
    /// tells every other node. Errors reaching Redis are logged; other nodes then rely on their
    /// shortened TTL.
    pub async fn invalidate(&self, hashes: &[KeyHash]) {
        if hashes.is_empty() {
            return;
        }
        self.drop_local(hashes);
        if let Some(l2) = &self.l2
            && let Err(e) = l2.tombstone_and_publish(hashes).await
        {
            tracing::warn!(error = %e, count = hashes.len(), "could not publish an invalidation");
        }
    }

    /// Called after a new key commits: every node drops a negative entry for its hash. No
    /// tombstone is needed, since Redis never holds a record for a hash that did not exist.
    pub async fn announce_created(&self, hashes: &[KeyHash]) {
        self.drop_local(hashes);
        if let Some(l2) = &self.l2
            && let Err(e) = l2.publish(hashes).await
        {
            tracing::warn!(error = %e, count = hashes.len(), "could not announce new keys");
        }
    }

    /// Drops hashes from L1 (a message from the bus, or our own mutation).
    pub fn drop_local(&self, hashes: &[KeyHash]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for h in hashes {
            self.l1.invalidate(&h.0);
        }
    }

    /// The bus (re)connected: anything may have been missed while it was down.
    pub fn bus_up(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.l1.invalidate_all();
        self.degraded.store(false, Ordering::Release);
        self.metrics.set_redis_up(true);
    }

    /// The bus is down: shorten every L1 lifetime until it is back.
    pub fn bus_down(&self) {
        self.degraded.store(true, Ordering::Release);
        self.metrics.set_redis_up(false);
    }

    #[must_use]
    pub fn l2(&self) -> Option<&RedisTier> {
        self.l2.as_ref()
    }
}

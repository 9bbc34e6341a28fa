//! The verification caches: L1 in process (bounded), L2 in Redis when configured, and the
//! two ways a change reaches every node: the Redis bus (fast) and the invalidation log in the
//! database, which every node tails (durable; see [`tail`]).
//!
//! Rules that keep caches from ever serving a row older than a mutation:
//! - an **epoch** counter is bumped on every invalidation this node sees; a lookup remembers the
//!   epoch before reading L2 or the database, and only fills L1 if it is unchanged;
//! - a mutation leaves a short-lived **tombstone** in Redis next to the record it deletes, and
//!   L2 fills are refused while a tombstone exists (a reader that loaded the row before the
//!   commit cannot put it back);
//! - every record carries the database's clock at its read, and the node remembers when each
//!   hash was last invalidated (from the log, for as long as L2 keeps records): a record from
//!   L2 read before that — an AOF replay, a failover, a racing writer — is dropped, not served;
//! - L2 is **trusted** only while Redis answers: a timeout, an error or a lost bus makes the
//!   node skip Redis (a circuit breaker with back-off) and serve from L1 and the database; a
//!   half-open probe then purges from L2 every hash the log invalidated since the fault began,
//!   and only then is L2 used again.

pub mod bus;
pub mod credit_lease;
pub mod credit_tier;
pub mod record;
pub mod redis_conn;
pub mod redis_tier;
pub mod tail;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use quick_cache::UnitWeighter;
use sea_orm::DatabaseConnection;

use crate::config::CacheSettings;
use crate::domain::KeyHash;
use crate::metrics::{CacheTier, Metrics};
use crate::store::keys::KeyRecordData;
use crate::store::{StoreError, keys};
use record::KeyRecord;
use redis_tier::RedisTier;

/// A record read less than this long before its hash's invalidation was logged is not trusted:
/// far more than the moment between writing the log row and committing.
const STALE_MARGIN_MS: i64 = 5_000;
/// Back-off of the circuit breaker around Redis.
const BREAKER_MIN: Duration = Duration::from_millis(250);
const BREAKER_MAX: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Entry {
    record: Option<Arc<KeyRecord>>,
    loaded_at: Instant,
}

/// L1: every verification reads it. A lookup takes one shard's read lock and marks the entry
/// used; eviction (S3-FIFO) happens on inserts. Lifetimes are checked here ([`KeyCache::fresh`]),
/// not by the cache: an expired entry is never served, and is replaced by its next fill.
type L1 = quick_cache::sync::Cache<[u8; 32], Entry, UnitWeighter, foldhash::fast::RandomState>;

/// The tiered cache of key records, shared by every worker of a node.
pub struct KeyCache {
    l1: L1,
    epoch: AtomicU64,
    /// The log tail is behind (the database cannot be read): L1 lifetimes are short until it
    /// catches up.
    degraded: AtomicBool,
    positive_ttl: Duration,
    /// What each step of a key's pick takes off `positive_ttl` (see [`spread`]), worked out once.
    positive_step: Duration,
    negative_ttl: Duration,
    degraded_ttl: Duration,
    l2: Option<RedisTier>,
    /// When each hash was last invalidated, by the database's clock (Unix ms).
    invalidated: Cache<[u8; 32], i64, foldhash::fast::RandomState>,
    l2_trusted: AtomicBool,
    /// The log position from which L2 must be purged before it is trusted again.
    repair_from: AtomicI64,
    /// The tail's position: every entry up to it has been applied here.
    tail_pos: AtomicI64,
    breaker_until: std::sync::Mutex<(Instant, Duration)>,
    metrics: Arc<Metrics>,
}

impl KeyCache {
    #[must_use]
    pub fn new(settings: &CacheSettings, l2: Option<RedisTier>, metrics: Arc<Metrics>) -> Self {
        let positive_ttl = Duration::from_secs(settings.l1_ttl_seconds);
        Self {
            // Every verification hashes its key here: foldhash, seeded per process (the hashes of
            // presented keys are chosen by callers), costs a fraction of SipHash on these 32 bytes.
            l1: L1::with(
                usize::try_from(settings.l1_capacity).unwrap_or(usize::MAX),
                settings.l1_capacity,
                UnitWeighter,
                foldhash::fast::RandomState::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            epoch: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            positive_ttl,
            positive_step: spread_step(positive_ttl),
            negative_ttl: Duration::from_secs(settings.negative_ttl_seconds),
            degraded_ttl: Duration::from_millis(settings.degraded_ttl_ms),
            invalidated: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(settings.l2_ttl_seconds.saturating_add(60)))
                .build_with_hasher(foldhash::fast::RandomState::default()),
            // With Redis configured, L2 is trusted once the bus has subscribed and the log tail
            // has started.
            l2_trusted: AtomicBool::new(false),
            repair_from: AtomicI64::new(i64::MAX),
            tail_pos: AtomicI64::new(0),
            breaker_until: std::sync::Mutex::new((Instant::now(), BREAKER_MIN)),
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
            && self.fresh(&hash.0, &e)
        {
            self.metrics.cache_lookup(CacheTier::L1, true);
            return Ok(e.record);
        }
        // The reads of Redis and the database make a large future: boxed, it is made only on a
        // miss, and the future of every lookup (of every verification) stays small.
        Box::pin(self.get_missed(hash, db)).await
    }

    /// [`KeyCache::get`] past a miss in L1.
    async fn get_missed(&self, hash: &KeyHash, db: &DatabaseConnection) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.metrics.cache_lookup(CacheTier::L1, false);
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(l2) = self.live_l2() {
            match l2.get(hash).await {
                Ok(Some(data)) if self.stale(hash, &data) => {
                    // Read again below, and written over in Redis with what the database says.
                    self.metrics.cache_lookup(CacheTier::L2, false);
                    tracing::debug!("a record in the redis tier predates its invalidation; read again");
                }
                Ok(Some(data)) => {
                    self.metrics.cache_lookup(CacheTier::L2, true);
                    let rec = Arc::new(KeyRecord::new(data));
                    self.fill_l1(hash, Some(rec.clone()), epoch);
                    return Ok(Some(rec));
                }
                Ok(None) => self.metrics.cache_lookup(CacheTier::L2, false),
                Err(e) => {
                    self.metrics.cache_lookup(CacheTier::L2, false);
                    self.l2_failed(&e);
                }
            }
        }
        let data = keys::load_record(db, hash).await?;
        self.metrics.cache_lookup(CacheTier::Database, data.is_some());
        let rec = match data {
            Some(d) => {
                if let Some(l2) = self.live_l2()
                    && let Err(e) = l2.fill(hash, &d).await
                {
                    self.l2_failed(&e);
                }
                Some(Arc::new(KeyRecord::new(d)))
            }
            None => None,
        };
        self.fill_l1(hash, rec.clone(), epoch);
        Ok(rec)
    }

    /// Was this record read before its hash was last invalidated (or too close to it to tell)?
    fn stale(&self, hash: &KeyHash, data: &KeyRecordData) -> bool {
        self.invalidated.get(&hash.0).is_some_and(|at| data.read_ms < at.saturating_add(STALE_MARGIN_MS))
    }

    /// What L1 holds for a hash, fresh or not: `Some(true)` a key, `Some(false)` a cached miss.
    #[must_use]
    pub fn cached(&self, hash: &KeyHash) -> Option<bool> {
        self.l1.get(&hash.0).map(|e| e.record.is_some())
    }

    fn fresh(&self, hash: &[u8; 32], e: &Entry) -> bool {
        let ttl = if self.degraded.load(Ordering::Relaxed) {
            self.degraded_ttl
        } else if e.record.is_some() {
            spread(self.positive_ttl, self.positive_step, hash)
        } else {
            self.negative_ttl
        };
        e.loaded_at.elapsed() < ttl
    }

    fn fill_l1(&self, hash: &KeyHash, record: Option<Arc<KeyRecord>>, epoch: u64) {
        // Only when no invalidation arrived since the read began; otherwise the row may predate it.
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.l1.insert(hash.0, Entry { record, loaded_at: Instant::now() });
            // An invalidation between the test above and the insert bumped the epoch before it
            // removed the hash (see `drop_local`), perhaps before this entry was there to remove:
            // then this read is dropped here (at worst a fresh entry of another reader with it).
            if self.epoch.load(Ordering::Acquire) != epoch {
                self.l1.remove(&hash.0);
            }
        }
    }

    /// Called after a mutation commits: drops the hashes here, tombstones them in Redis, and
    /// tells every other node. When Redis does not answer, the other nodes learn it from the log
    /// within a poll, and L2 is purged of these hashes before it is used again.
    pub async fn invalidate(&self, hashes: &[KeyHash]) {
        if hashes.is_empty() {
            return;
        }
        self.drop_local(hashes);
        if let Some(l2) = self.live_l2()
            && let Err(e) = l2.tombstone_and_publish(hashes).await
        {
            tracing::warn!(error = %e, count = hashes.len(), "could not publish an invalidation; the log carries it");
            self.l2_failed(&e);
        }
    }

    /// Called after a new key commits: every node drops a negative entry for its hash. No
    /// tombstone is needed, since Redis never holds a record for a hash that did not exist.
    pub async fn announce_created(&self, hashes: &[KeyHash]) {
        self.drop_local(hashes);
        if let Some(l2) = self.live_l2()
            && let Err(e) = l2.publish(hashes).await
        {
            tracing::warn!(error = %e, count = hashes.len(), "could not announce new keys; the log carries them");
            self.l2_failed(&e);
        }
    }

    /// Drops hashes from L1 (a message from the bus, or our own mutation).
    pub fn drop_local(&self, hashes: &[KeyHash]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for h in hashes {
            self.l1.remove(&h.0);
        }
    }

    /// An entry of the invalidation log, applied here: the hashes leave L1, and records of them
    /// read before `at_ms` (the database's clock) are no longer trusted from L2.
    pub fn apply_logged(&self, hashes: &[KeyHash], at_ms: i64) {
        for h in hashes {
            let newest = self.invalidated.get(&h.0).map_or(at_ms, |seen| seen.max(at_ms));
            self.invalidated.insert(h.0, newest);
        }
        self.drop_local(hashes);
    }

    /// Where the log tail is: every entry up to here has been applied on this node.
    #[must_use]
    pub fn tail_position(&self) -> i64 {
        self.tail_pos.load(Ordering::Acquire)
    }

    /// The log tail has applied every entry up to `pos`.
    pub fn set_tail_pos(&self, pos: i64) {
        self.tail_pos.store(pos, Ordering::Release);
    }

    /// The log tail can (or cannot) read the log: while it cannot, L1 lifetimes are short.
    pub fn set_tail_up(&self, up: bool) {
        self.degraded.store(!up, Ordering::Release);
    }

    /// Redis, when it is configured and trusted; `None` while the circuit breaker is open or L2
    /// awaits its purge.
    #[must_use]
    pub fn live_l2(&self) -> Option<&RedisTier> {
        self.l2.as_ref().filter(|_| self.l2_trusted.load(Ordering::Acquire))
    }

    /// Redis failed (or the bus was lost): stop using it, and remember from where of the log it
    /// must be purged before it is used again.
    pub fn l2_failed(&self, why: &dyn std::fmt::Display) {
        if self.l2.is_none() {
            return;
        }
        let pos = self.tail_pos.load(Ordering::Acquire);
        self.repair_from.fetch_min(pos, Ordering::AcqRel);
        if self.l2_trusted.swap(false, Ordering::AcqRel) {
            tracing::warn!(error = %why, "redis tier unavailable; serving from memory and the database");
            let mut b = self.breaker_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *b = (Instant::now() + b.1, b.1);
        }
        self.metrics.set_redis_up(false);
    }

    /// At start-up, once the log tail knows what was invalidated lately: Redis is trusted when
    /// the bus is subscribed and no fault was seen yet; otherwise the probe decides.
    pub fn trust_at_start(&self, bus_subscribed: bool) {
        if self.l2.is_some() && bus_subscribed && self.repair_from.load(Ordering::Acquire) == i64::MAX {
            self.l2_trusted.store(true, Ordering::Release);
            self.metrics.set_redis_up(true);
        }
    }

    /// The bus is down: messages may be lost until it is back, so L2 is not trusted.
    pub fn bus_down(&self) {
        self.l2_failed(&"the invalidation bus is disconnected");
    }

    /// The half-open probe, run by the log tail: once the breaker's back-off has passed, pings
    /// Redis and purges from L2 every hash the log invalidated since the fault began; L2 is
    /// trusted again only when both succeed. Each failure doubles the back-off (up to 10 s).
    pub async fn probe_l2(&self, db: &DatabaseConnection, bus_subscribed: bool) {
        let Some(l2) = &self.l2 else { return };
        if self.l2_trusted.load(Ordering::Acquire) || !bus_subscribed {
            return;
        }
        let (until, backoff) = *self.breaker_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if Instant::now() < until {
            return;
        }
        let from = self.repair_from.swap(i64::MAX, Ordering::AcqRel);
        match purge(l2, db, from).await {
            Ok(purged) => {
                self.l2_trusted.store(true, Ordering::Release);
                *self.breaker_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (Instant::now(), BREAKER_MIN);
                self.metrics.set_redis_up(true);
                tracing::info!(purged, "redis tier trusted again");
            }
            Err(e) => {
                self.repair_from.fetch_min(from, Ordering::AcqRel);
                let next = (backoff * 2).min(BREAKER_MAX);
                *self.breaker_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (Instant::now() + backoff, next);
                tracing::debug!(error = %e, "redis tier still unavailable");
            }
        }
    }

    #[must_use]
    pub fn l2(&self) -> Option<&RedisTier> {
        self.l2.as_ref()
    }
}

/// Pings Redis (on a cluster, connected again from the seed nodes first), then tombstones and deletes every hash the log holds after `from` (every hash it
/// holds when `from` is unknown); returns how many were purged.
async fn purge(l2: &RedisTier, db: &DatabaseConnection, from: i64) -> anyhow::Result<usize> {
    l2.reconnect().await?;
    l2.ping().await?;
    // Unknown (the tail had not started): everything the log still keeps.
    let mut pos = if from == i64::MAX { 0 } else { from };
    let mut purged = 0;
    loop {
        let batch = crate::store::invalidations::after(db, pos, &[], 500).await?;
        let Some(last) = batch.last().map(|e| e.seq) else { return Ok(purged) };
        let hashes: Vec<KeyHash> = batch.into_iter().flat_map(|e| e.hashes).collect();
        for chunk in hashes.chunks(1_000) {
            l2.tombstone_and_publish(chunk).await?;
        }
        purged += hashes.len();
        pos = last;
    }
}

/// An L1 lifetime shortened by up to a fifth, by an amount the key's hash picks: keys cached
/// together (a node's start, a sweep through every key) are read again spread over a fifth of
/// their lifetime, not all in the same second. Never longer than configured. `step` is
/// [`spread_step`] of `ttl`.
fn spread(ttl: Duration, step: Duration, hash: &[u8; 32]) -> Duration {
    let pick = u32::from(u16::from_le_bytes([hash[0], hash[1]]));
    // step × pick < ttl / 5: nothing overflows, whatever the configured lifetime.
    ttl - step * pick
}

/// A fifth of `ttl` in 65 536 steps, one per value a key's hash can pick.
fn spread_step(ttl: Duration) -> Duration {
    ttl / (5 * 65_536)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_spread_below_the_configured_one() {
        let ttl = Duration::from_secs(300);
        let lifetimes: Vec<Duration> = [[0u8, 0], [255, 255], [0, 128], [17, 3]]
            .iter()
            .map(|b| spread(ttl, spread_step(ttl), &[b[0], b[1], 0, 0].repeat(8).try_into().expect("32 bytes")))
            .collect();
        assert_eq!(lifetimes[0], ttl, "the lowest pick keeps the whole lifetime");
        assert!(lifetimes[1] >= ttl * 4 / 5 && lifetimes[1] < ttl.saturating_sub(Duration::from_secs(59)));
        assert!(lifetimes.iter().all(|l| *l <= ttl && *l >= ttl * 4 / 5), "{lifetimes:?}");
        assert_eq!(lifetimes.iter().collect::<std::collections::HashSet<_>>().len(), 4, "{lifetimes:?}");
        // However long the configured lifetime, and however short.
        let longest = spread(Duration::MAX, spread_step(Duration::MAX), &[255; 32]);
        assert!(longest >= Duration::MAX / 5 * 4);
        let shortest = Duration::from_nanos(3);
        assert_eq!(spread(shortest, spread_step(shortest), &[255; 32]), shortest);
    }
}

//! The log tail: every node reads the invalidation log every `cache.tail_ms` and applies what
//! it had not seen — so an invalidation the Redis bus lost, or that a frozen Redis never
//! published, reaches this node within one poll. It also runs the circuit breaker's half-open
//! probe of Redis, and prunes the log.
//!
//! Numbers are taken when a row is written, not when its transaction commits, so the tail can
//! see 12 before 11 commits. A number skipped over is asked for again at every poll for a
//! minute (no transaction takes that long); a rolled-back one simply never appears.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use super::KeyCache;
use crate::store::invalidations;

/// How long a skipped number is asked for again.
const GAP_PATIENCE: Duration = Duration::from_secs(60);
/// At most this many skipped numbers are tracked (a jump beyond is a restored backup or a
/// sequence reset, not transactions in flight).
const MAX_GAPS: i64 = 10_000;
const BATCH: u64 = 1_000;

/// What the tail has applied.
#[derive(Debug, Default)]
pub struct Position {
    /// Every entry up to here, gaps aside, is applied.
    pub seq: i64,
    /// Numbers skipped over, with when they were first missed.
    pub gaps: BTreeMap<i64, Instant>,
}

impl Position {
    /// Applies a batch read after this position: returns the entries not applied before.
    pub fn advance<'a>(
        &mut self,
        batch: &'a [invalidations::Invalidation],
        now: Instant,
    ) -> Vec<&'a invalidations::Invalidation> {
        let mut fresh = Vec::with_capacity(batch.len());
        for e in batch {
            if self.gaps.remove(&e.seq).is_some() {
                fresh.push(e);
            } else if e.seq > self.seq {
                if e.seq - self.seq <= MAX_GAPS {
                    for missing in self.seq + 1..e.seq {
                        self.gaps.insert(missing, now);
                    }
                }
                self.seq = e.seq;
                fresh.push(e);
            }
        }
        self.gaps.retain(|_, first| now.duration_since(*first) < GAP_PATIENCE);
        fresh
    }

    /// The lowest position from which a replay covers everything not yet certain.
    #[must_use]
    pub fn replay_from(&self) -> i64 {
        self.gaps.keys().next().map_or(self.seq, |g| g - 1)
    }
}

/// Runs until the process ends.
pub async fn run(
    db: DatabaseConnection,
    cache: Arc<KeyCache>,
    every: Duration,
    keep: Duration,
    bus: Arc<AtomicBool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    // Start at the end of the log, knowing what it invalidated for as long as L2 keeps a record.
    let mut pos = loop {
        match start(&db, &cache, keep).await {
            Ok(p) => break p,
            Err(e) => {
                cache.set_tail_up(false);
                tracing::warn!(error = %e, "cannot read the invalidation log yet; retrying");
                tokio::time::sleep(every.max(Duration::from_millis(200))).await;
            }
        }
    };
    // Nothing has gone wrong yet, and what the log invalidated lately is known: Redis is trusted
    // from here (a record it holds from before is recognised by its read time).
    cache.trust_at_start(bus.load(Ordering::Acquire));
    let _ = ready.send(());
    let mut last_prune = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match poll(&db, &cache, &mut pos).await {
            Ok(()) => cache.set_tail_up(true),
            Err(e) => {
                cache.set_tail_up(false);
                tracing::warn!(error = %e, "cannot read the invalidation log; short cache lifetimes until it can");
            }
        }
        cache.probe_l2(&db, bus.load(Ordering::Acquire)).await;
        if last_prune.elapsed() > Duration::from_secs(60) {
            last_prune = Instant::now();
            if let Err(e) = prune(&db, keep).await {
                tracing::debug!(error = %e, "could not prune the invalidation log");
            }
        }
    }
}

async fn start(db: &DatabaseConnection, cache: &KeyCache, keep: Duration) -> anyhow::Result<Position> {
    let last = invalidations::last_seq(db).await?;
    let since = invalidations::clock_ms(db).await? - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
    let mut from = 0;
    loop {
        let batch = invalidations::since(db, since, from, BATCH).await?;
        let Some(end) = batch.last().map(|e| e.seq) else { break };
        for e in &batch {
            // Nothing is dropped from L1 here (it is empty): only remembered.
            cache.apply_logged(&e.hashes, e.created_ms);
        }
        from = end;
    }
    cache.set_tail_pos(last);
    cache.set_tail_up(true);
    Ok(Position { seq: last, gaps: BTreeMap::new() })
}

async fn poll(db: &DatabaseConnection, cache: &KeyCache, pos: &mut Position) -> anyhow::Result<()> {
    loop {
        let gaps: Vec<i64> = pos.gaps.keys().copied().collect();
        let batch = invalidations::after(db, pos.seq, &gaps, BATCH).await?;
        let full = u64::try_from(batch.len()).unwrap_or(0) >= BATCH;
        for e in pos.advance(&batch, Instant::now()) {
            cache.apply_logged(&e.hashes, e.created_ms);
            if !e.created.is_empty() {
                cache.drop_local(&e.created);
            }
        }
        cache.set_tail_pos(pos.replay_from());
        if !full {
            return Ok(());
        }
    }
}

/// Entries are kept as long as L2 keeps records, and ten minutes more.
async fn prune(db: &DatabaseConnection, keep: Duration) -> anyhow::Result<()> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2) + 600_000;
    let gone = invalidations::prune(db, invalidations::clock_ms(db).await? - keep_ms).await?;
    if gone > 0 {
        tracing::debug!(gone, "invalidation log pruned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::invalidations::Invalidation;

    fn e(seq: i64) -> Invalidation {
        Invalidation { seq, hashes: Vec::new(), created: Vec::new(), created_ms: 0 }
    }

    #[test]
    fn a_number_committed_late_is_still_applied_once() {
        let t0 = Instant::now();
        let mut p = Position { seq: 10, gaps: BTreeMap::new() };
        // 12 commits before 11: 11 becomes a gap.
        let applied: Vec<i64> = p.advance(&[e(12)], t0).iter().map(|e| e.seq).collect();
        assert_eq!(applied, [12]);
        assert_eq!((p.seq, p.gaps.keys().copied().collect::<Vec<_>>(), p.replay_from()), (12, vec![11], 10));
        // 11 arrives at the next poll, with 13; 12 is not applied again.
        let applied: Vec<i64> = p.advance(&[e(11), e(12), e(13)], t0).iter().map(|e| e.seq).collect();
        assert_eq!(applied, [11, 13]);
        assert!(p.gaps.is_empty());
        assert_eq!(p.replay_from(), 13);
        // A gap never filled (a rolled-back transaction) is given up after a minute.
        p.advance(&[e(15)], t0);
        assert_eq!(p.gaps.len(), 1);
        p.advance(&[], t0 + GAP_PATIENCE + Duration::from_secs(1));
        assert!(p.gaps.is_empty());
        // A jump far ahead (a restored database) tracks no gaps.
        p.advance(&[e(15 + MAX_GAPS + 5)], t0);
        assert!(p.gaps.is_empty());
    }
}

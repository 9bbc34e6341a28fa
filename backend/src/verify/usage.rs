//! Verification counts per key, minute and outcome, aggregated in process and flushed in
//! batches: no database write per verification. Counting takes a lock on one of several
//! shards, chosen per worker thread, so workers never contend with each other.
//!
//! A node that dies loses at most the counts of its last flush interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::code::Code;
use crate::store::usage::{UsageCount, add_minute_counts};
use crate::store::{StoreError, keys};

const SHARDS: usize = 16;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

#[derive(Default)]
struct Cell {
    counts: [u64; 10],
    last_used_ms: i64,
}

struct KeyCells {
    tenant_id: Arc<str>,
    minutes: Vec<(i64, Cell)>,
}

#[derive(Default)]
struct Shard {
    keys: HashMap<Arc<str>, KeyCells>,
}

/// The per-node aggregator.
pub struct UsageCounter {
    shards: [Mutex<Shard>; SHARDS],
}

impl Default for UsageCounter {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::new(Shard::default())) }
    }
}

impl UsageCounter {
    /// Counts one outcome for a key, now.
    pub fn record(&self, key_id: &Arc<str>, tenant_id: &Arc<str>, code: Code, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000);
        let shard = THREAD_SHARD.with(|s| *s);
        let Ok(mut guard) = self.shards[shard].lock() else { return };
        let cells = match guard.keys.get_mut(&**key_id) {
            Some(c) => c,
            None => guard
                .keys
                .entry(key_id.clone())
                .or_insert_with(|| KeyCells { tenant_id: tenant_id.clone(), minutes: Vec::with_capacity(2) }),
        };
        let cell = match cells.minutes.iter().position(|(m, _)| *m == minute) {
            Some(i) => &mut cells.minutes[i].1,
            None => {
                cells.minutes.push((minute, Cell::default()));
                let last = cells.minutes.len() - 1;
                &mut cells.minutes[last].1
            }
        };
        cell.counts[code.index()] += 1;
        cell.last_used_ms = cell.last_used_ms.max(now_ms);
    }

    /// Takes everything counted so far.
    fn drain(&self) -> (Vec<UsageCount>, Vec<(String, DateTime<Utc>)>) {
        let mut counts = Vec::new();
        let mut last_used: HashMap<Arc<str>, i64> = HashMap::new();
        for shard in &self.shards {
            let taken = match shard.lock() {
                Ok(mut g) => std::mem::take(&mut g.keys),
                Err(_) => continue,
            };
            for (key_id, cells) in taken {
                for (minute, cell) in cells.minutes {
                    let bucket_start = DateTime::from_timestamp(minute * 60, 0).unwrap_or_default();
                    for code in Code::ALL {
                        let n = cell.counts[code.index()];
                        if n > 0 {
                            counts.push(UsageCount {
                                bucket_start,
                                key_id: key_id.to_string(),
                                tenant_id: cells.tenant_id.to_string(),
                                code: code.as_str(),
                                count: i64::try_from(n).unwrap_or(i64::MAX),
                            });
                        }
                    }
                    // Only successful verifications count as use.
                    if cell.counts[Code::Valid.index()] > 0 {
                        let e = last_used.entry(key_id.clone()).or_insert(cell.last_used_ms);
                        *e = (*e).max(cell.last_used_ms);
                    }
                }
            }
        }
        let last_used = last_used
            .into_iter()
            .filter_map(|(k, ms)| DateTime::from_timestamp_millis(ms).map(|t| (k.to_string(), t)))
            .collect();
        (merge(counts), last_used)
    }

    /// Writes what was counted since the last flush.
    ///
    /// # Errors
    /// Database errors; the drained counts are then lost (logged by the caller).
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, StoreError> {
        let (counts, last_used) = self.drain();
        let n = counts.len();
        if n > 0 {
            add_minute_counts(db, counts).await?;
        }
        if !last_used.is_empty() {
            keys::touch_last_used(db, &last_used).await?;
        }
        Ok(n)
    }
}

/// The same key, minute and code can come from several shards: add them up.
fn merge(counts: Vec<UsageCount>) -> Vec<UsageCount> {
    let mut by: HashMap<(DateTime<Utc>, String, &'static str), UsageCount> = HashMap::new();
    for c in counts {
        by.entry((c.bucket_start, c.key_id.clone(), c.code)).and_modify(|e| e.count += c.count).or_insert(c);
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_minute_and_code_and_tracks_last_use() {
        let u = UsageCounter::default();
        let k: Arc<str> = Arc::from("key_a");
        let t: Arc<str> = Arc::from("ten_a");
        u.record(&k, &t, Code::Valid, 60_000);
        u.record(&k, &t, Code::Valid, 60_500);
        u.record(&k, &t, Code::Revoked, 61_000);
        u.record(&k, &t, Code::Valid, 120_000);
        let (mut counts, last) = u.drain();
        counts.sort_by_key(|c| (c.bucket_start, c.code));
        let got: Vec<_> = counts.iter().map(|c| (c.bucket_start.timestamp(), c.code, c.count)).collect();
        assert_eq!(got, vec![(60, "REVOKED", 1), (60, "VALID", 2), (120, "VALID", 1)]);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].1.timestamp_millis(), 120_000);
        assert!(u.drain().0.is_empty(), "drain empties the counters");
    }
}

//! Verification counts per key, minute and outcome, aggregated in process and flushed in
//! batches: no database write per verification. A verification counts in its key's cached
//! record (the current minute's [`crate::cache::record::UsageSlot`]), which goes on a list of
//! its worker's shard the first time; a minute's counts move to the shard when the next minute
//! begins. Other counts (unknown keys, client addresses) go to the shard directly. Each worker
//! thread has its shard, so workers never contend with each other.
//!
//! A node that dies loses at most the counts of its last flush interval.
//!
//! Beside the counts, each key keeps the client addresses it was used from (up to
//! [`IPS_PER_KEY`] per flush, as the gateway passed them in `ip`), and unknown keys are counted
//! per API — `NOT_FOUND`, and `MALFORMED` when the key still names an API by its head (a
//! mistyped key fails its checksum) — up to [`MISSES_PER_SHARD`] APIs per shard and flush, so
//! garbage cannot grow the counters: what the anomaly detector reads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use crate::cache::record::{CODES, KeyRecord, MinuteCounts};
use crate::domain::code::Code;
use crate::store::StoreError;
use crate::store::usage::{ClientSeen, UsageCount, add_minute_counts, resolve_misses, touch_clients, touch_last_used};

const SHARDS: usize = 16;

/// Client addresses kept per key between two flushes.
pub const IPS_PER_KEY: usize = 8;

/// APIs whose unknown keys one shard counts between two flushes.
pub const MISSES_PER_SHARD: usize = 16;

/// Records one shard lists between two flushes, at most. A listed record stays in memory until
/// the flush, even once L1 has let it go: past this many (a sweep through more keys than L1
/// holds), further keys count in the shard's map, which keeps only their counts.
pub const LISTED_PER_SHARD: usize = 10_000;

pub use crate::domain::code::MissedApi;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

#[derive(Default)]
struct Cell {
    counts: [u64; CODES],
    last_used_ms: i64,
}

impl Cell {
    fn count(&mut self, code: Code, now_ms: i64) {
        self.counts[code.index()] += 1;
        self.last_used_ms = self.last_used_ms.max(now_ms);
    }

    /// Adds a record's slot.
    fn add(&mut self, slot: &MinuteCounts) {
        for (sum, n) in self.counts.iter_mut().zip(slot.counts) {
            *sum += u64::from(n);
        }
        self.last_used_ms = self.last_used_ms.max(slot.last_used_ms);
    }
}

struct KeyCells {
    tenant_id: Arc<str>,
    minutes: Vec<(i64, Cell)>,
    /// Address, first and last use (ms).
    ips: Vec<(IpAddr, i64, i64)>,
}

#[derive(Default)]
struct Shard {
    /// By key id (foldhash: every verification looks its key up here).
    keys: HashMap<Arc<str>, KeyCells, foldhash::fast::RandomState>,
    /// Per API: minute, `NOT_FOUND` and `MALFORMED` counts.
    misses: HashMap<MissedApi, Vec<(i64, u64, u64)>>,
    /// Records whose usage slot holds counts.
    listed: Vec<Arc<KeyRecord>>,
}

impl Shard {
    fn cells(&mut self, key_id: &Arc<str>, tenant_id: &Arc<str>) -> &mut KeyCells {
        self.keys.entry(key_id.clone()).or_insert_with(|| KeyCells {
            tenant_id: tenant_id.clone(),
            minutes: Vec::with_capacity(2),
            ips: Vec::new(),
        })
    }
}

impl KeyCells {
    fn seen_from(&mut self, ip: IpAddr, now_ms: i64) {
        match self.ips.iter().position(|(a, _, _)| *a == ip) {
            Some(i) => self.ips[i].2 = self.ips[i].2.max(now_ms),
            None if self.ips.len() < IPS_PER_KEY => self.ips.push((ip, now_ms, now_ms)),
            None => {}
        }
    }

    fn minute(&mut self, minute: i64) -> &mut Cell {
        let i = match self.minutes.iter().position(|(m, _)| *m == minute) {
            Some(i) => i,
            None => {
                self.minutes.push((minute, Cell::default()));
                self.minutes.len() - 1
            }
        };
        &mut self.minutes[i].1
    }
}

/// What one flush writes.
#[derive(Default)]
struct Drained {
    counts: Vec<UsageCount>,
    last_used: Vec<(String, DateTime<Utc>)>,
    clients: Vec<ClientSeen>,
    misses: Vec<(MissedApi, i64, Code, u64)>,
}

/// How long a node waits before writing a client address it already wrote again (its
/// `last_seen_at` only decides when the address is forgotten, after 30 days).
const CLIENT_REWRITE_MS: i64 = 3_600_000;

/// Client addresses a node remembers having written, at most (then it starts over).
const CLIENTS_REMEMBERED: usize = 200_000;

/// The per-node aggregator.
pub struct UsageCounter {
    shards: [Mutex<Shard>; SHARDS],
    counting: bool,
    listed_per_shard: usize,
    /// (key, address) pairs this node wrote, and when: a known address is not written at every
    /// flush. Only the flush touches it.
    written: Mutex<HashMap<(String, String), i64>>,
}

impl Default for UsageCounter {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            counting: true,
            listed_per_shard: LISTED_PER_SHARD,
            written: Mutex::new(HashMap::new()),
        }
    }
}

impl UsageCounter {
    /// A counter that counts nothing (`KEYROLL_USAGE__COUNTING=false`, for measuring its cost).
    #[must_use]
    pub fn off() -> Self {
        Self { counting: false, ..Self::default() }
    }

    /// Counts one outcome for a key, now, and the client address of a successful one.
    pub fn record(&self, key_id: &Arc<str>, tenant_id: &Arc<str>, code: Code, ip: Option<IpAddr>, now_ms: i64) {
        if !self.counting {
            return;
        }
        let Ok(mut guard) = self.shards[THREAD_SHARD.with(|s| *s)].lock() else { return };
        let shard = &mut *guard;
        // Looked up by reference first: the id is cloned only for a key new to the shard.
        let cells = match shard.keys.get_mut(&**key_id) {
            Some(c) => c,
            None => shard.cells(key_id, tenant_id),
        };
        if code == Code::Valid
            && let Some(ip) = ip
        {
            cells.seen_from(ip, now_ms);
        }
        cells.minute(now_ms.div_euclid(60_000)).count(code, now_ms);
    }

    /// Counts one outcome of a verification of a cached key, as [`Self::record`] does, in the
    /// record's usage slot.
    pub fn record_verified(&self, rec: &Arc<KeyRecord>, code: Code, ip: Option<IpAddr>, now_ms: i64) {
        if !self.counting {
            return;
        }
        let shard = THREAD_SHARD.with(|s| *s);
        if code == Code::Valid
            && let Some(ip) = ip
            && let Ok(mut guard) = self.shards[shard].lock()
        {
            guard.cells(&rec.key_id, &rec.tenant_id).seen_from(ip, now_ms);
        }
        let minute = now_ms.div_euclid(60_000);
        let Ok(mut slot) = rec.usage.0.lock() else { return };
        if slot.minute != minute {
            // The slot's minute is over: its counts wait in the shard for the flush.
            let ended = std::mem::take(&mut *slot);
            if ended.counts.iter().any(|n| *n > 0)
                && let Ok(mut guard) = self.shards[shard].lock()
            {
                guard.cells(&rec.key_id, &rec.tenant_id).minute(ended.minute).add(&ended);
            }
            slot.minute = minute;
            slot.listed = ended.listed;
        }
        if !slot.listed {
            let Ok(mut guard) = self.shards[shard].lock() else { return };
            if guard.listed.len() >= self.listed_per_shard {
                drop(slot);
                guard.cells(&rec.key_id, &rec.tenant_id).minute(minute).count(code, now_ms);
                return;
            }
            slot.listed = true;
            guard.listed.push(Arc::clone(rec));
        }
        slot.counts[code.index()] = slot.counts[code.index()].saturating_add(1);
        if code == Code::Valid {
            slot.last_used_ms = slot.last_used_ms.max(now_ms);
        }
    }

    /// Counts a `NOT_FOUND` or `MALFORMED` for the API an unknown key was meant for.
    pub fn record_miss(&self, api: MissedApi, code: Code, now_ms: i64) {
        if !self.counting {
            return;
        }
        let minute = now_ms.div_euclid(60_000);
        let shard = THREAD_SHARD.with(|s| *s);
        let Ok(mut guard) = self.shards[shard].lock() else { return };
        let room = guard.misses.len() < MISSES_PER_SHARD;
        let minutes = match guard.misses.get_mut(&api) {
            Some(m) => m,
            None if room => guard.misses.entry(api).or_default(),
            None => return,
        };
        let i = match minutes.iter().position(|(m, _, _)| *m == minute) {
            Some(i) => i,
            None => {
                minutes.push((minute, 0, 0));
                minutes.len() - 1
            }
        };
        if code == Code::Malformed {
            minutes[i].2 += 1;
        } else {
            minutes[i].1 += 1;
        }
    }

    /// Takes everything counted so far.
    fn drain(&self) -> Drained {
        let mut out = Drained::default();
        let mut counts = Vec::new();
        // foldhash: one entry per key used since the last flush, thousands of them.
        let mut last_used: HashMap<Arc<str>, i64, foldhash::fast::RandomState> = HashMap::default();
        for shard in &self.shards {
            let (mut taken, misses, listed) = match shard.lock() {
                Ok(mut g) => {
                    (std::mem::take(&mut g.keys), std::mem::take(&mut g.misses), std::mem::take(&mut g.listed))
                }
                Err(_) => continue,
            };
            // Taken from each slot under its lock only: a verification counting at the same
            // time lists its record again.
            for rec in listed {
                let Ok(mut slot) = rec.usage.0.lock() else { continue };
                let counted = std::mem::take(&mut *slot);
                drop(slot);
                taken
                    .entry(Arc::clone(&rec.key_id))
                    .or_insert_with(|| KeyCells {
                        tenant_id: Arc::clone(&rec.tenant_id),
                        minutes: Vec::with_capacity(1),
                        ips: Vec::new(),
                    })
                    .minute(counted.minute)
                    .add(&counted);
            }
            for (api, minutes) in misses {
                for (m, not_found, malformed) in minutes {
                    for (code, n) in [(Code::NotFound, not_found), (Code::Malformed, malformed)] {
                        if n > 0 {
                            out.misses.push((api.clone(), m, code, n));
                        }
                    }
                }
            }
            for (key_id, cells) in taken {
                for (ip, first, last) in cells.ips {
                    if let (Some(first), Some(last)) =
                        (DateTime::from_timestamp_millis(first), DateTime::from_timestamp_millis(last))
                    {
                        out.clients.push(ClientSeen {
                            key_id: key_id.to_string(),
                            tenant_id: cells.tenant_id.to_string(),
                            ip: ip.to_string(),
                            first,
                            last,
                        });
                    }
                }
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
        out.last_used = last_used
            .into_iter()
            .filter_map(|(k, ms)| DateTime::from_timestamp_millis(ms).map(|t| (k.to_string(), t)))
            .collect();
        // In id order on every node, so two nodes' flushes lock the keys they share in one order.
        out.last_used.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.counts = counts;
        out.clients = merge_clients(std::mem::take(&mut out.clients));
        out
    }

    /// Writes what was counted since the last flush.
    ///
    /// # Errors
    /// Database errors; the drained counts are then lost (logged by the caller).
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, StoreError> {
        let Drained { mut counts, last_used, clients, misses } = self.drain();
        if !misses.is_empty() {
            counts.extend(resolve_misses(db, misses).await?);
        }
        let clients = self.not_written_lately(clients);
        if counts.is_empty() && last_used.is_empty() && clients.is_empty() {
            return Ok(0);
        }
        // On SQLite, one transaction: one commit (one fsync) for thousands of rows, and every page
        // written once however many statements touch it. SQLite has one writer at a time, so
        // nothing can wait on it in a cycle. On PostgreSQL each statement commits on its own, so
        // flushes of several nodes never hold row locks the others wait for.
        let cells = if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
            let txn = crate::store::begin_write(db).await?;
            let cells = write_flush(&txn, counts, &last_used, &clients).await?;
            txn.commit().await?;
            cells
        } else {
            write_flush(db, counts, &last_used, &clients).await?
        };
        if !clients.is_empty() {
            let now = Utc::now().timestamp_millis();
            if let Ok(mut w) = self.written.lock() {
                if w.len() + clients.len() > CLIENTS_REMEMBERED {
                    w.clear();
                }
                w.extend(clients.into_iter().map(|c| ((c.key_id, c.ip), now)));
            }
        }
        Ok(cells)
    }

    /// The addresses this node has not written within [`CLIENT_REWRITE_MS`]: new ones always.
    fn not_written_lately(&self, clients: Vec<ClientSeen>) -> Vec<ClientSeen> {
        let Ok(w) = self.written.lock() else { return clients };
        let now = Utc::now().timestamp_millis();
        clients
            .into_iter()
            .filter(|c| w.get(&(c.key_id.clone(), c.ip.clone())).is_none_or(|at| now - at >= CLIENT_REWRITE_MS))
            .collect()
    }
}

async fn write_flush(
    db: &impl sea_orm::ConnectionTrait,
    counts: Vec<UsageCount>,
    last_used: &[(String, DateTime<Utc>)],
    clients: &[ClientSeen],
) -> Result<usize, StoreError> {
    // Each writes nothing for none.
    let cells = add_minute_counts(db, counts).await?;
    touch_last_used(db, last_used).await?;
    touch_clients(db, clients).await?;
    Ok(cells)
}

/// The same key and address can come from several shards: one row each (a statement may not
/// upsert one row twice), from the first sighting to the last.
fn merge_clients(clients: Vec<ClientSeen>) -> Vec<ClientSeen> {
    let mut by: HashMap<(String, String), ClientSeen, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(clients.len(), foldhash::fast::RandomState::default());
    for c in clients {
        match by.entry((c.key_id.clone(), c.ip.clone())) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let seen = e.get_mut();
                seen.first = seen.first.min(c.first);
                seen.last = seen.last.max(c.last);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(c);
            }
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Environment;
    use crate::store::usage::merge_cells;

    #[test]
    fn counts_by_minute_and_code_and_tracks_last_use() {
        let u = UsageCounter::default();
        let k: Arc<str> = Arc::from("key_a");
        let t: Arc<str> = Arc::from("ten_a");
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let other: IpAddr = "2001:db8::1".parse().expect("ip");
        u.record(&k, &t, Code::Valid, Some(ip), 60_000);
        u.record(&k, &t, Code::Valid, Some(ip), 60_500);
        u.record(&k, &t, Code::Revoked, Some(other), 61_000);
        u.record(&k, &t, Code::Valid, None, 120_000);
        let d = u.drain();
        let (mut counts, last) = (merge_cells(d.counts), d.last_used);
        counts.sort_by_key(|c| (c.bucket_start, c.code));
        let got: Vec<_> = counts.iter().map(|c| (c.bucket_start.timestamp(), c.code, c.count)).collect();
        assert_eq!(got, vec![(60, "REVOKED", 1), (60, "VALID", 2), (120, "VALID", 1)]);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].1.timestamp_millis(), 120_000);
        let seen: Vec<_> =
            d.clients.iter().map(|c| (c.ip.as_str(), c.first.timestamp_millis(), c.last.timestamp_millis())).collect();
        assert_eq!(seen, vec![("203.0.113.9", 60_000, 60_500)], "only successful uses say where they came from");
        assert!(u.drain().counts.is_empty(), "drain empties the counters");
    }

    fn cached(key_id: &str) -> Arc<KeyRecord> {
        let data = serde_json::from_value(serde_json::json!({
            "id": key_id, "tenant_id": "ten_a", "api_id": "api_a", "lineage_id": key_id, "version": 1,
            "is_root": false, "name": null, "scopes": [], "meta": {}, "enabled": true, "expires_at": null,
            "grace_ends_at": null, "superseded_at": null, "successor_version": null, "revoked_at": null,
            "ratelimit": null, "credits": null, "ip_allowlist": null, "created_at": "2030-01-01T00:00:00Z",
            "consumer": null, "read_ms": 0
        }))
        .expect("a record");
        Arc::new(KeyRecord::new(data))
    }

    #[test]
    fn counts_in_cached_records_are_drained_like_the_rest() {
        let u = UsageCounter::default();
        let rec = cached("key_a");
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        u.record_verified(&rec, Code::Valid, Some(ip), 60_000);
        u.record_verified(&rec, Code::Valid, None, 60_500);
        u.record_verified(&rec, Code::Revoked, None, 61_000);
        // The next minute: the first one's counts wait in the shard.
        u.record_verified(&rec, Code::Valid, None, 120_000);
        // The key's record was replaced (an invalidation): the new one counts beside the old.
        let again = cached("key_a");
        u.record_verified(&again, Code::Valid, None, 120_100);
        // The root-key path counts in the shard directly.
        u.record(&rec.key_id, &rec.tenant_id, Code::Valid, None, 120_200);
        let d = u.drain();
        let (mut counts, last) = (merge_cells(d.counts), d.last_used);
        counts.sort_by_key(|c| (c.bucket_start, c.code));
        let got: Vec<_> = counts.iter().map(|c| (c.bucket_start.timestamp(), c.code, c.count)).collect();
        assert_eq!(got, vec![(60, "REVOKED", 1), (60, "VALID", 2), (120, "VALID", 3)]);
        assert_eq!(
            last.iter().map(|(k, t)| (k.as_str(), t.timestamp_millis())).collect::<Vec<_>>(),
            [("key_a", 120_200)]
        );
        assert_eq!(d.clients.len(), 1, "the address is kept as before");
        assert!(u.drain().counts.is_empty(), "drain empties the slots");
        // Counted again after a drain, the record is listed again.
        u.record_verified(&rec, Code::Valid, None, 120_300);
        assert_eq!(merge_cells(u.drain().counts).iter().map(|c| c.count).sum::<i64>(), 1);
        let off = UsageCounter::off();
        off.record_verified(&rec, Code::Valid, None, 120_400);
        assert!(off.drain().counts.is_empty());
    }

    #[test]
    fn past_the_list_limit_keys_count_in_the_map() {
        let u = UsageCounter { listed_per_shard: 2, ..UsageCounter::default() };
        let recs: Vec<_> = (0..5).map(|i| cached(&format!("key_{i}"))).collect();
        for r in &recs {
            u.record_verified(r, Code::Valid, None, 60_000);
            u.record_verified(r, Code::Valid, None, 60_001);
        }
        let listed: usize = u.shards.iter().map(|s| s.lock().expect("shard").listed.len()).sum();
        assert_eq!(listed, 2, "only as many records are held as the limit allows");
        let mut got: Vec<_> = merge_cells(u.drain().counts).into_iter().map(|c| (c.key_id, c.count)).collect();
        got.sort();
        let want: Vec<_> = (0..5).map(|i| (format!("key_{i}"), 2)).collect();
        assert_eq!(got, want, "every count is kept");
    }

    #[test]
    fn an_address_seen_on_two_threads_is_one_row() {
        let u = Arc::new(UsageCounter::default());
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let u = u.clone();
                std::thread::spawn(move || {
                    let (k, t): (Arc<str>, Arc<str>) = (Arc::from("key_a"), Arc::from("ten_a"));
                    u.record(&k, &t, Code::Valid, Some(ip), 60_000 + i);
                })
            })
            .collect();
        for w in workers {
            w.join().expect("thread");
        }
        let d = u.drain();
        assert_eq!(d.clients.len(), 1);
        assert_eq!((d.clients[0].first.timestamp_millis(), d.clients[0].last.timestamp_millis()), (60_000, 60_001));
    }

    #[test]
    fn addresses_and_unknown_apis_are_bounded() {
        let u = UsageCounter::default();
        let k: Arc<str> = Arc::from("key_a");
        let t: Arc<str> = Arc::from("ten_a");
        for i in 0..100u8 {
            u.record(&k, &t, Code::Valid, Some(IpAddr::from([10, 0, 0, i])), 60_000);
        }
        for i in 0..100 {
            let head = MissedApi::Head(format!("p{i}").into(), Environment::Live);
            u.record_miss(head.clone(), Code::NotFound, 60_000);
            u.record_miss(head, Code::NotFound, 60_001);
        }
        let d = u.drain();
        assert_eq!(d.clients.len(), IPS_PER_KEY);
        // Every miss of this test ran on one thread, so on one shard.
        assert_eq!(d.misses.len(), MISSES_PER_SHARD);
        assert!(d.misses.iter().all(|(_, m, code, n)| *m == 1 && *code == Code::NotFound && *n == 2));
    }
}

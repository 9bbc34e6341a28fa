//! Credit spends on the verify path.
//!
//! With Redis, a balance lives there while it is used: verifications spend with one atomic
//! script (exact whichever node spends, never below zero), and each node writes what its
//! verifications spent to the database in one batch per usage flush interval. While a script
//! call for a lineage is out, the node's next spends of that lineage wait and then go together in
//! one call, each spent in turn: a busy key costs one Redis round trip per round, not one per
//! verification. Without Redis, or
//! while it does not answer, each spend is one conditional update in the database.
//!
//! When Redis loses a balance (a restart without persistence, a failover to a replica that had
//! not received the last writes), the next spend loads it again from the database, which lacks
//! at most the spends of one flush interval: those credits can be spent a second time, never
//! more. The database never counts a spend twice: a flush takes and zeroes what it writes in one
//! script, and gives it back when it cannot write it.
//!
//! A busy key's verifications spend from a lease instead (see [`crate::cache::credit_lease`]):
//! credits taken from the balance in Redis with one of its spends, spent in process, and given
//! back at the next flush, what they spent to be written with the rest. A key is leased for only
//! while its balance is large (a hundred times the lease) and above a tenth of its baseline, so
//! leases cost a nearly spent balance no verification; the answers of one node stay exact, and
//! another node's answers lag by at most what this node holds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::oneshot;

use crate::cache::KeyCache;
use crate::cache::credit_lease::{CreditLease, Grant, LeaseTry};
use crate::cache::credit_tier::{LeaseAnswer, Settled, SpendAnswer};
use crate::cache::record::KeyRecord;
use crate::cache::redis_tier::{RedisTier, TierError};
use crate::domain::input::Credits;
use crate::store::StoreError;
use crate::store::credits::{self as stored, Spend};

/// The most credits one lease holds.
const LEASE_MOST: u64 = 1_000;

/// A spend waiting for its lineage's next round, and where its answer goes.
type Waiter = (u64, oneshot::Sender<Result<Spend, Failed>>);

/// The credit balances this node spends from.
#[derive(Debug, Default)]
pub struct CreditLedger {
    /// Lineages spent from in Redis since this node's last flush.
    dirty: Arc<Mutex<HashSet<Arc<str>>>>,
    /// Lineages spent from in the database while Redis did not answer: the balance Redis holds
    /// misses those spends, so it is dropped before Redis is used for it again.
    aside: Mutex<HashSet<Arc<str>>>,
    any_aside: AtomicBool,
    /// Per lineage with a round in flight, the spends that arrived meanwhile: they go to Redis
    /// together in the next round, one script call for all of them (spent in arrival order), so
    /// a busy key costs Redis one call per round trip, not one per verification.
    queues: Arc<Mutex<HashMap<Arc<str>, Vec<Waiter>>>>,
    /// Records whose lease holds credits or spends, given back at the next flush.
    leased: Mutex<Vec<Arc<KeyRecord>>>,
}

/// The balance a verification spends from: its key's lineage's, with the key's credit settings.
#[derive(Debug, Clone, Copy)]
pub struct Purse<'a> {
    pub record: &'a Arc<KeyRecord>,
    pub credits: &'a Credits,
}

/// Why a round did not spend (shared by everyone in it).
#[derive(Debug, Clone)]
enum Failed {
    Redis(String),
    Store(String),
}

enum Fault {
    Redis(String),
    Store(StoreError),
}

impl From<TierError> for Fault {
    fn from(e: TierError) -> Self {
        Self::Redis(e.to_string())
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Why a balance read from the database could not be stored in Redis.
#[derive(Debug)]
pub enum LoadFault {
    Redis(TierError),
    Store(StoreError),
}

impl From<LoadFault> for Fault {
    fn from(e: LoadFault) -> Self {
        match e {
            LoadFault::Redis(e) => Self::Redis(e.to_string()),
            LoadFault::Store(e) => Self::Store(e),
        }
    }
}

/// Stores in Redis a balance read from the database, unless Redis holds one already, then reads
/// its revision again. A new balance set between the read and the store drops the one Redis held
/// before this store, not the old one this store wrote: that one is dropped here, and the next
/// spend loads the new balance.
///
/// # Errors
/// Redis unreachable or slow; database errors.
pub async fn store_loaded(
    l2: &RedisTier,
    db: &impl sea_orm::ConnectionTrait,
    lineage_id: &str,
    balance: &stored::StoredBalance,
) -> Result<(), LoadFault> {
    l2.load_credits(lineage_id, balance).await.map_err(LoadFault::Redis)?;
    let now = stored::revision(db, lineage_id).await.map_err(LoadFault::Store)?;
    if now != Some(balance.revision) {
        l2.drop_credits_of_revision(lineage_id, balance.revision).await.map_err(LoadFault::Redis)?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The rounds of one lineage, run by a task of their own until no spend waits.
struct Rounds {
    l2: RedisTier,
    db: DatabaseConnection,
    tenant_id: String,
    lineage: Arc<str>,
    credits: Credits,
    dirty: Arc<Mutex<HashSet<Arc<str>>>>,
    queues: Arc<Mutex<HashMap<Arc<str>, Vec<Waiter>>>>,
}

impl Rounds {
    async fn run(self, mut batch: Vec<Waiter>) {
        loop {
            let costs: Vec<u64> = batch.iter().map(|(c, _)| *c).collect();
            match self.once(&costs).await {
                Ok(spends) => {
                    for ((_, tx), s) in batch.into_iter().zip(spends) {
                        let _ = tx.send(Ok(s));
                    }
                }
                Err(f) => {
                    for (_, tx) in batch {
                        let _ = tx.send(Err(f.clone()));
                    }
                }
            }
            let next = {
                let mut queues = lock(&self.queues);
                match queues.get_mut(&*self.lineage) {
                    Some(waiting) if !waiting.is_empty() => Some(std::mem::take(waiting)),
                    _ => {
                        queues.remove(&*self.lineage);
                        None
                    }
                }
            };
            match next {
                Some(b) => batch = b,
                None => return,
            }
        }
    }

    async fn once(&self, costs: &[u64]) -> Result<Vec<Spend>, Failed> {
        let period = stored::period(&self.credits, Utc::now());
        let refill = self.credits.refill.map(|r| r.amount);
        let redis = |e: TierError| Failed::Redis(e.to_string());
        // A load can be dropped as overtaken (see [`store_loaded`]) and made again.
        for _ in 0..4 {
            match self.l2.spend_credits(&self.lineage, costs, period.as_deref(), refill).await.map_err(redis)? {
                SpendAnswer::Done { baseline, each } => {
                    let low = baseline / 10;
                    let spends: Vec<Spend> = each
                        .iter()
                        .zip(costs)
                        .map(|(&(spent, remaining), &cost)| Spend {
                            spent,
                            remaining,
                            // Exactly one spend takes the balance across a tenth of its baseline.
                            now_low: spent && cost > 0 && remaining <= low && remaining.saturating_add(cost) > low,
                        })
                        .collect();
                    if spends.iter().zip(costs).any(|(s, c)| s.spent && *c > 0) {
                        lock(&self.dirty).insert(Arc::clone(&self.lineage));
                    }
                    return Ok(spends);
                }
                SpendAnswer::Absent => {
                    let balance = stored::load(&self.db, &self.tenant_id, &self.lineage, &self.credits)
                        .await
                        .map_err(|e| Failed::Store(e.to_string()))?;
                    store_loaded(&self.l2, &self.db, &self.lineage, &balance).await.map_err(|e| match e {
                        LoadFault::Redis(e) => redis(e),
                        LoadFault::Store(e) => Failed::Store(e.to_string()),
                    })?;
                }
            }
        }
        Err(Failed::Store("the credit balance could not be loaded".into()))
    }
}

impl CreditLedger {
    /// Spends `cost` from the lineage's balance if it has that much.
    ///
    /// # Errors
    /// Database errors (Redis errors fall back to the database).
    pub async fn spend(
        &self,
        cache: &KeyCache,
        db: &DatabaseConnection,
        purse: Purse<'_>,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<Spend, StoreError> {
        let Purse { record, credits: c } = purse;
        let (tenant_id, lineage_id) = (record.data.tenant_id.as_str(), record.data.lineage_id.as_str());
        if let Some(l2) = cache.live_l2() {
            let tried = record.lease.as_ref().map_or(LeaseTry::Exact, |l| l.try_spend(cost, now.timestamp_millis()));
            let spent = match tried {
                LeaseTry::Spent { remaining } => return Ok(Spend { spent: true, remaining, now_low: false }),
                LeaseTry::Ask => self.lease_in_redis(l2, db, purse, cost, now).await,
                LeaseTry::Exact => self.spend_in_redis(l2, db, purse, cost).await,
            };
            match spent {
                Ok(s) => return Ok(s),
                Err(Fault::Store(e)) => return Err(e),
                Err(Fault::Redis(e)) => {
                    tracing::debug!(error = %e, "credits spent in the database while Redis is away");
                    cache.l2_failed(&e);
                }
            }
        }
        if cache.l2().is_some() {
            lock(&self.aside).insert(Arc::from(lineage_id));
            self.any_aside.store(true, Ordering::Release);
            // The balance in Redis is dropped when it answers again: its leases end now.
            self.void_leases(lineage_id);
        }
        stored::spend(db, tenant_id, lineage_id, c, cost, now).await
    }

    /// Drops the balance Redis holds for a lineage spent from in the database while Redis did not
    /// answer (it missed those spends), and the leases taken from it.
    async fn clear_aside(&self, l2: &RedisTier, lineage_id: &str) -> Result<(), Fault> {
        if !(self.any_aside.load(Ordering::Acquire) && lock(&self.aside).contains(lineage_id)) {
            return Ok(());
        }
        l2.forget_credits(&[lineage_id.to_owned()]).await?;
        self.void_leases(lineage_id);
        let mut aside = lock(&self.aside);
        aside.remove(lineage_id);
        self.any_aside.store(!aside.is_empty(), Ordering::Release);
        Ok(())
    }

    /// Stops this node's leases of a lineage's balance from being spent: the balance they came
    /// from is dropped from Redis (what they spent since the last flush is not written).
    fn void_leases(&self, lineage_id: &str) {
        for r in lock(&self.leased).iter().filter(|r| r.data.lineage_id == lineage_id) {
            let _ = r.lease.as_ref().and_then(|l| l.settle());
        }
    }

    /// Spends `cost` in Redis and asks for a lease for the key along with it.
    async fn lease_in_redis(
        &self,
        l2: &RedisTier,
        db: &DatabaseConnection,
        purse: Purse<'_>,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<Spend, Fault> {
        // Ends the ask however this ends, a request dropped midway included: a key left asking
        // would never be leased for again. An answer from Redis ends it itself.
        struct Asking<'a>(Option<&'a CreditLease>);
        impl Drop for Asking<'_> {
            fn drop(&mut self) {
                if let Some(l) = self.0 {
                    l.not_granted();
                }
            }
        }
        let mut asking = Asking(purse.record.lease.as_deref());
        let Purse { record, credits: c } = purse;
        let lineage_id = record.data.lineage_id.as_str();
        self.clear_aside(l2, lineage_id).await?;
        let period = stored::period(c, now);
        let refill = c.refill.map(|r| r.amount);
        for _ in 0..4 {
            match l2.lease_credits(lineage_id, cost, LEASE_MOST, period.as_deref(), refill).await? {
                LeaseAnswer::Done { baseline, spent, remaining, lease, generation } => {
                    asking.0 = None;
                    if spent && cost > 0 {
                        lock(&self.dirty).insert(Arc::from(lineage_id));
                    }
                    // Only a key with a lease cell asks for a lease.
                    if let Some(cell) = &record.lease {
                        if lease > 0 {
                            let until_ms = stored::period_end(c, now).map_or(i64::MAX, |t| t.timestamp_millis());
                            let beside = remaining.saturating_sub(lease);
                            if cell.granted(Grant { size: lease, beside, period, generation, until_ms }) {
                                lock(&self.leased).push(Arc::clone(record));
                            }
                        } else {
                            cell.not_granted();
                        }
                    }
                    let low = baseline / 10;
                    let now_low = spent && cost > 0 && remaining <= low && remaining.saturating_add(cost) > low;
                    return Ok(Spend { spent, remaining, now_low });
                }
                LeaseAnswer::Absent => {
                    let balance = stored::load(db, &record.data.tenant_id, lineage_id, c).await?;
                    store_loaded(l2, db, lineage_id, &balance).await?;
                }
            }
        }
        Err(Fault::Store(StoreError::Conflict("the credit balance could not be loaded".into())))
    }

    async fn spend_in_redis(
        &self,
        l2: &RedisTier,
        db: &DatabaseConnection,
        purse: Purse<'_>,
        cost: u64,
    ) -> Result<Spend, Fault> {
        let lineage_id = purse.record.data.lineage_id.as_str();
        self.clear_aside(l2, lineage_id).await?;
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = lock(&self.queues);
            if let Some(waiting) = queues.get_mut(lineage_id) {
                waiting.push((cost, tx));
                None
            } else {
                queues.insert(Arc::from(lineage_id), Vec::new());
                Some(tx)
            }
        };
        if let Some(tx) = lead {
            let rounds = Rounds {
                l2: l2.clone(),
                db: db.clone(),
                tenant_id: purse.record.data.tenant_id.clone(),
                lineage: Arc::from(lineage_id),
                credits: *purse.credits,
                dirty: Arc::clone(&self.dirty),
                queues: Arc::clone(&self.queues),
            };
            // A task of its own: a request that goes away mid-round strands no other.
            tokio::spawn(rounds.run(vec![(cost, tx)]));
        }
        match rx.await {
            Ok(Ok(spend)) => Ok(spend),
            Ok(Err(Failed::Redis(m))) => Err(Fault::Redis(m)),
            Ok(Err(Failed::Store(m))) => Err(Fault::Store(StoreError::Db(sea_orm::DbErr::Custom(m)))),
            Err(_) => Err(Fault::Redis("the round of credit spends ended without an answer".into())),
        }
    }

    /// Writes to the database what this node's verifications spent in Redis since the last
    /// flush; returns how many balances were written. What cannot be written stays to the next.
    ///
    /// # Errors
    /// Database errors (the spends are kept for the next flush).
    pub async fn flush(&self, cache: &KeyCache, db: &DatabaseConnection) -> Result<usize, StoreError> {
        let Some(l2) = cache.l2() else { return Ok(0) };
        self.settle_leases(cache, l2).await;
        let dirty: Vec<Arc<str>> = lock(&self.dirty).drain().collect();
        let mut written = 0;
        let mut failed = None;
        for (i, lineage) in dirty.iter().enumerate() {
            let taken = match l2.take_credits(lineage).await {
                // Gone from Redis: dropped by a change of credits, or lost with Redis.
                Ok(None) => continue,
                Ok(Some(t)) => t,
                Err(e) => {
                    cache.l2_failed(&e);
                    lock(&self.dirty).extend(dirty[i..].iter().cloned());
                    break;
                }
            };
            if taken.spent == 0 && !taken.refilled {
                continue;
            }
            match stored::reconcile(db, lineage, &taken).await {
                Ok(()) => written += 1,
                Err(e) => {
                    if let Err(e) = l2.give_back_credits(lineage, &taken).await {
                        tracing::warn!(error = %e, lineage = %lineage, "credit spends taken but neither written nor given back");
                    }
                    lock(&self.dirty).insert(Arc::clone(lineage));
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(written), Err)
    }

    /// Gives every lease back to Redis: what it spent joins the spends to write, what is left can
    /// be spent by every node again. A lease Redis cannot take now is kept for the next flush.
    async fn settle_leases(&self, cache: &KeyCache, l2: &RedisTier) {
        let held = std::mem::take(&mut *lock(&self.leased));
        for (i, record) in held.iter().enumerate() {
            let Some(s) = record.lease.as_ref().and_then(|l| l.settle()) else { continue };
            let lineage = record.data.lineage_id.as_str();
            match l2.settle_credits(lineage, &s).await {
                Ok(Settled::Taken) => {
                    if s.spent > 0 {
                        lock(&self.dirty).insert(Arc::from(lineage));
                    }
                }
                Ok(Settled::Void | Settled::Gone) => {
                    tracing::debug!(lineage = %lineage, spent = s.spent, "a lease of a balance refilled, changed or lost since");
                }
                Err(e) => {
                    cache.l2_failed(&e);
                    let mut leased = lock(&self.leased);
                    if record.lease.as_ref().is_some_and(|l| l.put_back(s)) {
                        leased.push(Arc::clone(record));
                    }
                    leased.extend(held[i + 1..].iter().cloned());
                    return;
                }
            }
        }
    }

    /// Drops the lineages' balances from Redis after their credits were changed: the next spend
    /// reads them from the database.
    pub async fn forget(&self, cache: &KeyCache, lineage_ids: &[String]) {
        let Some(l2) = cache.l2() else { return };
        if lineage_ids.is_empty() {
            return;
        }
        for l in lineage_ids {
            self.void_leases(l);
        }
        if let Err(e) = l2.forget_credits(lineage_ids).await {
            tracing::warn!(error = %e, "could not drop changed credit balances from Redis; dropped when it answers");
            cache.l2_failed(&e);
            let mut aside = lock(&self.aside);
            aside.extend(lineage_ids.iter().map(|l| Arc::from(l.as_str())));
            self.any_aside.store(true, Ordering::Release);
        }
    }

    /// The balances of these lineages of the tenant as a verification would find them now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn balances(
        &self,
        cache: &KeyCache,
        db: &DatabaseConnection,
        tenant_id: &str,
        lineages: &[(&str, Credits)],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = stored::balances(db, tenant_id, lineages, now).await?;
        let Some(l2) = cache.live_l2() else { return Ok(out) };
        let ids: Vec<&str> = lineages.iter().map(|(l, _)| *l).filter(|l| out.contains_key(*l)).collect();
        match l2.peek_credits(&ids).await {
            Ok(live) => {
                for (id, held) in ids.iter().zip(live) {
                    let Some(h) = held else { continue };
                    let Some((_, c)) = lineages.iter().find(|(l, _)| l == id) else { continue };
                    // What leases hold is still there to spend, less what this node's spent.
                    let mine: u64 = lock(&self.leased)
                        .iter()
                        .filter(|r| r.data.lineage_id == *id)
                        .filter_map(|r| r.lease.as_ref().map(|l| l.unsettled(&h.generation)))
                        .sum();
                    let remaining = h.remaining.saturating_add(h.lent).saturating_sub(mine);
                    let refilled = match (stored::period(c, now), c.refill) {
                        (Some(p), Some(r)) if h.period.as_deref().is_none_or(|held| held < p.as_str()) => r.amount,
                        _ => remaining,
                    };
                    out.insert((*id).to_owned(), refilled);
                }
            }
            Err(e) => cache.l2_failed(&e),
        }
        Ok(out)
    }
}

//! Credits a node took from a busy balance in Redis to spend in process: a **lease**.
//!
//! A key verified often spends from its lineage's balance in Redis one round trip at a time
//! until it is busy; then one call takes, with the spend at hand, a lease of up to a hundredth
//! of what is left, and the key's next verifications spend from the lease without leaving the
//! process. Leased credits are gone from the balance in Redis, so all nodes together never spend
//! more than it holds. A lease lives in the cached record of one key, so a change to the key
//! (an operator's new balance among them) drops it on every node with the record; what it spent
//! and what is left go back to Redis at the node's next flush.

use std::sync::{Mutex, PoisonError};

/// Spends of a key one by one since the last flush after which it is leased for.
pub const BUSY_AFTER: u32 = 16;

/// What a key's lease can do for one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseTry {
    /// Spent from the lease; the balance this node now knows of.
    Spent { remaining: u64 },
    /// No lease can pay: this verification asks for one along with its spend.
    Ask,
    /// No lease can pay and none is asked for (the key is not busy, or a lease is on its way).
    Exact,
}

/// A lease's bounds, as Redis granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub size: u64,
    /// What the balance in Redis held after the lease was taken.
    pub beside: u64,
    pub period: Option<String>,
    /// The balance's generation: a lease of another one is void.
    pub generation: String,
    /// The lease may be spent from until then (Unix ms): the end of its refill period.
    pub until_ms: i64,
}

/// What a lease spent and has left, taken at a flush to go back to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub spent: u64,
    pub left: u64,
    pub period: Option<String>,
    pub generation: String,
}

#[derive(Debug, Default)]
struct State {
    left: u64,
    spent: u64,
    beside: u64,
    until_ms: i64,
    period: Option<String>,
    generation: String,
    asking: bool,
    /// Spends of this key that went to Redis one by one since the last flush.
    exact: u32,
    /// The ledger holds this record, to settle it at the next flush.
    held: bool,
}

/// The lease of one cached key record.
#[derive(Debug, Default)]
pub struct CreditLease(Mutex<State>);

impl CreditLease {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends `cost` from the lease when it can pay it, else says whether to ask for one.
    pub fn try_spend(&self, cost: u64, now_ms: i64) -> LeaseTry {
        let mut s = self.state();
        let live = now_ms < s.until_ms && (s.left > 0 || s.spent > 0);
        if live && s.left >= cost {
            s.left -= cost;
            s.spent = s.spent.saturating_add(cost);
            return LeaseTry::Spent { remaining: s.beside.saturating_add(s.left) };
        }
        s.exact = s.exact.saturating_add(1);
        if s.exact >= BUSY_AFTER && !s.asking {
            s.asking = true;
            LeaseTry::Ask
        } else {
            LeaseTry::Exact
        }
    }

    /// Takes a lease Redis granted; `true` when the ledger must now hold the record (it did not).
    pub fn granted(&self, g: Grant) -> bool {
        let mut s = self.state();
        s.asking = false;
        if s.generation == g.generation && s.period == g.period && (s.left > 0 || s.spent > 0) {
            s.left = s.left.saturating_add(g.size);
        } else {
            // What an earlier lease of another period or balance spent no longer counts: the
            // balance was refilled or replaced since.
            s.left = g.size;
            s.spent = 0;
            s.period = g.period;
            s.generation = g.generation;
        }
        s.beside = g.beside;
        s.until_ms = g.until_ms;
        !std::mem::replace(&mut s.held, true)
    }

    /// The ask for a lease ended without one: the key asks again after as many spends.
    pub fn not_granted(&self) {
        let mut s = self.state();
        s.asking = false;
        s.exact = 0;
    }

    /// Empties the lease for a flush: what it spent and has left, when either is not zero.
    pub fn settle(&self) -> Option<Settlement> {
        let mut s = self.state();
        s.held = false;
        s.exact = 0;
        if s.left == 0 && s.spent == 0 {
            return None;
        }
        Some(Settlement {
            spent: std::mem::take(&mut s.spent),
            left: std::mem::take(&mut s.left),
            period: s.period.clone(),
            generation: s.generation.clone(),
        })
    }

    /// Puts back a settlement Redis could not take; `true` when the ledger must hold the record
    /// again. It is kept only while no lease of another balance or period replaced it.
    pub fn put_back(&self, t: Settlement) -> bool {
        let mut s = self.state();
        let empty = s.left == 0 && s.spent == 0;
        if !empty && (s.generation != t.generation || s.period != t.period) {
            return false;
        }
        if empty {
            s.generation = t.generation;
            s.period = t.period;
        }
        s.spent = s.spent.saturating_add(t.spent);
        s.left = s.left.saturating_add(t.left);
        !std::mem::replace(&mut s.held, true)
    }

    /// What the lease spent since the last flush, for a balance of `generation`.
    pub fn unsettled(&self, generation: &str) -> u64 {
        let s = self.state();
        if s.generation == generation { s.spent } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(size: u64, beside: u64) -> Grant {
        Grant { size, beside, period: None, generation: "g1".into(), until_ms: i64::MAX }
    }

    #[test]
    fn a_key_is_leased_for_once_busy_and_spends_exactly() {
        let l = CreditLease::default();
        for _ in 1..BUSY_AFTER {
            assert_eq!(l.try_spend(1, 0), LeaseTry::Exact);
        }
        assert_eq!(l.try_spend(1, 0), LeaseTry::Ask);
        assert_eq!(l.try_spend(1, 0), LeaseTry::Exact, "one ask at a time");
        assert!(l.granted(grant(10, 900)));
        assert_eq!(l.try_spend(3, 0), LeaseTry::Spent { remaining: 907 });
        assert_eq!(l.try_spend(7, 0), LeaseTry::Spent { remaining: 900 });
        assert_eq!(l.try_spend(1, 0), LeaseTry::Ask, "spent out: the next asks again");
        assert!(!l.granted(grant(10, 880)), "already held");
        assert_eq!(l.try_spend(0, 0), LeaseTry::Spent { remaining: 890 });
        let s = l.settle().expect("something to settle");
        assert_eq!((s.spent, s.left), (10, 10));
        assert_eq!(l.settle(), None);
        assert_eq!(l.try_spend(1, 0), LeaseTry::Exact, "busy again only after the next spends");
    }

    #[test]
    fn a_lease_ends_with_its_period_and_is_replaced_by_another_balances() {
        let l = CreditLease::default();
        let mut g = grant(10, 500);
        g.until_ms = 1_000;
        assert!(l.granted(g));
        assert_eq!(l.try_spend(1, 999), LeaseTry::Spent { remaining: 509 });
        assert_ne!(l.try_spend(1, 1_000), LeaseTry::Spent { remaining: 508 }, "its period is over");
        let mut other = grant(20, 300);
        other.generation = "g2".into();
        l.granted(other);
        assert_eq!(l.unsettled("g1"), 0);
        assert_eq!(l.try_spend(2, 0), LeaseTry::Spent { remaining: 318 });
        assert_eq!(l.unsettled("g2"), 2);
        let s = l.settle().expect("settled");
        assert_eq!((s.spent, s.left, s.generation.as_str()), (2, 18, "g2"));
        assert!(l.put_back(s.clone()), "Redis did not take it: kept");
        l.granted(grant(5, 100));
        assert!(!l.put_back(s), "a lease of another balance replaced it");
    }
}

//! Credit balances in Redis: one hash per lineage (`rem`, `base`, `per`, `pend`, `lent`, `gen`,
//! `rev`),
//! spent by one atomic script per verification, so every node spends from the same balance
//! exactly. `pend` holds what was spent since the last reconciliation with the database; a flush
//! takes it (and zeroes it) in one script. `lent` is what nodes hold on leases (see
//! [`super::credit_lease`]), and `gen` names one loading of the balance from the database: a
//! lease of an earlier loading is void. `rev` is the revision of the balance in the database
//! (which setting of it was loaded): spends are written back only to that one. Every operation touches one key, tagged with the
//! lineage, so each stays in one slot of a Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

use super::credit_lease::Settlement;
use super::redis_tier::{RedisTier, TierError};
use crate::store::credits::{StoredBalance, Taken};

/// How long an untouched balance stays in Redis: far longer than a flush interval, so spends are
/// reconciled long before the balance goes.
const BALANCE_TTL_SECONDS: u64 = 3_600;

/// The start of the spending scripts: answers `{-1}` when the balance is not in Redis, refills a
/// balance of an earlier period (`ARGV[1]` the current one, `ARGV[2]` the refill amount) and
/// renews its lifetime (`ARGV[3]`).
macro_rules! refill_first {
    () => {
        "if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end \
         local per = redis.call('HGET', KEYS[1], 'per') or '' \
         if ARGV[1] ~= '' and ARGV[2] ~= '' and per < ARGV[1] then \
           redis.call('HSET', KEYS[1], 'rem', ARGV[2], 'base', ARGV[2], 'per', ARGV[1], 'pend', 0, 'refilled', 1, 'lent', 0) \
         end \
         redis.call('EXPIRE', KEYS[1], ARGV[3]) "
    };
}

/// `KEYS[1]` the balance; `ARGV` current period (`''` none), refill amount (`''` none), TTL, then
/// the costs of one or more verifications, spent in that order. Answers `{-1}` when the balance is
/// not in Redis, else `{baseline, spent₁ (1|0), remaining₁, spent₂, remaining₂, …}`. A balance of an
/// earlier period is refilled first (periods compare as strings: `2026-12` < `2027-01`, so a node
/// whose clock lags cannot undo another's refill).
static SPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        refill_first!(),
        "local rem = tonumber(redis.call('HGET', KEYS[1], 'rem')) \
         local out = {tonumber(redis.call('HGET', KEYS[1], 'base'))} \
         local total = 0 \
         for i = 4, #ARGV do \
           local cost = tonumber(ARGV[i]) \
           if rem >= cost then rem = rem - cost total = total + cost out[#out + 1] = 1 \
           else out[#out + 1] = 0 end \
           out[#out + 1] = rem \
         end \
         if total > 0 then \
           redis.call('HINCRBY', KEYS[1], 'rem', -total) \
           redis.call('HINCRBY', KEYS[1], 'pend', total) \
         end \
         return out"
    ))
});

/// `KEYS[1]` the balance; `ARGV` current period, refill amount, TTL (as [`SPEND`]), the cost of
/// one verification, and the largest lease. Spends the cost and, when that leaves enough, lends
/// up to a hundredth of the rest (never taking it to a tenth of its baseline or below, so the
/// spend that crosses that line is always one made here). Answers `{-1}` when the balance is not
/// in Redis, else `{baseline, spent (1|0), remaining after the spend, lease, generation}`.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        refill_first!(),
        "local rem = tonumber(redis.call('HGET', KEYS[1], 'rem')) \
         local base = tonumber(redis.call('HGET', KEYS[1], 'base')) \
         local gen = redis.call('HGET', KEYS[1], 'gen') or '' \
         local cost = tonumber(ARGV[4]) \
         if rem < cost then return {base, 0, rem, 0, gen} end \
         rem = rem - cost \
         local size = math.min(tonumber(ARGV[5]), math.floor(rem / 100)) \
         if size < 10 or rem - size <= math.floor(base / 10) then size = 0 end \
         if cost + size > 0 then redis.call('HINCRBY', KEYS[1], 'rem', -(cost + size)) end \
         if cost > 0 then redis.call('HINCRBY', KEYS[1], 'pend', cost) end \
         if size > 0 then redis.call('HINCRBY', KEYS[1], 'lent', size) end \
         return {base, 1, rem, size, gen}"
    ))
});

/// `KEYS[1]` the balance; `ARGV` spent, left, period, generation of a lease: what it spent is
/// added to `pend`, what is left goes back to `rem`. Void (answers 0) when the balance was
/// refilled or loaded again since the lease was taken, and -1 when it is gone.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end \
         local v = redis.call('HMGET', KEYS[1], 'per', 'gen') \
         if (v[1] or '') ~= ARGV[3] or (v[2] or '') ~= ARGV[4] then return 0 end \
         local spent = tonumber(ARGV[1]) local left = tonumber(ARGV[2]) \
         if spent > 0 then redis.call('HINCRBY', KEYS[1], 'pend', spent) end \
         if left > 0 then redis.call('HINCRBY', KEYS[1], 'rem', left) end \
         if redis.call('HINCRBY', KEYS[1], 'lent', -(spent + left)) < 0 then \
           redis.call('HSET', KEYS[1], 'lent', 0) \
         end return 1",
    )
});

/// `KEYS[1]` the balance; `ARGV` remaining, baseline, period, TTL, generation, revision: stores the balance
/// as the database has it, unless another node already did.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then \
           redis.call('HSET', KEYS[1], 'rem', ARGV[1], 'base', ARGV[2], 'per', ARGV[3], 'pend', 0, 'lent', 0, 'gen', ARGV[5], 'rev', ARGV[6]) \
           redis.call('EXPIRE', KEYS[1], ARGV[4]) \
         end return 1",
    )
});

/// `KEYS[1]` the balance; `ARGV` a revision: drops the balance when it is of that revision.
static DROP_REVISION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('HGET', KEYS[1], 'rev') == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end \
         return 0",
    )
});

/// `KEYS[1]` the balance: takes what was spent since the last flush, and whether the balance
/// was refilled since; answers `{pend, refilled, period, baseline, revision}`, or nil when it is
/// gone.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
         local v = redis.call('HMGET', KEYS[1], 'pend', 'refilled', 'per', 'base', 'rev') \
         redis.call('HSET', KEYS[1], 'pend', 0, 'refilled', 0) \
         return {tonumber(v[1] or '0'), tonumber(v[2] or '0'), v[3] or '', tonumber(v[4] or '0'), v[5] or ''}",
    )
});

/// `KEYS[1]` the balance; `ARGV` spends, period, revision: gives back spends a flush could not
/// write, unless the balance is gone, was refilled or set again since (then they no longer count).
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('HMGET', KEYS[1], 'per', 'rev') \
         if v[1] == ARGV[2] and (v[2] or '') == ARGV[3] then \
           redis.call('HINCRBY', KEYS[1], 'pend', ARGV[1]) \
         end return 1",
    )
});

/// What the lease script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// The balance is not in Redis: load it from the database and ask again.
    Absent,
    Done {
        baseline: u64,
        spent: bool,
        /// The balance after the spend, the lease still in it.
        remaining: u64,
        /// Credits lent (0: none).
        lease: u64,
        generation: String,
    },
}

/// How Redis took back a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Taken,
    /// The balance was refilled or loaded again since: the lease no longer counts.
    Void,
    /// The balance is gone from Redis.
    Gone,
}

/// A balance as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBalance {
    pub remaining: u64,
    pub period: Option<String>,
    /// Credits out on leases.
    pub lent: u64,
    pub generation: String,
}

/// What the spend script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendAnswer {
    /// The balance is not in Redis: load it from the database and ask again.
    Absent,
    /// The balance's baseline, and per cost (in order): spent or not, and what was left after.
    Done { baseline: u64, each: Vec<(bool, u64)> },
}

impl RedisTier {
    fn balance_key(&self, lineage_id: &str) -> String {
        format!("{}kr:cr:{{{lineage_id}}}", self.prefix())
    }

    /// A call of a spending script with the arguments of its shared start ([`refill_first`]).
    fn spending<'a>(
        &self,
        script: &'a Script,
        lineage_id: &str,
        period: Option<&str>,
        refill: Option<u64>,
    ) -> redis::ScriptInvocation<'a> {
        let mut call = script.key(self.balance_key(lineage_id));
        call.arg(period.unwrap_or_default())
            .arg(refill.map(|r| r.to_string()).unwrap_or_default())
            .arg(BALANCE_TTL_SECONDS);
        call
    }

    /// Spends each cost, in order, from the lineage's balance while it has that much.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn spend_credits(
        &self,
        lineage_id: &str,
        costs: &[u64],
        period: Option<&str>,
        refill: Option<u64>,
    ) -> Result<SpendAnswer, TierError> {
        let mut call = self.spending(&SPEND, lineage_id, period, refill);
        for c in costs {
            call.arg(*c);
        }
        let got: Vec<i64> = self.timed(call.invoke_async(&mut self.connection())).await?;
        let num = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(match got.as_slice() {
            [-1] | [] => SpendAnswer::Absent,
            [baseline, rest @ ..] => SpendAnswer::Done {
                baseline: num(*baseline),
                each: rest.chunks_exact(2).map(|p| (p[0] == 1, num(p[1]))).collect(),
            },
        })
    }

    /// Spends `cost` from the lineage's balance and, when it holds enough, lends the node up to
    /// `most` credits more.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn lease_credits(
        &self,
        lineage_id: &str,
        cost: u64,
        most: u64,
        period: Option<&str>,
        refill: Option<u64>,
    ) -> Result<LeaseAnswer, TierError> {
        let mut call = self.spending(&LEASE, lineage_id, period, refill);
        call.arg(cost).arg(most);
        let got: Vec<redis::Value> = self.timed(call.invoke_async(&mut self.connection())).await?;
        let num = |v: &redis::Value| match v {
            redis::Value::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        Ok(match got.as_slice() {
            [base, spent, rem, lease, generation] => LeaseAnswer::Done {
                baseline: num(base),
                spent: num(spent) == 1,
                remaining: num(rem),
                lease: num(lease),
                generation: match generation {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::SimpleString(s) => s.clone(),
                    _ => String::new(),
                },
            },
            _ => LeaseAnswer::Absent,
        })
    }

    /// Gives a lease back: what it spent is to be written to the database, what is left can be
    /// spent again by every node.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn settle_credits(&self, lineage_id: &str, s: &Settlement) -> Result<Settled, TierError> {
        let mut call = SETTLE.key(self.balance_key(lineage_id));
        call.arg(s.spent).arg(s.left).arg(s.period.as_deref().unwrap_or_default()).arg(&s.generation);
        let got: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(match got {
            1 => Settled::Taken,
            0 => Settled::Void,
            _ => Settled::Gone,
        })
    }

    /// Stores the lineage's balance as read from the database, unless Redis has one already.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn load_credits(&self, lineage_id: &str, b: &StoredBalance) -> Result<(), TierError> {
        let mut call = LOAD.key(self.balance_key(lineage_id));
        // Names this loading: leases of an earlier one are void.
        let generation = uuid::Uuid::now_v7().simple().to_string();
        call.arg(b.remaining)
            .arg(b.baseline)
            .arg(b.period.as_deref().unwrap_or_default())
            .arg(BALANCE_TTL_SECONDS)
            .arg(generation)
            .arg(b.revision);
        let _: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(())
    }

    /// Drops the lineage's balance if Redis holds it at `revision`: a balance loaded from a read
    /// of the database that a new setting has overtaken. Answers whether it was dropped.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn drop_credits_of_revision(&self, lineage_id: &str, revision: i64) -> Result<bool, TierError> {
        let mut call = DROP_REVISION.key(self.balance_key(lineage_id));
        call.arg(revision);
        let dropped: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(dropped == 1)
    }

    /// Takes what was spent from the lineage's balance since the last flush; `None` when
    /// Redis no longer holds the balance.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn take_credits(&self, lineage_id: &str) -> Result<Option<Taken>, TierError> {
        let call = TAKE.key(self.balance_key(lineage_id));
        let got: Option<(i64, i64, String, i64, String)> =
            self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(got.map(|(spent, refilled, period, baseline, revision)| Taken {
            spent: u64::try_from(spent).unwrap_or(0),
            refilled: refilled == 1,
            period: (!period.is_empty()).then_some(period),
            baseline: u64::try_from(baseline).unwrap_or(0),
            // A balance loaded by a node of an earlier release has none.
            revision: revision.parse().ok(),
        }))
    }

    /// Gives back spends a flush took but could not write.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn give_back_credits(&self, lineage_id: &str, t: &Taken) -> Result<(), TierError> {
        let mut call = GIVE_BACK.key(self.balance_key(lineage_id));
        call.arg(t.spent)
            .arg(t.period.as_deref().unwrap_or_default())
            .arg(t.revision.map(|r| r.to_string()).unwrap_or_default());
        let _: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(())
    }

    /// The balances Redis holds for these lineages (`None` where it holds none).
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn peek_credits(&self, lineage_ids: &[&str]) -> Result<Vec<Option<HeldBalance>>, TierError> {
        let mut out = Vec::with_capacity(lineage_ids.len());
        for l in lineage_ids {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(self.balance_key(l)).arg("rem").arg("per").arg("lent").arg("gen");
            let (rem, per, lent, generation): (Option<u64>, Option<String>, Option<u64>, Option<String>) =
                self.timed(cmd.query_async(&mut self.connection())).await?;
            out.push(rem.map(|remaining| HeldBalance {
                remaining,
                period: per.filter(|p| !p.is_empty()),
                lent: lent.unwrap_or(0),
                generation: generation.unwrap_or_default(),
            }));
        }
        Ok(out)
    }

    /// Drops the lineages' balances: the next spend reads them from the database again.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn forget_credits(&self, lineage_ids: &[String]) -> Result<(), TierError> {
        // The balances may sit in different slots of a cluster.
        let dels = lineage_ids.iter().map(|l| {
            let mut pipe = redis::pipe();
            pipe.del(self.balance_key(l)).ignore();
            pipe
        });
        self.each_slot(dels).await
    }
}

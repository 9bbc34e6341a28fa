//! Credit balances in Redis: one hash per lineage (`rem`, `base`, `per`, `pend`), spent by one
//! atomic script per verification, so every node spends from the same balance exactly. `pend`
//! holds what was spent since the last reconciliation with the database; a flush takes it (and
//! zeroes it) in one script. Every operation touches one key, tagged with the lineage, so each
//! stays in one slot of a Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

use super::redis_tier::{RedisTier, TierError};
use crate::store::credits::{StoredBalance, Taken};

/// How long an untouched balance stays in Redis: far longer than a flush interval, so spends are
/// reconciled long before the balance goes.
const BALANCE_TTL_SECONDS: u64 = 3_600;

/// `KEYS[1]` the balance; `ARGV` current period (`''` none), refill amount (`''` none), TTL, then
/// the costs of one or more verifications, spent in that order. Answers `{-1}` when the balance is
/// not in Redis, else `{baseline, spent₁ (1|0), remaining₁, spent₂, remaining₂, …}`. A balance of an
/// earlier period is refilled first (periods compare as strings: `2026-12` < `2027-01`, so a node
/// whose clock lags cannot undo another's refill).
static SPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end \
         local per = redis.call('HGET', KEYS[1], 'per') or '' \
         if ARGV[1] ~= '' and ARGV[2] ~= '' and per < ARGV[1] then \
           redis.call('HSET', KEYS[1], 'rem', ARGV[2], 'base', ARGV[2], 'per', ARGV[1], 'pend', 0, 'refilled', 1) \
         end \
         redis.call('EXPIRE', KEYS[1], ARGV[3]) \
         local rem = tonumber(redis.call('HGET', KEYS[1], 'rem')) \
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
         return out",
    )
});

/// `KEYS[1]` the balance; `ARGV` remaining, baseline, period, TTL: stores the balance as the
/// database has it, unless another node already did.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then \
           redis.call('HSET', KEYS[1], 'rem', ARGV[1], 'base', ARGV[2], 'per', ARGV[3], 'pend', 0) \
           redis.call('EXPIRE', KEYS[1], ARGV[4]) \
         end return 1",
    )
});

/// `KEYS[1]` the balance: takes what was spent since the last flush, and whether the balance
/// was refilled since; answers `{pend, refilled, period, baseline}`, or nil when it is gone.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
         local v = redis.call('HMGET', KEYS[1], 'pend', 'refilled', 'per', 'base') \
         redis.call('HSET', KEYS[1], 'pend', 0, 'refilled', 0) \
         return {tonumber(v[1] or '0'), tonumber(v[2] or '0'), v[3] or '', tonumber(v[4] or '0')}",
    )
});

/// `KEYS[1]` the balance; `ARGV` spends, period: gives back spends a flush could not write,
/// unless the balance is gone or was refilled since (then they no longer count).
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('HGET', KEYS[1], 'per') == ARGV[2] then \
           redis.call('HINCRBY', KEYS[1], 'pend', ARGV[1]) \
         end return 1",
    )
});

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
        let mut call = SPEND.key(self.balance_key(lineage_id));
        call.arg(period.unwrap_or_default())
            .arg(refill.map(|r| r.to_string()).unwrap_or_default())
            .arg(BALANCE_TTL_SECONDS);
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

    /// Stores the lineage's balance as read from the database, unless Redis has one already.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn load_credits(&self, lineage_id: &str, b: &StoredBalance) -> Result<(), TierError> {
        let mut call = LOAD.key(self.balance_key(lineage_id));
        call.arg(b.remaining).arg(b.baseline).arg(b.period.as_deref().unwrap_or_default()).arg(BALANCE_TTL_SECONDS);
        let _: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(())
    }

    /// Takes what was spent from the lineage's balance since the last flush; `None` when
    /// Redis no longer holds the balance.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn take_credits(&self, lineage_id: &str) -> Result<Option<Taken>, TierError> {
        let call = TAKE.key(self.balance_key(lineage_id));
        let got: Option<(i64, i64, String, i64)> = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(got.map(|(spent, refilled, period, baseline)| Taken {
            spent: u64::try_from(spent).unwrap_or(0),
            refilled: refilled == 1,
            period: (!period.is_empty()).then_some(period),
            baseline: u64::try_from(baseline).unwrap_or(0),
        }))
    }

    /// Gives back spends a flush took but could not write.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn give_back_credits(&self, lineage_id: &str, t: &Taken) -> Result<(), TierError> {
        let mut call = GIVE_BACK.key(self.balance_key(lineage_id));
        call.arg(t.spent).arg(t.period.as_deref().unwrap_or_default());
        let _: i64 = self.timed(call.invoke_async(&mut self.connection())).await?;
        Ok(())
    }

    /// The balances Redis holds for these lineages (`None` where it holds none).
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn peek_credits(&self, lineage_ids: &[&str]) -> Result<Vec<Option<(u64, Option<String>)>>, TierError> {
        let mut out = Vec::with_capacity(lineage_ids.len());
        for l in lineage_ids {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(self.balance_key(l)).arg("rem").arg("per");
            let (rem, per): (Option<u64>, Option<String>) = self.timed(cmd.query_async(&mut self.connection())).await?;
            out.push(rem.map(|r| (r, per.filter(|p| !p.is_empty()))));
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

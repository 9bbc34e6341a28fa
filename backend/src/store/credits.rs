//! Credit balances: one per lineage, spent by verifications with a conditional update (never
//! below zero, whichever node spends), refilled at the first verification of a new period.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};

use super::StoreError;
use super::entities::key_credit;
use crate::domain::input::{Credits, RefillInterval};

/// The refill period `now` falls in: `2026-11-30` (daily) or `2026-11` (monthly), in UTC.
#[must_use]
pub fn period(c: &Credits, now: DateTime<Utc>) -> Option<String> {
    c.refill.map(|r| match r.interval {
        RefillInterval::Daily => now.format("%Y-%m-%d").to_string(),
        RefillInterval::Monthly => now.format("%Y-%m").to_string(),
    })
}

/// When the refill period `now` falls in ends: the next midnight or first of a month, in UTC.
#[must_use]
pub fn period_end(c: &Credits, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    use chrono::{Datelike, Months, NaiveTime, TimeDelta};
    let r = c.refill?;
    let day = now.date_naive();
    let next = match r.interval {
        RefillInterval::Daily => day.checked_add_signed(TimeDelta::days(1))?,
        RefillInterval::Monthly => day.with_day(1)?.checked_add_months(Months::new(1))?,
    };
    Some(next.and_time(NaiveTime::MIN).and_utc())
}

/// Sets a lineage's balance to `c.remaining` (`overwrite`), or only when it has none yet (a
/// new version of a lineage keeps the balance it shares). The balance set is also its new
/// baseline: `credits.low` is raised at a tenth of it.
///
/// # Errors
/// Database errors.
pub async fn set(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    lineage_id: &str,
    c: &Credits,
    overwrite: bool,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let row = key_credit::Model {
        lineage_id: lineage_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        remaining: i64::try_from(c.remaining).unwrap_or(i64::MAX),
        baseline: i64::try_from(c.remaining).unwrap_or(i64::MAX),
        period: period(c, now),
        updated_at: now,
        revision: new_revision(),
    };
    let mut conflict = OnConflict::column(key_credit::Column::LineageId);
    if overwrite {
        conflict.update_columns([
            key_credit::Column::Remaining,
            key_credit::Column::Baseline,
            key_credit::Column::Period,
            key_credit::Column::UpdatedAt,
            key_credit::Column::Revision,
        ]);
    } else {
        conflict.do_nothing();
    }
    key_credit::Entity::insert(row.into_active_model())
        .on_conflict(conflict.to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A revision no earlier setting of a balance had (random: sets on several nodes need no
/// coordination).
fn new_revision() -> i64 {
    rand::random()
}

/// Removes a lineage's balance (its credits were taken off).
///
/// # Errors
/// Database errors.
pub async fn clear(db: &impl ConnectionTrait, lineage_id: &str) -> Result<(), StoreError> {
    key_credit::Entity::delete_by_id(lineage_id).exec(db).await?;
    Ok(())
}

/// The balances of these lineages of the tenant as a verification would find them now: a
/// balance of an earlier period counts as refilled. Lineages with no balance stored are left out.
///
/// # Errors
/// Database errors.
pub async fn balances(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    lineages: &[(&str, Credits)],
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, u64>, StoreError> {
    if lineages.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let rows = key_credit::Entity::find()
        .filter(key_credit::Column::TenantId.eq(tenant_id))
        .filter(key_credit::Column::LineageId.is_in(lineages.iter().map(|(l, _)| *l)))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let c = lineages.iter().find(|(l, _)| *l == row.lineage_id)?.1;
            let stored = u64::try_from(row.remaining).unwrap_or(0);
            let remaining = match (period(&c, now), c.refill) {
                (Some(p), Some(refill)) if row.period.as_deref() != Some(p.as_str()) => refill.amount,
                _ => stored,
            };
            Some((row.lineage_id, remaining))
        })
        .collect())
}

/// A balance as the database holds it, to load into a cache of balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBalance {
    pub remaining: u64,
    pub baseline: u64,
    pub period: Option<String>,
    /// Which setting of the balance this is.
    pub revision: i64,
}

/// What was spent from a balance held elsewhere (in Redis) since it was last written here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Credits spent since the last flush.
    pub spent: u64,
    /// The balance was refilled (for `period`) since the last flush.
    pub refilled: bool,
    pub period: Option<String>,
    pub baseline: u64,
    /// The revision of the balance the spends were made from (`None`: loaded before balances had
    /// revisions).
    pub revision: Option<i64>,
}

/// What a spend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    pub spent: bool,
    /// The balance after it.
    pub remaining: u64,
    /// This spend took the balance to a tenth of its baseline or below (exactly one spend does).
    pub now_low: bool,
}

/// Spends `cost` from a lineage's balance if it has that much. A balance not stored yet starts
/// from `c` (keys made before balances were stored).
///
/// # Errors
/// Database errors.
pub async fn spend(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    lineage_id: &str,
    c: &Credits,
    cost: u64,
    now: DateTime<Utc>,
) -> Result<Spend, StoreError> {
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    let current = period(c, now);
    // Usually one statement: the spend itself. Only when it does not go through is the balance
    // refilled for a new period, or stored for the first time, and the spend tried again.
    for _ in 0..3 {
        if cost > 0 {
            // The row as this very update left it: its own before and after, whatever other
            // spends do at the same time, so exactly one spend sees the balance cross low.
            let mut spend = key_credit::Entity::update_many()
                .col_expr(key_credit::Column::Remaining, Expr::col(key_credit::Column::Remaining).sub(cost))
                .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
                .filter(key_credit::Column::LineageId.eq(lineage_id))
                .filter(key_credit::Column::Remaining.gte(cost));
            if let Some(p) = &current {
                // A balance of an earlier period is refilled before anything is spent from it.
                spend = spend.filter(key_credit::Column::Period.eq(p.as_str()));
            }
            if let Some(row) = spend.exec_with_returning(db).await?.first() {
                let low = row.baseline / 10;
                let now_low = row.remaining <= low && row.remaining.saturating_add(cost) > low;
                return Ok(Spend { spent: true, remaining: u64::try_from(row.remaining).unwrap_or(0), now_low });
            }
        }
        if let (Some(p), Some(refill)) = (&current, c.refill) {
            // The first verification of a new period refills; the period makes this happen once.
            let amount = i64::try_from(refill.amount).unwrap_or(i64::MAX);
            let refilled = key_credit::Entity::update_many()
                .col_expr(key_credit::Column::Remaining, Expr::value(amount))
                .col_expr(key_credit::Column::Baseline, Expr::value(amount))
                .col_expr(key_credit::Column::Period, Expr::value(p.clone()))
                .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
                .filter(key_credit::Column::LineageId.eq(lineage_id))
                .filter(
                    Condition::any()
                        .add(key_credit::Column::Period.is_null())
                        .add(key_credit::Column::Period.ne(p.as_str())),
                )
                .exec(db)
                .await?
                .rows_affected;
            if refilled > 0 {
                continue;
            }
        }
        // Free, not enough left, or no balance stored yet.
        match key_credit::Entity::find_by_id(lineage_id).one(db).await? {
            Some(row) => {
                let remaining = u64::try_from(row.remaining).unwrap_or(0);
                return Ok(Spend { spent: cost == 0, remaining, now_low: false });
            }
            None => set(db, tenant_id, lineage_id, c, false).await?,
        }
    }
    Err(StoreError::Conflict("the credit balance could not be read".into()))
}

/// The lineage's balance as stored, stored first from `c` when it has none (keys made before
/// balances were stored): what a cache of balances starts from.
///
/// # Errors
/// Database errors.
pub async fn load(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    lineage_id: &str,
    c: &Credits,
) -> Result<StoredBalance, StoreError> {
    for _ in 0..2 {
        if let Some(row) = key_credit::Entity::find_by_id(lineage_id).one(db).await? {
            return Ok(StoredBalance {
                remaining: u64::try_from(row.remaining).unwrap_or(0),
                baseline: u64::try_from(row.baseline).unwrap_or(0),
                period: row.period,
                revision: row.revision,
            });
        }
        set(db, tenant_id, lineage_id, c, false).await?;
    }
    Err(StoreError::Conflict("the credit balance could not be read".into()))
}

/// The revision of the lineage's balance as stored (`None`: it has none).
///
/// # Errors
/// Database errors.
pub async fn revision(db: &impl ConnectionTrait, lineage_id: &str) -> Result<Option<i64>, StoreError> {
    use sea_orm::QuerySelect;
    Ok(key_credit::Entity::find_by_id(lineage_id)
        .select_only()
        .column(key_credit::Column::Revision)
        .into_tuple()
        .one(db)
        .await?)
}

/// Writes spends made elsewhere (in Redis) to the lineage's balance: a refill first when the
/// balance was refilled for a period the database does not hold yet, then the spends, never
/// below zero. A balance that is gone (its credits were taken off), or was set again since the
/// spends' balance was loaded (another revision), is left alone: the operator's setting wins.
///
/// # Errors
/// Database errors.
pub async fn reconcile(db: &impl ConnectionTrait, lineage_id: &str, t: &Taken) -> Result<(), StoreError> {
    let now = Utc::now();
    let spent = i64::try_from(t.spent).unwrap_or(i64::MAX);
    let same_revision = match t.revision {
        Some(r) => Condition::all().add(key_credit::Column::Revision.eq(r)),
        None => Condition::all(),
    };
    if t.refilled
        && let Some(p) = &t.period
    {
        let baseline = i64::try_from(t.baseline).unwrap_or(i64::MAX);
        let refilled = key_credit::Entity::update_many()
            .col_expr(key_credit::Column::Remaining, Expr::value(Ord::max(baseline.saturating_sub(spent), 0)))
            .col_expr(key_credit::Column::Baseline, Expr::value(baseline))
            .col_expr(key_credit::Column::Period, Expr::value(p.clone()))
            .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
            .filter(key_credit::Column::LineageId.eq(lineage_id))
            .filter(same_revision.clone())
            .filter(
                Condition::any()
                    .add(key_credit::Column::Period.is_null())
                    .add(key_credit::Column::Period.lt(p.as_str())),
            )
            .exec(db)
            .await?
            .rows_affected;
        if refilled > 0 {
            return Ok(());
        }
    }
    if spent == 0 {
        return Ok(());
    }
    let same_period = match &t.period {
        Some(p) => key_credit::Column::Period.eq(p.as_str()),
        None => key_credit::Column::Period.is_null(),
    };
    let taken = key_credit::Entity::update_many()
        .col_expr(key_credit::Column::Remaining, Expr::col(key_credit::Column::Remaining).sub(spent))
        .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
        .filter(key_credit::Column::LineageId.eq(lineage_id))
        .filter(same_revision.clone())
        .filter(same_period.clone())
        .filter(key_credit::Column::Remaining.gte(spent))
        .exec(db)
        .await?
        .rows_affected;
    if taken == 0 {
        // Less left than was spent (spends made in the database while Redis was away): empty.
        key_credit::Entity::update_many()
            .col_expr(key_credit::Column::Remaining, Expr::value(0_i64))
            .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
            .filter(key_credit::Column::LineageId.eq(lineage_id))
            .filter(same_revision)
            .filter(same_period)
            .exec(db)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::input::Refill;

    #[test]
    fn a_period_ends_at_the_next_midnight_or_first_of_a_month() {
        let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().expect("a time");
        let with = |interval| Credits { remaining: 1, refill: Some(Refill { interval, amount: 1 }) };
        let daily = with(RefillInterval::Daily);
        let monthly = with(RefillInterval::Monthly);
        assert_eq!(period_end(&daily, at(2026, 12, 31, 23)), Some(at(2027, 1, 1, 0)));
        assert_eq!(period_end(&monthly, at(2026, 12, 6, 15)), Some(at(2027, 1, 1, 0)));
        assert_eq!(period_end(&monthly, at(2027, 1, 31, 0)), Some(at(2027, 2, 1, 0)));
        assert_eq!(period_end(&Credits { remaining: 1, refill: None }, at(2026, 12, 6, 0)), None);
        // The end is the first moment of the next period.
        let end = period_end(&daily, at(2026, 2, 28, 12)).expect("an end");
        assert_ne!(period(&daily, end), period(&daily, end - chrono::TimeDelta::milliseconds(1)));
    }
}

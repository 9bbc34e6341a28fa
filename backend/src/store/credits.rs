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

/// Sets a lineage's balance to `c.remaining` (`overwrite`), or only when it has none yet (a
/// new version of a lineage keeps the balance it shares).
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
    };
    let mut conflict = OnConflict::column(key_credit::Column::LineageId);
    if overwrite {
        conflict.update_columns([
            key_credit::Column::Remaining,
            key_credit::Column::Period,
            key_credit::Column::UpdatedAt,
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

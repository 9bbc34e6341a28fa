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

/// Spends `cost` from a lineage's balance if it has that much: `(spent, remaining after)`.
/// A balance not stored yet starts from `c` (keys made before balances were stored).
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
) -> Result<(bool, u64), StoreError> {
    let cost = i64::try_from(cost).unwrap_or(i64::MAX);
    for _ in 0..2 {
        if let (Some(p), Some(refill)) = (period(c, now), c.refill) {
            // The first spend of a new period refills; the period makes this happen once.
            key_credit::Entity::update_many()
                .col_expr(key_credit::Column::Remaining, Expr::value(i64::try_from(refill.amount).unwrap_or(i64::MAX)))
                .col_expr(key_credit::Column::Period, Expr::value(p.clone()))
                .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
                .filter(key_credit::Column::LineageId.eq(lineage_id))
                .filter(
                    Condition::any().add(key_credit::Column::Period.is_null()).add(key_credit::Column::Period.ne(p)),
                )
                .exec(db)
                .await?;
        }
        let spent = if cost == 0 {
            0
        } else {
            key_credit::Entity::update_many()
                .col_expr(key_credit::Column::Remaining, Expr::col(key_credit::Column::Remaining).sub(cost))
                .col_expr(key_credit::Column::UpdatedAt, Expr::value(now))
                .filter(key_credit::Column::LineageId.eq(lineage_id))
                .filter(key_credit::Column::Remaining.gte(cost))
                .exec(db)
                .await?
                .rows_affected
        };
        match key_credit::Entity::find_by_id(lineage_id).one(db).await? {
            Some(row) => {
                let left = u64::try_from(row.remaining).unwrap_or(0);
                return Ok((cost == 0 || spent == 1, left));
            }
            None => set(db, tenant_id, lineage_id, c, false).await?,
        }
    }
    Err(StoreError::Conflict("the credit balance could not be read".into()))
}

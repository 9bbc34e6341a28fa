//! Verification counts flushed from process memory: minute rollups, added up on conflict.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use super::StoreError;
use super::entities::usage_rollup;

/// One counted cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub bucket_start: DateTime<Utc>,
    pub key_id: String,
    pub tenant_id: String,
    pub code: &'static str,
    pub count: i64,
}

/// Adds the counts into the minute rollups.
///
/// # Errors
/// Database errors.
pub async fn add_minute_counts(db: &impl ConnectionTrait, counts: Vec<UsageCount>) -> Result<(), StoreError> {
    // Chunks keep each statement well under the bind-parameter limits of both backends.
    let mut counts = counts;
    while !counts.is_empty() {
        let rest = counts.split_off(counts.len().min(500));
        let chunk = std::mem::replace(&mut counts, rest);
        let rows = chunk.into_iter().map(|c| usage_rollup::ActiveModel {
            bucket_start: Set(c.bucket_start),
            granularity: Set("minute".into()),
            key_id: Set(c.key_id),
            code: Set(c.code.into()),
            tenant_id: Set(c.tenant_id),
            count: Set(c.count),
        });
        usage_rollup::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    usage_rollup::Column::BucketStart,
                    usage_rollup::Column::Granularity,
                    usage_rollup::Column::KeyId,
                    usage_rollup::Column::Code,
                ])
                .value(usage_rollup::Column::Count, Expr::cust("usage_rollups.count + excluded.count"))
                .to_owned(),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Rejected verifications of a tenant's keys since `since`, by code, most frequent first.
///
/// # Errors
/// Database errors.
pub async fn rejections_since(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(String, i64)>, StoreError> {
    use sea_orm::sea_query::Func;
    use sea_orm::{ColumnTrait, ExprTrait, QueryFilter, QuerySelect};
    let rows: Vec<(String, Option<i64>)> = usage_rollup::Entity::find()
        .select_only()
        .column(usage_rollup::Column::Code)
        .column_as(Expr::from(Func::sum(Expr::col(usage_rollup::Column::Count))).cast_as("bigint"), "total")
        .filter(usage_rollup::Column::TenantId.eq(tenant.as_str()))
        .filter(usage_rollup::Column::BucketStart.gte(since))
        .filter(usage_rollup::Column::Code.ne("VALID"))
        .group_by(usage_rollup::Column::Code)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: Vec<(String, i64)> =
        rows.into_iter().map(|(c, n)| (c, n.unwrap_or(0))).filter(|(_, n)| *n > 0).collect();
    out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    Ok(out)
}

/// Whose usage: one key, a consumer's keys or an API's keys.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Key(&'a str),
    Consumer(&'a str),
    Api(&'a str),
}

/// Counts of a tenant's keys in `[from, to)`, by minute bucket and code, oldest first.
///
/// # Errors
/// Database errors.
pub async fn minute_counts(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    scope: Scope<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, StoreError> {
    use sea_orm::sea_query::Query;
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};

    use super::entities::key;
    let mut q = usage_rollup::Entity::find()
        .select_only()
        .columns([usage_rollup::Column::BucketStart, usage_rollup::Column::Code, usage_rollup::Column::Count])
        .filter(usage_rollup::Column::TenantId.eq(tenant.as_str()))
        .filter(usage_rollup::Column::Granularity.eq("minute"))
        .filter(usage_rollup::Column::BucketStart.gte(from))
        .filter(usage_rollup::Column::BucketStart.lt(to));
    let keys_where = |col: key::Column, value: &str| {
        Query::select()
            .column(key::Column::Id)
            .from(key::Entity)
            .and_where(key::Column::TenantId.eq(tenant.as_str()))
            .and_where(col.eq(value))
            .to_owned()
    };
    q = match scope {
        Scope::Key(id) => q.filter(usage_rollup::Column::KeyId.eq(id)),
        Scope::Consumer(id) => {
            q.filter(usage_rollup::Column::KeyId.in_subquery(keys_where(key::Column::ConsumerId, id)))
        }
        Scope::Api(id) => q.filter(usage_rollup::Column::KeyId.in_subquery(keys_where(key::Column::ApiId, id))),
    };
    Ok(q.order_by_asc(usage_rollup::Column::BucketStart).into_tuple().all(db).await?)
}

//! The verifications a tenant is billed for: every outcome of its keys, root keys' and the
//! system API's aside, read from whichever rollups cover a span.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ConnectionTrait, EntityTrait};

use super::StoreError;
use super::entities::usage_rollup;
use super::usage::spans;

/// Every tenant's verifications (every outcome) in `[from, to)`, root keys' use of the
/// management API aside: one grouped read per granularity, whatever the number of tenants.
///
/// # Errors
/// Database errors.
pub async fn tenant_totals(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    use sea_orm::sea_query::{Func, Query};
    use sea_orm::{ColumnTrait, ExprTrait, QueryFilter, QuerySelect};

    use super::entities::{api, key};
    let root_keys =
        Query::select().column(key::Column::Id).from(key::Entity).and_where(key::Column::IsRoot.eq(true)).to_owned();
    let system_apis =
        Query::select().column(api::Column::Id).from(api::Entity).and_where(api::Column::IsSystem.eq(true)).to_owned();
    let mut out = std::collections::BTreeMap::new();
    for (g, start, end) in spans(db, from, to).await? {
        let rows: Vec<(String, Option<i64>)> = usage_rollup::Entity::find()
            .select_only()
            .column(usage_rollup::Column::TenantId)
            .column_as(Expr::from(Func::sum(Expr::col(usage_rollup::Column::Count))).cast_as("bigint"), "n")
            .filter(usage_rollup::Column::Granularity.eq(g))
            .filter(usage_rollup::Column::BucketStart.gte(start))
            .filter(usage_rollup::Column::BucketStart.lt(end))
            .filter(usage_rollup::Column::KeyId.not_in_subquery(root_keys.clone()))
            .filter(usage_rollup::Column::KeyId.not_in_subquery(system_apis.clone()))
            .group_by(usage_rollup::Column::TenantId)
            .into_tuple()
            .all(db)
            .await?;
        for (t, n) in rows {
            let n = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
            *out.entry(t).or_insert(0) += n;
        }
    }
    Ok(out)
}

/// The tenant's rollups of one granularity in `[start, end)` that are billed: root keys'
/// and the system API's aside. Nothing selected yet.
fn billable(
    tenant: &crate::domain::TenantId,
    granularity: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sea_orm::Select<usage_rollup::Entity> {
    use sea_orm::sea_query::Query;
    use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};

    use super::entities::{api, key};
    let system_keys = Query::select()
        .column(key::Column::Id)
        .from(key::Entity)
        .and_where(key::Column::TenantId.eq(tenant.as_str()))
        .and_where(key::Column::IsRoot.eq(true))
        .to_owned();
    let system_apis = Query::select()
        .column(api::Column::Id)
        .from(api::Entity)
        .and_where(api::Column::TenantId.eq(tenant.as_str()))
        .and_where(api::Column::IsSystem.eq(true))
        .to_owned();
    usage_rollup::Entity::find()
        .select_only()
        .filter(usage_rollup::Column::TenantId.eq(tenant.as_str()))
        .filter(usage_rollup::Column::Granularity.eq(granularity))
        .filter(usage_rollup::Column::BucketStart.gte(start))
        .filter(usage_rollup::Column::BucketStart.lt(end))
        .filter(usage_rollup::Column::KeyId.not_in_subquery(system_keys))
        .filter(usage_rollup::Column::KeyId.not_in_subquery(system_apis))
}

/// The tenant's billable verifications in `[from, to)` per UTC day (root keys aside), oldest
/// first, days without any left out.
///
/// # Errors
/// Database errors.
pub async fn tenant_by_day(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, u64)>, StoreError> {
    use chrono::DurationRound;
    use sea_orm::sea_query::Func;
    use sea_orm::{ExprTrait, QuerySelect};

    let mut days: std::collections::BTreeMap<DateTime<Utc>, u64> = std::collections::BTreeMap::new();
    for (g, start, end) in spans(db, from, to).await? {
        let rows: Vec<(DateTime<Utc>, Option<i64>)> = billable(tenant, g, start, end)
            .column(usage_rollup::Column::BucketStart)
            .column_as(Expr::from(Func::sum(Expr::col(usage_rollup::Column::Count))).cast_as("bigint"), "n")
            .group_by(usage_rollup::Column::BucketStart)
            .into_tuple()
            .all(db)
            .await?;
        for (at, n) in rows {
            let day = at.duration_trunc(chrono::TimeDelta::days(1)).unwrap_or(at);
            *days.entry(day).or_insert(0) += u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        }
    }
    Ok(days.into_iter().filter(|(_, n)| *n > 0).collect())
}

/// The tenant's verifications (every outcome) in `[from, to)`, its root keys' use of the
/// management API aside (counted under the system API's keys and id).
///
/// # Errors
/// Database errors.
pub async fn tenant_total(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, StoreError> {
    use sea_orm::sea_query::Func;
    use sea_orm::{ExprTrait, QuerySelect};

    let mut total: i64 = 0;
    for (g, start, end) in spans(db, from, to).await? {
        let n: Option<Option<i64>> = billable(tenant, g, start, end)
            .column_as(Expr::from(Func::sum(Expr::col(usage_rollup::Column::Count))).cast_as("bigint"), "n")
            .into_tuple()
            .one(db)
            .await?;
        total = total.saturating_add(n.flatten().unwrap_or(0));
    }
    Ok(u64::try_from(total).unwrap_or(0))
}

//! Verification counts flushed from process memory: minute rollups, added up on conflict.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use super::StoreError;
use super::entities::{usage_mark, usage_rollup};

/// One counted cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub bucket_start: DateTime<Utc>,
    pub key_id: String,
    pub tenant_id: String,
    pub code: &'static str,
    pub count: i64,
}

impl UsageCount {
    /// The rollup cell the count adds to (minute, key, code): also the order cells are written in.
    #[must_use]
    pub fn cell(&self) -> (DateTime<Utc>, &str, &str) {
        (self.bucket_start, &self.key_id, self.code)
    }
}

/// One count per cell, in the order cells are written: counts of the same cell (from several
/// shards of a node's counter) are added up, since a statement may upsert a row once. Sorted, so
/// equal cells are neighbours and nothing is hashed.
#[must_use]
pub fn merge_cells(mut counts: Vec<UsageCount>) -> Vec<UsageCount> {
    counts.sort_unstable_by(|a, b| a.cell().cmp(&b.cell()));
    counts.dedup_by(|next, kept| {
        let same = next.cell() == kept.cell();
        if same {
            kept.count = kept.count.saturating_add(next.count);
        }
        same
    });
    counts
}

/// A client address seen using a key between two flushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSeen {
    pub key_id: String,
    pub tenant_id: String,
    pub ip: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Records where keys were used from: a new address keeps its first sighting, a known one moves
/// its last.
///
/// # Errors
/// Database errors.
pub async fn touch_clients(db: &impl ConnectionTrait, seen: &[ClientSeen]) -> Result<(), StoreError> {
    use super::entities::key_client;
    // Every node upserts rows in the same order, so two flushes never wait on each other in a
    // cycle (PostgreSQL would end one with a deadlock error, and its rows would be lost).
    let mut seen: Vec<&ClientSeen> = seen.iter().collect();
    seen.sort_unstable_by(|a, b| (&a.key_id, &a.ip).cmp(&(&b.key_id, &b.ip)));
    for chunk in seen.chunks(500) {
        let rows = chunk.iter().map(|c| key_client::ActiveModel {
            key_id: Set(c.key_id.clone()),
            ip: Set(c.ip.clone()),
            tenant_id: Set(c.tenant_id.clone()),
            first_seen_at: Set(c.first),
            last_seen_at: Set(c.last),
        });
        key_client::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([key_client::Column::KeyId, key_client::Column::Ip])
                    .update_column(key_client::Column::LastSeenAt)
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Unknown keys counted per API they were meant for, as `NOT_FOUND` and `MALFORMED` cells of the
/// API itself. A head shared by APIs of several tenants names none of them, and is not counted.
///
/// # Errors
/// Database errors.
pub async fn resolve_misses(
    db: &impl ConnectionTrait,
    misses: Vec<(crate::domain::code::MissedApi, i64, crate::domain::code::Code, u64)>,
) -> Result<Vec<UsageCount>, StoreError> {
    use std::collections::HashMap;

    use sea_orm::{ColumnTrait, QueryFilter};

    use super::entities::api;
    use crate::domain::code::MissedApi;
    let mut ids = Vec::new();
    let mut prefixes = Vec::new();
    for (m, _, _, _) in &misses {
        match m {
            MissedApi::Id(id) => ids.push(id.as_str().to_owned()),
            MissedApi::Head(prefix, _) => prefixes.push(prefix.to_string()),
        }
    }
    let mut found = Vec::new();
    if !ids.is_empty() {
        found.extend(api::Entity::find().filter(api::Column::Id.is_in(ids)).all(db).await?);
    }
    if !prefixes.is_empty() {
        found.extend(api::Entity::find().filter(api::Column::KeyPrefix.is_in(prefixes)).all(db).await?);
    }
    let mut by_id: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut by_head: HashMap<(&str, &str), Vec<(&str, &str)>> = HashMap::new();
    for a in &found {
        by_id.insert(&a.id, (&a.id, &a.tenant_id));
        let named = by_head.entry((&a.key_prefix, &a.environment)).or_default();
        if !named.iter().any(|(id, _)| *id == a.id) {
            named.push((&a.id, &a.tenant_id));
        }
    }
    let mut out = Vec::new();
    for (m, minute, code, n) in &misses {
        let target = match m {
            MissedApi::Id(id) => by_id.get(id.as_str()).copied(),
            MissedApi::Head(prefix, env) => match by_head.get(&(&**prefix, env.as_str())).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            },
        };
        if let (Some((api_id, tenant_id)), Some(bucket_start)) = (target, DateTime::from_timestamp(minute * 60, 0)) {
            out.push(UsageCount {
                bucket_start,
                key_id: api_id.to_owned(),
                tenant_id: tenant_id.to_owned(),
                code: code.as_str(),
                count: i64::try_from(*n).unwrap_or(i64::MAX),
            });
        }
    }
    Ok(out)
}

/// A conflict on one cell: bucket, size, key and code.
fn same_cell() -> OnConflict {
    OnConflict::columns([
        usage_rollup::Column::BucketStart,
        usage_rollup::Column::Granularity,
        usage_rollup::Column::KeyId,
        usage_rollup::Column::Code,
    ])
}

/// Rows a flush writes with one statement: the rows travel as one JSON parameter, so a
/// statement costs one parse and one plan however many rows it carries.
const ROWS_PER_STATEMENT: usize = 5_000;

/// A time as the database keeps it: on SQLite, the text sqlx writes for a `DateTime<Utc>` (cells
/// are found again by comparing it); PostgreSQL reads the same text as a `timestamptz`.
fn stored_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

/// Runs `sql` once per [`ROWS_PER_STATEMENT`] rows, the rows bound as one JSON array, as text:
/// `$1::jsonb` reads it on PostgreSQL, `jsonb_each` on SQLite.
async fn execute_per_chunk<R: serde::Serialize>(
    db: &impl ConnectionTrait,
    sql: &str,
    rows: &[R],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let json =
            serde_json::to_string(chunk).map_err(|e| sea_orm::DbErr::Custom(format!("usage rows as JSON: {e}")))?;
        let values = [sea_orm::Value::from(json)];
        db.execute_raw(sea_orm::Statement::from_sql_and_values(db.get_database_backend(), sql, values)).await?;
    }
    Ok(())
}

/// Adds the counts into the minute rollups ([`merge_cells`] first); returns how many cells.
///
/// # Errors
/// Database errors.
pub async fn add_minute_counts(db: &impl ConnectionTrait, counts: Vec<UsageCount>) -> Result<usize, StoreError> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        b: String,
        k: &'a str,
        c: &'a str,
        t: &'a str,
        n: i64,
    }
    // Every node upserts cells in the same order (a statement takes its rows in the order of the
    // array), so two flushes never wait on each other in a cycle (PostgreSQL would end one with
    // a deadlock error, and its counts would be lost).
    let counts = merge_cells(counts);
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO usage_rollups (bucket_start, granularity, key_id, code, tenant_id, count) \
             SELECT r.b, 'minute', r.k, r.c, r.t, r.n \
             FROM jsonb_to_recordset($1::jsonb) AS r (b timestamptz, k text, c text, t text, n bigint) \
             ON CONFLICT (bucket_start, granularity, key_id, code) \
             DO UPDATE SET count = usage_rollups.count + excluded.count"
        }
        // `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to the insert. `jsonb_each`
        // hands each row over in SQLite's binary form, which `->>` reads without parsing it again
        // (`json_each` would write each row out as text for every member read from it).
        _ => {
            "INSERT INTO usage_rollups (bucket_start, granularity, key_id, code, tenant_id, count) \
             SELECT value ->> 'b', 'minute', value ->> 'k', value ->> 'c', value ->> 't', value ->> 'n' \
             FROM jsonb_each(?) WHERE true \
             ON CONFLICT (bucket_start, granularity, key_id, code) \
             DO UPDATE SET count = usage_rollups.count + excluded.count"
        }
    };
    let rows: Vec<Row<'_>> = counts
        .iter()
        .map(|c| Row { b: stored_time(c.bucket_start), k: &c.key_id, c: c.code, t: &c.tenant_id, n: c.count })
        .collect();
    execute_per_chunk(db, sql, &rows).await?;
    Ok(rows.len())
}

/// Sets `last_used_at` forward (never back) for each key (each named once, in id order): one
/// statement per 5 000 keys, since a flush after a busy second names thousands. PostgreSQL
/// plans the JSON's rows as a short list (a function's rows count as 100) and finds each key by
/// its primary key in the order given, so two nodes' flushes lock the keys they share in one
/// order.
///
/// # Errors
/// Database errors.
pub async fn touch_last_used(db: &impl ConnectionTrait, uses: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: &'a str,
        at: String,
    }
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "UPDATE keys SET last_used_at = v.at \
             FROM jsonb_to_recordset($1::jsonb) AS v (id text, at timestamptz) \
             WHERE keys.id = v.id AND (keys.last_used_at IS NULL OR keys.last_used_at < v.at)"
        }
        _ => {
            "UPDATE keys SET last_used_at = v.at \
             FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at FROM jsonb_each(?)) AS v \
             WHERE keys.id = v.id AND (keys.last_used_at IS NULL OR keys.last_used_at < v.at)"
        }
    };
    let rows: Vec<Row<'_>> = uses.iter().map(|(id, at)| Row { id, at: stored_time(*at) }).collect();
    execute_per_chunk(db, sql, &rows).await
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

/// Whose usage: one key, some keys, a consumer's keys or an API's keys.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Key(&'a str),
    /// At most a few hundred ids (they are bound one by one).
    Keys(&'a [String]),
    Consumer(&'a str),
    Api(&'a str),
}

/// Bucket sizes, smallest first.
pub const GRANULARITIES: [&str; 3] = ["minute", "hour", "day"];

/// The length of one bucket of `granularity` (a day for anything but a minute or an hour).
#[must_use]
pub fn step_of(granularity: &str) -> chrono::TimeDelta {
    match granularity {
        "minute" => chrono::TimeDelta::minutes(1),
        "hour" => chrono::TimeDelta::hours(1),
        _ => chrono::TimeDelta::days(1),
    }
}

/// Where the rollups into `granularity` end (exclusive), or `None` before the first one.
/// Coarser buckets are complete up to there; finer ones hold the rest.
async fn rolled_until(db: &impl ConnectionTrait, granularity: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(usage_mark::Entity::find_by_id(granularity).one(db).await?.map(|m| m.rolled_until))
}

/// Where a reader of the counts (a rollup, the anomaly detector, the meter) has got to.
///
/// # Errors
/// Database errors.
pub async fn mark_of(db: &impl ConnectionTrait, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    rolled_until(db, name).await
}

/// Sets where `granularity` (or another reader of the counts, such as the anomaly detector) has
/// got to.
///
/// # Errors
/// Database errors.
pub async fn mark(db: &impl ConnectionTrait, granularity: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
    let row = usage_mark::ActiveModel { granularity: Set(granularity.to_owned()), rolled_until: Set(until) };
    usage_mark::Entity::insert(row)
        .on_conflict(
            OnConflict::column(usage_mark::Column::Granularity)
                .update_column(usage_mark::Column::RolledUntil)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Counts of a tenant's keys in `[from, to)` in buckets of `granularity` or finer, oldest
/// first: the coarsest rollups that cover each part of the range, then finer ones for the rest.
///
/// # Errors
/// Database errors.
pub async fn counts(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    scope: Scope<'_>,
    granularity: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, StoreError> {
    let depth = GRANULARITIES.iter().position(|g| *g == granularity).unwrap_or(0);
    let mut out = Vec::new();
    let mut start = from;
    for g in GRANULARITIES[..=depth].iter().rev() {
        if start >= to {
            break;
        }
        let end = if *g == "minute" { Some(to) } else { rolled_until(db, g).await?.map(|u| u.min(to)) };
        let Some(end) = end.filter(|e| *e > start) else { continue };
        out.extend(read(db, tenant, scope, g, start, end).await?);
        start = end;
    }
    out.sort_by_key(|(t, _, _)| *t);
    Ok(out)
}

/// Which rollups cover `[from, to)`: the coarsest first, then finer ones for the rest, as
/// `(granularity, start, end)`.
pub(crate) async fn spans(
    db: &impl ConnectionTrait,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(&'static str, DateTime<Utc>, DateTime<Utc>)>, StoreError> {
    let mut out = Vec::new();
    let mut start = from;
    for g in GRANULARITIES.iter().rev() {
        if start >= to {
            break;
        }
        let end = if *g == "minute" { Some(to) } else { rolled_until(db, g).await?.map(|u| u.min(to)) };
        let Some(end) = end.filter(|e| *e > start) else { continue };
        out.push((*g, start, end));
        start = end;
    }
    Ok(out)
}

/// Daily totals (every outcome) of each of `ids` in `[from, to)`, `from` at a day's start:
/// `(day, key id, count)`, read from the coarsest rollups that cover each part of the range.
///
/// # Errors
/// Database errors.
pub async fn daily_by_key(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    ids: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, StoreError> {
    use chrono::DurationRound;
    use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
    let mut totals: std::collections::BTreeMap<(DateTime<Utc>, String), i64> = std::collections::BTreeMap::new();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    for (g, start, end) in spans(db, from, to).await? {
        let rows: Vec<(DateTime<Utc>, String, i64)> = usage_rollup::Entity::find()
            .select_only()
            .columns([usage_rollup::Column::BucketStart, usage_rollup::Column::KeyId, usage_rollup::Column::Count])
            .filter(usage_rollup::Column::TenantId.eq(tenant.as_str()))
            .filter(usage_rollup::Column::Granularity.eq(g))
            .filter(usage_rollup::Column::KeyId.is_in(ids.iter().map(String::as_str)))
            .filter(usage_rollup::Column::BucketStart.gte(start))
            .filter(usage_rollup::Column::BucketStart.lt(end))
            .into_tuple()
            .all(db)
            .await?;
        for (t, key, n) in rows {
            let day = t.duration_trunc(chrono::TimeDelta::days(1)).unwrap_or(t);
            *totals.entry((day, key)).or_default() += n;
        }
    }
    Ok(totals.into_iter().map(|((day, key), n)| (day, key, n)).collect())
}

async fn read(
    db: &impl ConnectionTrait,
    tenant: &crate::domain::TenantId,
    scope: Scope<'_>,
    granularity: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, String, i64)>, StoreError> {
    use sea_orm::sea_query::Query;
    use sea_orm::{ColumnTrait, ExprTrait, QueryFilter, QuerySelect};

    use super::entities::key;
    let mut q = usage_rollup::Entity::find()
        .select_only()
        .columns([usage_rollup::Column::BucketStart, usage_rollup::Column::Code, usage_rollup::Column::Count])
        .filter(usage_rollup::Column::TenantId.eq(tenant.as_str()))
        .filter(usage_rollup::Column::Granularity.eq(granularity))
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
        Scope::Keys(ids) => q.filter(usage_rollup::Column::KeyId.is_in(ids.iter().map(String::as_str))),
        Scope::Consumer(id) => {
            q.filter(usage_rollup::Column::KeyId.in_subquery(keys_where(key::Column::ConsumerId, id)))
        }
        // Unknown keys meant for the API are counted under the API's own id.
        // Correlated: each counted row's key is looked up, rather than every key of the API
        // (thousands) gathered first.
        Scope::Api(id) => q.filter(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(key::Entity)
                    .and_where(
                        Expr::col((key::Entity, key::Column::Id))
                            .equals((usage_rollup::Entity, usage_rollup::Column::KeyId)),
                    )
                    .and_where(key::Column::ApiId.eq(id))
                    .to_owned(),
            )
            .or(usage_rollup::Column::KeyId.eq(id)),
        ),
    };
    Ok(q.into_tuple().all(db).await?)
}

/// Buckets rolled up per run, at most (a node that was down catches up over a few runs).
const ROLL_PER_RUN: i32 = 48;

/// Rolls minute counts up into hours and hours into days, bucket by bucket, and removes what is
/// past its retention and already rolled up. A bucket is rolled once it closed two minutes ago
/// (counts reach the database within a flush interval); the newest rolled bucket is rolled again
/// on the next run, and rolling replaces, so a late count is not lost and nothing is counted
/// twice.
///
/// # Errors
/// Database errors.
pub async fn roll_up(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    retention: crate::config::UsageSettings,
) -> Result<u64, StoreError> {
    use chrono::DurationRound;
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut rolled = 0u64;
    for (fine, coarse) in [("minute", "hour"), ("hour", "day")] {
        let step = step_of(coarse);
        // A bucket is rolled once it closed (and, for days, once its hours are rolled).
        let mut closed = (now - chrono::TimeDelta::minutes(2)).duration_trunc(step).unwrap_or(now);
        if fine != "minute" {
            let Some(fine_until) = rolled_until(db, fine).await? else { continue };
            closed = closed.min(fine_until.duration_trunc(step).unwrap_or(fine_until));
        }
        let mut at = match rolled_until(db, coarse).await? {
            Some(until) => until - step,
            None => {
                let oldest: Option<DateTime<Utc>> = usage_rollup::Entity::find()
                    .select_only()
                    .column(usage_rollup::Column::BucketStart)
                    .filter(usage_rollup::Column::Granularity.eq(fine))
                    .order_by_asc(usage_rollup::Column::BucketStart)
                    .limit(1)
                    .into_tuple()
                    .one(db)
                    .await?;
                match oldest {
                    Some(t) => t.duration_trunc(step).unwrap_or(t),
                    None => continue,
                }
            }
        };
        for _ in 0..ROLL_PER_RUN {
            if at >= closed {
                break;
            }
            let rows: Vec<(String, String, String, i64)> = usage_rollup::Entity::find()
                .select_only()
                .columns([usage_rollup::Column::KeyId, usage_rollup::Column::Code, usage_rollup::Column::TenantId])
                .column(usage_rollup::Column::Count)
                .filter(usage_rollup::Column::Granularity.eq(fine))
                .filter(usage_rollup::Column::BucketStart.gte(at))
                .filter(usage_rollup::Column::BucketStart.lt(at + step))
                .into_tuple()
                .all(db)
                .await?;
            let mut sums: std::collections::HashMap<(String, String), (String, i64)> = std::collections::HashMap::new();
            for (key_id, code, tenant_id, n) in rows {
                sums.entry((key_id, code)).or_insert((tenant_id, 0)).1 += n;
            }
            let cells: Vec<usage_rollup::ActiveModel> = sums
                .into_iter()
                .map(|((key_id, code), (tenant_id, count))| usage_rollup::ActiveModel {
                    bucket_start: Set(at),
                    granularity: Set(coarse.into()),
                    key_id: Set(key_id),
                    code: Set(code),
                    tenant_id: Set(tenant_id),
                    count: Set(count),
                })
                .collect();
            for chunk in cells.chunks(500) {
                usage_rollup::Entity::insert_many(chunk.to_vec())
                    .on_conflict(same_cell().update_column(usage_rollup::Column::Count).to_owned())
                    .exec(db)
                    .await?;
            }
            rolled += 1;
            at += step;
            mark(db, coarse, at).await?;
        }
    }
    // Past its retention, a bucket goes, but only once the next size holds it: a backlog not
    // rolled up yet is kept until it is.
    for (g, coarser, days) in [
        ("minute", Some("hour"), retention.minute_retention_days),
        ("hour", Some("day"), retention.hour_retention_days),
        ("day", None, retention.day_retention_days),
    ] {
        let mut cutoff = now - chrono::TimeDelta::days(i64::from(days));
        if let Some(c) = coarser {
            match rolled_until(db, c).await? {
                Some(until) => cutoff = cutoff.min(until),
                None => continue,
            }
        }
        usage_rollup::Entity::delete_many()
            .filter(usage_rollup::Column::Granularity.eq(g))
            .filter(usage_rollup::Column::BucketStart.lt(cutoff))
            .exec(db)
            .await?;
    }
    Ok(rolled)
}

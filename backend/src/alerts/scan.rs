//! The anomaly detector: a periodic job that reads each closed minute of verification counts once,
//! checks every key (and every API's `NOT_FOUND` traffic) that had traffic in it against its
//! baseline and its tenant's thresholds, folds the minute into the baselines, and raises alerts.
//!
//! A minute is read once it closed and every node's counts have reached the database (two flush
//! intervals and five seconds later). Each minute is one transaction that first moves the mark
//! from that minute to the next: two nodes cannot read the same minute, and a minute whose
//! transaction fails is read again on the next run.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use crate::domain::TenantId;
use crate::domain::anomaly::{self, Baseline, Finding, Minute, Thresholds};
use crate::store::StoreError;
use crate::store::entities::{key, key_baseline, key_client, rotation, tenant, usage_mark, usage_rollup};

/// The detector's place in `usage_marks`: the first minute not read yet.
pub const MARK: &str = "anomaly";

/// Minutes read per run at most (a detector that was down catches up over a few runs).
const PER_RUN: i64 = 120;

/// How far back a detector with no mark yet starts.
const FIRST_LOOKBACK: i64 = 120;

fn minute_start(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(m * 60, 0).unwrap_or_default()
}

/// Reads every closed minute not read yet, up to [`PER_RUN`] of them. Returns how many were read.
///
/// # Errors
/// Database errors.
pub async fn run(db: &DatabaseConnection, now: DateTime<Utc>, flush_interval: TimeDelta) -> Result<i64, StoreError> {
    let settled = now - flush_interval * 2 - TimeDelta::seconds(5);
    // Minutes before this one are closed and settled.
    let closed = settled.timestamp().div_euclid(60);
    let mark = usage_mark::Entity::find_by_id(MARK).one(db).await?;
    let start = match &mark {
        Some(m) => m.rolled_until.timestamp().div_euclid(60),
        None => first_minute(db, closed).await?,
    };
    let mut read = 0;
    for m in start..closed.min(start + PER_RUN) {
        if minute(db, m, mark.is_none() && m == start).await? {
            read += 1;
        }
    }
    Ok(read)
}

/// Where a detector with no mark starts: the oldest counted minute of the last two hours.
async fn first_minute(db: &DatabaseConnection, closed: i64) -> Result<i64, StoreError> {
    let oldest: Option<DateTime<Utc>> = usage_rollup::Entity::find()
        .select_only()
        .column(usage_rollup::Column::BucketStart)
        .filter(usage_rollup::Column::Granularity.eq("minute"))
        .filter(usage_rollup::Column::BucketStart.gte(minute_start(closed - FIRST_LOOKBACK)))
        .order_by_asc(usage_rollup::Column::BucketStart)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(oldest.map_or(closed, |t| t.timestamp().div_euclid(60)))
}

/// Sets the mark (a first run, or a test replaying history).
///
/// # Errors
/// Database errors.
pub async fn set_mark(db: &impl ConnectionTrait, minute: i64) -> Result<(), StoreError> {
    crate::store::usage::mark(db, MARK, minute_start(minute)).await
}

/// Moves the mark from `m` to `m + 1`, or says another node already did.
async fn claim(txn: &DatabaseTransaction, m: i64, first: bool) -> Result<bool, StoreError> {
    let next = minute_start(m + 1);
    let moved = if first {
        let row = usage_mark::ActiveModel { granularity: Set(MARK.to_owned()), rolled_until: Set(next) };
        usage_mark::Entity::insert(row)
            .on_conflict(OnConflict::column(usage_mark::Column::Granularity).do_nothing().to_owned())
            .exec_without_returning(txn)
            .await?
    } else {
        usage_mark::Entity::update_many()
            .col_expr(usage_mark::Column::RolledUntil, Expr::value(next))
            .filter(usage_mark::Column::Granularity.eq(MARK))
            .filter(usage_mark::Column::RolledUntil.eq(minute_start(m)))
            .exec(txn)
            .await?
            .rows_affected
    };
    Ok(moved == 1)
}

/// Reads minute `m`. Returns false when another node read it.
async fn minute(db: &DatabaseConnection, m: i64, first: bool) -> Result<bool, StoreError> {
    let txn = crate::store::begin_write(db).await?;
    if !claim(&txn, m, first).await? {
        return Ok(false);
    }
    let at = minute_start(m);
    let rows: Vec<(String, String, String, i64)> = usage_rollup::Entity::find()
        .select_only()
        .columns([usage_rollup::Column::KeyId, usage_rollup::Column::TenantId, usage_rollup::Column::Code])
        .column(usage_rollup::Column::Count)
        .filter(usage_rollup::Column::Granularity.eq("minute"))
        .filter(usage_rollup::Column::BucketStart.eq(at))
        .into_tuple()
        .all(&txn)
        .await?;
    let mut minutes: HashMap<String, (String, Minute)> = HashMap::new();
    for (subject, tenant_id, code, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        let e = minutes.entry(subject).or_insert_with(|| (tenant_id, Minute { at: m, ..Minute::default() }));
        e.1.total += n;
        if code != "VALID" {
            e.1.failures += n;
        }
        match code.as_str() {
            "REVOKED" => e.1.revoked += n,
            "EXPIRED" => e.1.expired += n,
            "MALFORMED" => e.1.malformed += n,
            _ => {}
        }
    }
    let mut thresholds = TenantThresholds::default();
    let baselines = baselines_of(&txn, minutes.keys().cloned().collect()).await?;
    let mut findings: Vec<(String, String, Finding)> = Vec::new();
    let mut folded = Vec::with_capacity(minutes.len());
    for (subject, (tenant_id, mm)) in &minutes {
        let t = thresholds.of(&txn, tenant_id).await?;
        let before = baselines.get(subject);
        // An API's own cells are its unknown keys (`NOT_FOUND`); a key's are its verifications.
        let found = if subject.starts_with("api_") {
            let rotated = rotation_started(&txn, tenant_id, subject, m, t.after_rotation_minutes).await?;
            anomaly::not_found_burst(mm, before, rotated.as_ref().map(|(at, id)| (*at, id.as_str())), &t)
                .into_iter()
                .collect()
        } else {
            anomaly::key_findings(mm, before, &t)
        };
        findings.extend(found.into_iter().map(|f| (tenant_id.clone(), subject.clone(), f)));
        let after = before.map_or_else(|| Baseline::first(mm), |b| b.fold(mm, t.alpha()));
        folded.push(key_baseline::ActiveModel {
            subject_id: Set(subject.clone()),
            tenant_id: Set(tenant_id.clone()),
            rate: Set(after.rate),
            failure_share: Set(after.failure_share),
            minutes: Set(after.minutes),
            last_minute: Set(after.last),
        });
    }
    for chunk in folded.chunks(500) {
        key_baseline::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(key_baseline::Column::SubjectId)
                    .update_columns([
                        key_baseline::Column::Rate,
                        key_baseline::Column::FailureShare,
                        key_baseline::Column::Minutes,
                        key_baseline::Column::LastMinute,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    findings.extend(new_addresses(&txn, m, &mut thresholds).await?);
    let now = Utc::now();
    for (tenant_id, subject, f) in findings {
        tracing::info!(tenant_id, subject, kind = f.kind.as_str(), "anomaly: {}", f.summary);
        crate::alerts::raise(&txn, &TenantId::from_trusted(tenant_id), &subject, &f, now).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Tenants' thresholds, read once per minute read.
#[derive(Default)]
struct TenantThresholds(HashMap<String, Thresholds>);

impl TenantThresholds {
    async fn of(&mut self, db: &impl ConnectionTrait, tenant_id: &str) -> Result<Thresholds, StoreError> {
        if let Some(t) = self.0.get(tenant_id) {
            return Ok(*t);
        }
        let t = tenant::Entity::find_by_id(tenant_id)
            .one(db)
            .await?
            .map(|t| Thresholds::from_settings(&t.settings))
            .unwrap_or_default();
        self.0.insert(tenant_id.to_owned(), t);
        Ok(t)
    }
}

async fn baselines_of(
    db: &impl ConnectionTrait,
    subjects: Vec<String>,
) -> Result<HashMap<String, Baseline>, StoreError> {
    let mut out = HashMap::with_capacity(subjects.len());
    for chunk in subjects.chunks(500) {
        for b in key_baseline::Entity::find()
            .filter(key_baseline::Column::SubjectId.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
        {
            out.insert(
                b.subject_id,
                Baseline { rate: b.rate, failure_share: b.failure_share, minutes: b.minutes, last: b.last_minute },
            );
        }
    }
    Ok(out)
}

/// The latest rotation on the API that started within `window` minutes before minute `m` ends.
async fn rotation_started(
    db: &impl ConnectionTrait,
    tenant_id: &str,
    api_id: &str,
    m: i64,
    window: u32,
) -> Result<Option<(i64, String)>, StoreError> {
    let recent = rotation::Entity::find()
        .filter(rotation::Column::TenantId.eq(tenant_id))
        .filter(rotation::Column::StartedAt.gte(minute_start(m - i64::from(window))))
        .filter(rotation::Column::StartedAt.lt(minute_start(m + 1)))
        .order_by_desc(rotation::Column::StartedAt)
        .limit(200)
        .all(db)
        .await?;
    if recent.is_empty() {
        return Ok(None);
    }
    let on_api: Vec<String> = key::Entity::find()
        .select_only()
        .column(key::Column::Id)
        .filter(key::Column::Id.is_in(recent.iter().map(|r| r.to_key_id.clone())))
        .filter(key::Column::ApiId.eq(api_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(recent
        .into_iter()
        .find(|r| on_api.contains(&r.to_key_id))
        .map(|r| (r.started_at.timestamp().div_euclid(60), r.id)))
}

/// Superseded versions used in minute `m` from an address they never had before.
async fn new_addresses(
    txn: &DatabaseTransaction,
    m: i64,
    thresholds: &mut TenantThresholds,
) -> Result<Vec<(String, String, Finding)>, StoreError> {
    let fresh = key_client::Entity::find()
        .filter(key_client::Column::FirstSeenAt.gte(minute_start(m)))
        .filter(key_client::Column::FirstSeenAt.lt(minute_start(m + 1)))
        .limit(10_000)
        .all(txn)
        .await?;
    if fresh.is_empty() {
        return Ok(Vec::new());
    }
    let superseded: Vec<String> = key::Entity::find()
        .select_only()
        .column(key::Column::Id)
        .filter(key::Column::Id.is_in(fresh.iter().map(|c| c.key_id.clone())))
        .filter(key::Column::SupersededAt.is_not_null())
        .into_tuple()
        .all(txn)
        .await?;
    let mut out = Vec::new();
    for c in fresh.iter().filter(|c| superseded.contains(&c.key_id)) {
        let t = thresholds.of(txn, &c.tenant_id).await?;
        let known = key_client::Entity::find()
            .filter(key_client::Column::KeyId.eq(c.key_id.as_str()))
            .filter(key_client::Column::FirstSeenAt.lt(minute_start(m)))
            .count(txn)
            .await?;
        let previous = previous_use(txn, &c.key_id, m).await?;
        if let Some(f) = anomaly::old_version_new_ip(m, &c.ip, previous, known, &t) {
            out.push((c.tenant_id.clone(), c.key_id.clone(), f));
        }
    }
    Ok(out)
}

/// The last minute before `m` in which the key was used successfully (from minute counts, or
/// the end of the last hour with use once the minutes are past their retention).
async fn previous_use(db: &impl ConnectionTrait, key_id: &str, m: i64) -> Result<Option<i64>, StoreError> {
    for (granularity, offset) in [("minute", 0), ("hour", 59)] {
        let last: Option<DateTime<Utc>> = usage_rollup::Entity::find()
            .select_only()
            .column(usage_rollup::Column::BucketStart)
            .filter(usage_rollup::Column::Granularity.eq(granularity))
            .filter(usage_rollup::Column::KeyId.eq(key_id))
            .filter(usage_rollup::Column::Code.eq("VALID"))
            .filter(usage_rollup::Column::BucketStart.lt(minute_start(m - offset)))
            .order_by_desc(usage_rollup::Column::BucketStart)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        if let Some(t) = last {
            return Ok(Some(t.timestamp().div_euclid(60) + offset));
        }
    }
    Ok(None)
}

/// Removes what the detector no longer needs: baselines and client addresses of keys unused for
/// `days` days.
///
/// # Errors
/// Database errors.
pub async fn prune(db: &impl ConnectionTrait, now: DateTime<Utc>, days: i64) -> Result<(), StoreError> {
    let cutoff = now - TimeDelta::days(days);
    key_client::Entity::delete_many().filter(key_client::Column::LastSeenAt.lt(cutoff)).exec(db).await?;
    key_baseline::Entity::delete_many()
        .filter(key_baseline::Column::LastMinute.lt(cutoff.timestamp().div_euclid(60)))
        .exec(db)
        .await?;
    Ok(())
}

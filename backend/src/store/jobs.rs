//! The job table: enqueue, claim with a lease, heartbeat, finish. On PostgreSQL the claim uses
//! `FOR UPDATE SKIP LOCKED`, so nodes never claim the same job; on SQLite (one node) the claim
//! runs in a write transaction.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, Set,
    Statement,
};
use serde_json::{Value, json};

use super::entities::job;
use super::{StoreError, begin_write};
use crate::domain::JobId;

/// The kinds of job, as stored.
pub mod kind {
    /// Periodic: finalize rotations past their deadline and retire drained ones.
    pub const ROTATION_SWEEP: &str = "rotation.sweep";
    /// Periodic: advance notices and due rotations of every rotation policy.
    pub const POLICY_SCAN: &str = "policy.scan";
    /// Periodic: read closed minutes of verification counts for anomalies.
    pub const ANOMALY_SCAN: &str = "anomaly.scan";
    /// A bulk rotation: payload is a `rotation::bulk::BulkRequest`.
    pub const ROTATION_BULK: &str = "rotation.bulk";
    /// Diagnostic: sleeps `payload.ms` milliseconds, then completes (for checking the worker).
    pub const DIAGNOSTIC_SLEEP: &str = "diagnostic.sleep";
}

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub tenant_id: Option<String>,
    pub payload: Value,
    pub run_at: DateTime<Utc>,
    pub max_attempts: i32,
    /// At most one job ever exists with this key (periodic slots, one-off work).
    pub dedupe_key: Option<String>,
}

impl NewJob {
    #[must_use]
    pub fn now(kind: &str, payload: Value) -> Self {
        Self { kind: kind.to_owned(), tenant_id: None, payload, run_at: Utc::now(), max_attempts: 8, dedupe_key: None }
    }
}

/// Enqueues a job; with a dedupe key already used, nothing happens and `None` is returned.
///
/// # Errors
/// Database errors.
pub async fn enqueue(db: &impl ConnectionTrait, new: NewJob) -> Result<Option<String>, StoreError> {
    let now = Utc::now();
    let id = JobId::generate().into_string();
    let row = job::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(new.tenant_id),
        kind: Set(new.kind),
        payload: Set(new.payload),
        state: Set(QUEUED.into()),
        run_at: Set(new.run_at),
        attempts: Set(0),
        max_attempts: Set(new.max_attempts),
        locked_by: Set(None),
        locked_until: Set(None),
        last_error: Set(None),
        dedupe_key: Set(new.dedupe_key),
        progress: Set(json!({})),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let inserted = job::Entity::insert(row)
        .on_conflict(OnConflict::column(job::Column::DedupeKey).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted > 0).then_some(id))
}

/// Claims up to `limit` due jobs (and jobs whose lease ran out) for `node`.
///
/// # Errors
/// Database errors.
pub async fn claim(
    db: &DatabaseConnection,
    node: &str,
    lease: TimeDelta,
    limit: u64,
) -> Result<Vec<job::Model>, StoreError> {
    let now = Utc::now();
    let until = now + lease;
    let backend = db.get_database_backend();
    let lock = if backend == DatabaseBackend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= $3) \
           OR (state = 'running' AND locked_until < $3) ORDER BY run_at LIMIT $4{lock}) \
         RETURNING *"
    );
    let limit = i64::try_from(limit).unwrap_or(1);
    let stmt = Statement::from_sql_and_values(backend, sql, [node.into(), until.into(), now.into(), limit.into()]);
    let txn = begin_write(db).await?;
    let rows = job::Entity::find().from_raw_sql(stmt).all(&txn).await?;
    txn.commit().await?;
    Ok(rows)
}

/// Gives back the jobs `node` holds (it is stopping): queued again to run at once, the
/// interrupted attempt not counted. Returns how many.
///
/// # Errors
/// Database errors.
pub async fn release(db: &impl ConnectionTrait, node: &str) -> Result<u64, StoreError> {
    let now = Utc::now();
    let done = job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(QUEUED))
        .col_expr(job::Column::RunAt, Expr::value(now))
        .col_expr(job::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(job::Column::Attempts, Expr::cust("CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::LockedBy.eq(node))
        .filter(job::Column::State.eq(RUNNING))
        .exec(db)
        .await?;
    Ok(done.rows_affected)
}

/// Extends the lease of a running job; `false` when the job is no longer ours.
///
/// # Errors
/// Database errors.
pub async fn heartbeat(db: &impl ConnectionTrait, id: &str, node: &str, lease: TimeDelta) -> Result<bool, StoreError> {
    let res = job::Entity::update_many()
        .col_expr(job::Column::LockedUntil, Expr::value(Utc::now() + lease))
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::LockedBy.eq(node))
        .filter(job::Column::State.eq(RUNNING))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Records progress (`{"done":…,"total":…}` or anything the job reports).
///
/// # Errors
/// Database errors.
pub async fn set_progress(db: &impl ConnectionTrait, id: &str, progress: Value) -> Result<(), StoreError> {
    job::Entity::update_many()
        .col_expr(job::Column::Progress, Expr::value(progress))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks a job done (only if this node still holds it).
///
/// # Errors
/// Database errors.
pub async fn finish(db: &impl ConnectionTrait, id: &str, node: &str) -> Result<(), StoreError> {
    job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(DONE))
        .col_expr(job::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::LockedBy.eq(node))
        .exec(db)
        .await?;
    Ok(())
}

/// Records a failure: queued again at `retry_at`, or failed for good after `max_attempts`.
///
/// # Errors
/// Database errors.
pub async fn fail(
    db: &impl ConnectionTrait,
    j: &job::Model,
    node: &str,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let state = if j.attempts >= j.max_attempts { FAILED } else { QUEUED };
    job::Entity::update_many()
        .col_expr(job::Column::State, Expr::value(state))
        .col_expr(job::Column::RunAt, Expr::value(retry_at))
        .col_expr(job::Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(job::Column::LastError, Expr::value(error))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(j.id.as_str()))
        .filter(job::Column::LockedBy.eq(node))
        .exec(db)
        .await?;
    Ok(())
}

/// Jobs waiting or running, for metrics.
///
/// # Errors
/// Database errors.
pub async fn pending(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    Ok(job::Entity::find().filter(job::Column::State.is_in([QUEUED, RUNNING])).count(db).await?)
}

/// One job.
///
/// # Errors
/// `NotFound`.
pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<job::Model, StoreError> {
    job::Entity::find_by_id(id).one(db).await?.ok_or(StoreError::NotFound)
}

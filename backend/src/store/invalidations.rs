//! The invalidation log (see the migration `invalidations`): appended by the commit path in the
//! change's transaction, read by every node's tail.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::domain::KeyHash;

/// One entry: the hashes one change made stale, those of the keys it created, and when (the
/// database's clock, Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    pub seq: i64,
    pub hashes: Vec<KeyHash>,
    pub created: Vec<KeyHash>,
    pub created_ms: i64,
}

/// The database's clock in Unix milliseconds, as an SQL expression.
fn now_ms(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        _ => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// The database's clock as the current statement began, in Unix milliseconds: for a read, a
/// time no later than the snapshot it sees.
#[must_use]
pub fn statement_ms(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "(EXTRACT(EPOCH FROM statement_timestamp()) * 1000)::BIGINT",
        _ => now_ms(backend),
    }
}

/// The database's clock now, in Unix milliseconds.
///
/// # Errors
/// Database errors.
pub async fn clock_ms(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!("SELECT {} AS now_ms", now_ms(backend));
    let row = db
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| DbErr::Custom("the clock was not read".into()))?;
    row.try_get("", "now_ms")
}

/// Appends the hashes of one change. Call it last in the change's transaction, so the row's
/// time is as close to the commit as can be.
///
/// # Errors
/// Database errors (the change then fails as a whole).
pub async fn append(txn: &impl ConnectionTrait, hashes: &[KeyHash], created: &[KeyHash]) -> Result<(), DbErr> {
    if hashes.is_empty() && created.is_empty() {
        return Ok(());
    }
    let backend = txn.get_database_backend();
    let text = |h: &[KeyHash]| h.iter().map(KeyHash::to_hex).collect::<Vec<_>>().join(" ");
    let sql = match backend {
        DbBackend::Postgres => {
            format!("INSERT INTO invalidations (hashes, created, created_ms) VALUES ($1, $2, {})", now_ms(backend))
        }
        _ => format!("INSERT INTO invalidations (hashes, created, created_ms) VALUES (?, ?, {})", now_ms(backend)),
    };
    let values = [text(hashes).into(), text(created).into()];
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    Ok(())
}

fn rows(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<Invalidation>, DbErr> {
    rows.into_iter()
        .map(|r| {
            let list = |col: &str| -> Result<Vec<KeyHash>, DbErr> {
                let text: String = r.try_get("", col)?;
                Ok(text.split(' ').filter_map(KeyHash::from_hex).collect())
            };
            Ok(Invalidation {
                seq: r.try_get("", "seq")?,
                hashes: list("hashes")?,
                created: list("created")?,
                created_ms: r.try_get("", "created_ms")?,
            })
        })
        .collect()
}

/// Entries after `seq`, and those of `missing` (numbers skipped over earlier: a transaction that
/// took its number before another and commits after it), in order, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn after(
    db: &impl ConnectionTrait,
    seq: i64,
    missing: &[i64],
    limit: u64,
) -> Result<Vec<Invalidation>, DbErr> {
    let backend = db.get_database_backend();
    let listed = missing.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let extra = if missing.is_empty() { String::new() } else { format!(" OR seq IN ({listed})") };
    let sql = format!(
        "SELECT seq, hashes, created, created_ms FROM invalidations WHERE seq > {seq}{extra} ORDER BY seq LIMIT {limit}"
    );
    rows(db.query_all_raw(Statement::from_string(backend, sql)).await?)
}

/// Entries written at or after `since_ms` (the database's clock), in order, at most `limit`
/// after `from_seq`.
///
/// # Errors
/// Database errors.
pub async fn since(
    db: &impl ConnectionTrait,
    since_ms: i64,
    from_seq: i64,
    limit: u64,
) -> Result<Vec<Invalidation>, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "SELECT seq, hashes, created, created_ms FROM invalidations WHERE created_ms >= {since_ms} AND seq > {from_seq} \
         ORDER BY seq LIMIT {limit}"
    );
    rows(db.query_all_raw(Statement::from_string(backend, sql)).await?)
}

/// The highest number written so far (0 for none).
///
/// # Errors
/// Database errors.
pub async fn last_seq(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, "SELECT COALESCE(MAX(seq), 0) AS seq FROM invalidations"))
        .await?;
    row.map_or(Ok(0), |r| r.try_get("", "seq"))
}

/// Removes entries older than `before_ms`; returns how many.
///
/// # Errors
/// Database errors.
pub async fn prune(db: &impl ConnectionTrait, before_ms: i64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!("DELETE FROM invalidations WHERE created_ms < {before_ms}");
    Ok(db.execute_raw(Statement::from_string(backend, sql)).await?.rows_affected())
}

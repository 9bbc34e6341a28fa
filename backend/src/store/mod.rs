//! The database: connection, migrations, and the queries over the entities. Every query on a
//! tenant-owned table filters on `tenant_id`.

pub mod accounts;
pub mod alerts;
pub mod apis;
pub mod billed_usage;
pub mod billing;
pub mod consumers;
pub mod credits;
pub mod entities;
pub mod idempotency;
pub mod imports;
pub mod invalidations;
pub mod jobs;
pub mod keys;
pub mod notify;
pub mod page;
pub mod playbooks;
pub mod policies;
pub mod portal;
pub mod recovery_codes;
pub mod reveals;
pub mod rotations;
pub mod signing_keys;
pub mod signup_links;
pub mod stripe_connections;
pub mod tenants;
pub mod usage;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};

pub use page::{Cursor, Page};

/// A statement written with `?` placeholders, numbered (`$1`, `$2`, …) for PostgreSQL.
pub(crate) fn sql(backend: sea_orm::DbBackend, text: &str) -> String {
    if backend != sea_orm::DbBackend::Postgres {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for ch in text.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Errors of the store that callers act on; everything else is `Db`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl StoreError {
    /// Unique-constraint violations become conflicts with the given message.
    #[must_use]
    pub fn unique_as_conflict(self, message: &str) -> Self {
        match &self {
            Self::Db(e) if is_unique_violation(e) => Self::Conflict(message.to_owned()),
            _ => self,
        }
    }
}

/// Did this error come from a unique constraint?
#[must_use]
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Connects and, for SQLite, creates the data directory and switches to WAL.
///
/// # Errors
/// When the database cannot be reached or opened.
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let url = url.expose_secret();
    let sqlite = url.starts_with("sqlite:");
    if sqlite && let Some(dir) = sqlite_dir(url) {
        std::fs::create_dir_all(&dir)
            .map_err(|e| DbErr::Custom(format!("cannot create data directory {}: {e}", dir.display())))?;
        if let Some(file) = sqlite_file(url) {
            create_private(&file)
                .map_err(|e| DbErr::Custom(format!("cannot create the database file {}: {e}", file.display())))?;
        }
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(if sqlite { max_connections.min(8) } else { max_connections })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    if sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA busy_timeout=10000").await?;
        db.execute_unprepared("PRAGMA foreign_keys=ON").await?;
    }
    Ok(db)
}

/// Creates the database file readable by its owner only (SQLite gives its WAL and shared-memory
/// files the same permissions); an existing file is left as it is.
fn create_private(file: &std::path::Path) -> std::io::Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path).parent().map(std::path::Path::to_path_buf)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so it waits for other writers instead of failing when it upgrades from
/// reading to writing; elsewhere it is an ordinary transaction.
///
/// # Errors
/// Database errors.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Applies every pending migration.
///
/// # Errors
/// When a migration fails.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Nodes never migrate at the same time: each takes this transaction-scoped advisory lock
        // first, so the others wait, then find nothing left to do. A failed migration rolls back
        // whole (PostgreSQL's DDL is transactional).
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
        Migrator::up(&txn, None).await?;
        return txn.commit().await;
    }
    Migrator::up(db, None).await
}

/// How many migrations the database lacks.
///
/// # Errors
/// When the migration table cannot be read.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbErr> {
    Ok(Migrator::get_pending_migrations(db).await?.len())
}

/// The advisory lock migrations hold on PostgreSQL ("keyroll" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x6b_6579_726f_6c6c;

/// Inserts many rows of one table in as few statements as the backend allows. On PostgreSQL the
/// rows travel as one JSON document per chunk, expanded into the table's own row type by
/// `json_populate_recordset` — one bound parameter instead of one per value, which is what
/// bulk rotation spends its time on otherwise. The document is read as `json`, walked once as
/// text: casting it to `jsonb` first built a binary copy of every row, a fifth of the database's
/// time in a bulk rotation. Elsewhere they are multi-row `INSERT`s.
///
/// The model's serialized field names must be the column names.
///
/// # Errors
/// Database errors.
pub async fn insert_rows<E>(db: &impl ConnectionTrait, rows: &[E::Model]) -> Result<(), DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: serde::Serialize + Clone + sea_orm::IntoActiveModel<E::ActiveModel>,
{
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Iterable, Statement};
    if rows.is_empty() {
        return Ok(());
    }
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let table = E::default().table_name().to_owned();
        let sql = format!(r#"INSERT INTO "{table}" SELECT * FROM json_populate_recordset(NULL::"{table}", $1::json)"#);
        for chunk in rows.chunks(5_000) {
            let doc = serde_json::to_string(chunk).map_err(|e| DbErr::Custom(format!("cannot encode rows: {e}")))?;
            db.execute_raw(Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, &sql, [doc.into()])).await?;
        }
        return Ok(());
    }
    // SQLite allows 32 766 bound values per statement.
    let per = (30_000 / E::Column::iter().count().max(1)).max(1);
    for chunk in rows.chunks(per) {
        E::insert_many(chunk.iter().map(|m| m.clone().into_active_model().reset_all()))
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

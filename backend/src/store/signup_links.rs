//! Single-use sign-up links of an install whose sign-up policy is `invite` (see the migration
//! `signup_links`): digests only.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

use super::sql;

/// Stores a sign-up link's digest, valid until `expires_at`.
///
/// # Errors
/// Database errors.
pub async fn add(db: &impl ConnectionTrait, digest: &str, expires_at: DateTime<Utc>) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let values: [Value; 3] = [digest.into(), Utc::now().into(), expires_at.into()];
    db.execute_raw(Statement::from_sql_and_values(
        b,
        sql(b, "INSERT INTO signup_links (id, created_at, expires_at) VALUES (?, ?, ?)"),
        values,
    ))
    .await?;
    Ok(())
}

/// Is this sign-up link unused and unexpired?
///
/// # Errors
/// Database errors.
pub async fn usable(db: &impl ConnectionTrait, digest: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let values: [Value; 2] = [digest.into(), Utc::now().into()];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            b,
            sql(b, "SELECT id FROM signup_links WHERE id = ? AND used_at IS NULL AND expires_at > ?"),
            values,
        ))
        .await?;
    Ok(row.is_some())
}

/// Uses a sign-up link: true for the one caller that found it unused and unexpired.
///
/// # Errors
/// Database errors.
pub async fn take(db: &impl ConnectionTrait, digest: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let now = Utc::now();
    let values: [Value; 3] = [now.into(), digest.into(), now.into()];
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            b,
            sql(b, "UPDATE signup_links SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?"),
            values,
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

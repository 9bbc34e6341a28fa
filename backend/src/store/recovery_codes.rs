//! Two-factor recovery codes (see the migration `recovery_codes`): digests only, each used once.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

use super::sql;

/// Replaces a person's codes with new ones (digests); an empty list removes them all.
///
/// # Errors
/// Database errors.
pub async fn replace(db: &impl ConnectionTrait, user_id: &str, digests: &[String]) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        b,
        sql(b, "DELETE FROM recovery_codes WHERE user_id = ?"),
        [Value::from(user_id)],
    ))
    .await?;
    for d in digests {
        let values: [Value; 3] = [d.as_str().into(), user_id.into(), Utc::now().into()];
        db.execute_raw(Statement::from_sql_and_values(
            b,
            sql(b, "INSERT INTO recovery_codes (id, user_id, created_at) VALUES (?, ?, ?)"),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Uses a code: true for the one caller that found it unused.
///
/// # Errors
/// Database errors.
pub async fn use_code(db: &impl ConnectionTrait, user_id: &str, digest: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let values: [Value; 3] = [Utc::now().into(), digest.into(), user_id.into()];
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            b,
            sql(b, "UPDATE recovery_codes SET used_at = ? WHERE id = ? AND user_id = ? AND used_at IS NULL"),
            values,
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// How many unused codes a person has.
///
/// # Errors
/// Database errors.
pub async fn unused(db: &impl ConnectionTrait, user_id: &str) -> Result<i64, DbErr> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            b,
            sql(b, "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = ? AND used_at IS NULL"),
            [Value::from(user_id)],
        ))
        .await?;
    Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

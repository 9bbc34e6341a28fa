//! Secrets held for their one view (see the migration `reveals`): sealed page content, taken
//! once.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

use super::sql;

/// Holds sealed content for `owner` until `expires_at`; drops what has expired meanwhile.
///
/// # Errors
/// Database errors.
pub async fn hold(
    db: &impl ConnectionTrait,
    id: &str,
    tenant: &str,
    owner: &str,
    sealed: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        b,
        sql(b, "DELETE FROM reveals WHERE expires_at < ?"),
        [Value::from(Utc::now())],
    ))
    .await?;
    let values: [Value; 5] = [id.into(), tenant.into(), owner.into(), sealed.into(), expires_at.into()];
    db.execute_raw(Statement::from_sql_and_values(
        b,
        sql(b, "INSERT INTO reveals (id, tenant_id, owner, sealed, expires_at) VALUES (?, ?, ?, ?, ?)"),
        values,
    ))
    .await?;
    Ok(())
}

/// Takes (reads and deletes, in one statement) what is held under `id` for this owner, unless
/// it has expired; `None` once taken.
///
/// # Errors
/// Database errors.
pub async fn take(db: &impl ConnectionTrait, id: &str, tenant: &str, owner: &str) -> Result<Option<String>, DbErr> {
    let b = db.get_database_backend();
    let values: [Value; 4] = [id.into(), tenant.into(), owner.into(), Utc::now().into()];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            b,
            sql(
                b,
                "DELETE FROM reveals WHERE id = ? AND tenant_id = ? AND owner = ? AND expires_at >= ? RETURNING sealed",
            ),
            values,
        ))
        .await?;
    row.map(|r| r.try_get::<String>("", "sealed")).transpose()
}

//! Things used once: secrets held for their one view (see the migration `reveals`), and the
//! sign-up links of an install that signs up by invitation (`signup_links`).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

pub(crate) fn sql(backend: DbBackend, text: &str) -> String {
    // Written with `?`; PostgreSQL numbers its parameters.
    if backend != DbBackend::Postgres {
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

/// Stores a sign-up link's digest, valid until `expires_at`.
///
/// # Errors
/// Database errors.
pub async fn add_signup_link(db: &impl ConnectionTrait, digest: &str, expires_at: DateTime<Utc>) -> Result<(), DbErr> {
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
pub async fn signup_link_usable(db: &impl ConnectionTrait, digest: &str) -> Result<bool, DbErr> {
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
pub async fn use_signup_link(db: &impl ConnectionTrait, digest: &str) -> Result<bool, DbErr> {
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

//! Ways into the consumer portal and its sessions (see the migration `tokens_portal`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Statement, Value,
};

use super::entities::{portal_grant, portal_session};
use super::{StoreError, sql};

/// Records a single-use grant; drops expired grants and sessions meanwhile.
///
/// # Errors
/// Database errors.
pub async fn add_grant(db: &impl ConnectionTrait, grant: portal_grant::Model) -> Result<(), StoreError> {
    let b = db.get_database_backend();
    let now = Utc::now();
    for table in ["portal_grants", "portal_sessions"] {
        db.execute_raw(Statement::from_sql_and_values(
            b,
            sql(b, &format!("DELETE FROM {table} WHERE expires_at < ?")),
            [Value::from(now)],
        ))
        .await?;
    }
    grant.into_active_model().reset_all().insert(db).await?;
    Ok(())
}

/// Uses a grant: `Some` the first time, while it is unexpired; `None` ever after. One
/// statement, so two browsers racing with the same link cannot both get in.
///
/// # Errors
/// Database errors.
pub async fn use_grant(
    db: &impl ConnectionTrait,
    jti: &str,
    tenant: &str,
    purpose: &str,
) -> Result<Option<portal_grant::Model>, StoreError> {
    let b = db.get_database_backend();
    let now = Utc::now();
    let values: [Value; 5] = [now.into(), jti.into(), tenant.into(), purpose.into(), now.into()];
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            b,
            sql(
                b,
                "UPDATE portal_grants SET used_at = ? WHERE id = ? AND tenant_id = ? AND purpose = ? \
                 AND used_at IS NULL AND expires_at > ?",
            ),
            values,
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(portal_grant::Entity::find_by_id(jti).one(db).await?)
}

/// Starts a session.
///
/// # Errors
/// Database errors.
pub async fn add_session(db: &impl ConnectionTrait, s: portal_session::Model) -> Result<(), StoreError> {
    s.into_active_model().reset_all().insert(db).await?;
    Ok(())
}

/// The unexpired session with this cookie digest.
///
/// # Errors
/// Database errors.
pub async fn session(
    db: &impl ConnectionTrait,
    digest: &str,
    now: DateTime<Utc>,
) -> Result<Option<portal_session::Model>, StoreError> {
    Ok(portal_session::Entity::find_by_id(digest).filter(portal_session::Column::ExpiresAt.gt(now)).one(db).await?)
}

/// Ends a session.
///
/// # Errors
/// Database errors.
pub async fn end_session(db: &impl ConnectionTrait, digest: &str) -> Result<(), StoreError> {
    portal_session::Entity::delete_by_id(digest).exec(db).await?;
    Ok(())
}

/// Ends every session of a consumer (it was deleted, or its portal access withdrawn).
///
/// # Errors
/// Database errors.
pub async fn end_sessions_of(db: &impl ConnectionTrait, tenant: &str, consumer: &str) -> Result<(), StoreError> {
    portal_session::Entity::delete_many()
        .filter(portal_session::Column::TenantId.eq(tenant))
        .filter(portal_session::Column::ConsumerId.eq(consumer))
        .exec(db)
        .await?;
    Ok(())
}

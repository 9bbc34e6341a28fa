//! `Idempotency-Key` records: claim before running a creating request, store its answer after.

use chrono::{TimeDelta, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};

use super::entities::idempotency_key;
use super::{StoreError, is_unique_violation};
use crate::domain::TenantId;

/// How long an idempotency key is remembered.
pub const RETENTION: TimeDelta = TimeDelta::hours(24);

/// The outcome of claiming a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: run the request, then [`complete`] or [`release`].
    New,
    /// Same key, same request, already answered: replay this.
    Replay { status: u16, body: String },
    /// Same key, another request body.
    Mismatch,
    /// Same key and request, still running elsewhere.
    InProgress,
}

/// Claims `key_hash` for a request with `request_hash`.
///
/// # Errors
/// Database errors.
pub async fn claim(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    key_hash: &str,
    request_hash: &str,
) -> Result<Claim, StoreError> {
    for _ in 0..2 {
        let row = idempotency_key::Model {
            tenant_id: tenant.as_str().to_owned(),
            key_hash: key_hash.to_owned(),
            request_hash: request_hash.to_owned(),
            status: None,
            body: None,
            created_at: Utc::now(),
        };
        match row.into_active_model().reset_all().insert(db).await {
            Ok(_) => return Ok(Claim::New),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(existing) = find(db, tenant, key_hash).await? else { continue };
        if existing.created_at < Utc::now() - RETENTION {
            release(db, tenant, key_hash).await?;
            continue;
        }
        if existing.request_hash != request_hash {
            return Ok(Claim::Mismatch);
        }
        return Ok(match (existing.status, existing.body) {
            (Some(status), Some(body)) => Claim::Replay { status: u16::try_from(status).unwrap_or(500), body },
            _ => Claim::InProgress,
        });
    }
    Ok(Claim::InProgress)
}

async fn find(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    key_hash: &str,
) -> Result<Option<idempotency_key::Model>, StoreError> {
    Ok(idempotency_key::Entity::find()
        .filter(idempotency_key::Column::TenantId.eq(tenant.as_str()))
        .filter(idempotency_key::Column::KeyHash.eq(key_hash))
        .one(db)
        .await?)
}

/// Stores the answer to replay.
///
/// # Errors
/// Database errors.
pub async fn complete(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    key_hash: &str,
    status: u16,
    body: String,
) -> Result<(), StoreError> {
    if let Some(row) = find(db, tenant, key_hash).await? {
        let mut am = row.into_active_model();
        am.status = Set(Some(i32::from(status)));
        am.body = Set(Some(body));
        am.update(db).await?;
    }
    Ok(())
}

/// Forgets a claim (the request failed unexpectedly and may be retried).
///
/// # Errors
/// Database errors.
pub async fn release(db: &impl ConnectionTrait, tenant: &TenantId, key_hash: &str) -> Result<(), StoreError> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::TenantId.eq(tenant.as_str()))
        .filter(idempotency_key::Column::KeyHash.eq(key_hash))
        .exec(db)
        .await?;
    Ok(())
}

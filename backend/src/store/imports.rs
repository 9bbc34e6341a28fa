//! Imports of existing keys: the keys and consumers written in bulk, the hashes already taken,
//! and the record of each import by its id.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect};
use serde_json::Value;

use super::StoreError;
use super::entities::{consumer, key, key_import};
use crate::domain::{ConsumerId, KeyId, TenantId};

/// Rows per statement: well inside SQLite's limit of bound values with every column of a key.
const CHUNK: usize = 500;

/// A key to import: its hash and what is known of it.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub api_id: String,
    pub consumer_id: String,
    /// The SHA-256 of the secret, hex.
    pub hash: String,
    pub start: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Value,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Writes the keys, each the first version of its own lineage; returns their ids in order.
///
/// # Errors
/// Database errors (a unique violation when a hash was taken since it was checked).
pub async fn insert_keys(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    created_by: &str,
    keys: Vec<ImportedKey>,
) -> Result<Vec<String>, StoreError> {
    let now = Utc::now();
    let mut ids = Vec::with_capacity(keys.len());
    let mut rows = Vec::with_capacity(CHUNK);
    let mut rest = keys.into_iter().peekable();
    while rest.peek().is_some() {
        rows.clear();
        for k in rest.by_ref().take(CHUNK) {
            let id = KeyId::generate().into_string();
            ids.push(id.clone());
            rows.push(
                key::Model {
                    lineage_id: id.clone(),
                    id,
                    tenant_id: tenant.as_str().to_owned(),
                    api_id: k.api_id,
                    consumer_id: Some(k.consumer_id),
                    version: 1,
                    is_root: false,
                    hash: k.hash,
                    start: k.start,
                    name: k.name,
                    scopes: Value::from(k.scopes),
                    meta: k.meta,
                    enabled: true,
                    expires_at: k.expires_at,
                    grace_ends_at: None,
                    superseded_at: None,
                    revoked_at: None,
                    revoked_reason: None,
                    last_used_at: None,
                    ratelimit: None,
                    credits: None,
                    ip_allowlist: None,
                    created_by: Some(created_by.to_owned()),
                    created_at: now,
                    updated_at: now,
                }
                .into_active_model(),
            );
        }
        key::Entity::insert_many(rows.drain(..)).exec_without_returning(db).await.map_err(|e| {
            StoreError::from(e).unique_as_conflict("a key with one of these secrets was created meanwhile")
        })?;
    }
    Ok(ids)
}

/// Which of these hashes (hex) are taken, by any tenant: hash → `(tenant, key id)`.
///
/// # Errors
/// Database errors.
pub async fn taken(
    db: &impl ConnectionTrait,
    hashes: &[&str],
) -> Result<HashMap<String, (String, String)>, StoreError> {
    let mut out = HashMap::new();
    for chunk in hashes.chunks(1_000) {
        let rows: Vec<(String, String, String)> = key::Entity::find()
            .select_only()
            .column(key::Column::Hash)
            .column(key::Column::TenantId)
            .column(key::Column::Id)
            .filter(key::Column::Hash.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows.into_iter().map(|(h, t, id)| (h, (t, id))));
    }
    Ok(out)
}

/// The tenant's live consumers with these external ids: external id → consumer id.
///
/// # Errors
/// Database errors.
pub async fn consumers_by_external_id(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    external_ids: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let mut out = HashMap::new();
    for chunk in external_ids.chunks(1_000) {
        let rows: Vec<(String, String)> = consumer::Entity::find()
            .select_only()
            .column(consumer::Column::ExternalId)
            .column(consumer::Column::Id)
            .filter(consumer::Column::TenantId.eq(tenant.as_str()))
            .filter(consumer::Column::DeletedAt.is_null())
            .filter(consumer::Column::ExternalId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Creates consumers named after their external ids; returns external id → consumer id.
///
/// # Errors
/// Database errors (`Conflict` when one was created meanwhile).
pub async fn create_consumers(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    external_ids: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let now = Utc::now();
    let mut out = HashMap::with_capacity(external_ids.len());
    for chunk in external_ids.chunks(CHUNK) {
        let rows: Vec<consumer::ActiveModel> = chunk
            .iter()
            .map(|x| {
                let id = ConsumerId::generate().into_string();
                out.insert((*x).to_owned(), id.clone());
                consumer::Model {
                    id,
                    tenant_id: tenant.as_str().to_owned(),
                    external_id: (*x).to_owned(),
                    name: (*x).to_owned(),
                    email: None,
                    meta: Value::Object(serde_json::Map::new()),
                    stripe_customer_id: None,
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                }
                .into_active_model()
            })
            .collect();
        consumer::Entity::insert_many(rows).exec_without_returning(db).await.map_err(|e| {
            StoreError::from(e).unique_as_conflict("a consumer with one of these external ids was created meanwhile")
        })?;
    }
    Ok(out)
}

/// The import of the tenant with this id, if it ran.
///
/// # Errors
/// Database errors.
pub async fn find(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    import_id: &str,
) -> Result<Option<key_import::Model>, StoreError> {
    Ok(key_import::Entity::find_by_id((tenant.as_str().to_owned(), import_id.to_owned())).one(db).await?)
}

/// Records an import and its report.
///
/// # Errors
/// `Conflict` when an import with this id was recorded meanwhile.
pub async fn record(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    import_id: &str,
    fingerprint: &str,
    report: Value,
    created_by: &str,
) -> Result<(), StoreError> {
    let row = key_import::Model {
        tenant_id: tenant.as_str().to_owned(),
        import_id: import_id.to_owned(),
        fingerprint: fingerprint.to_owned(),
        report,
        created_by: created_by.to_owned(),
        created_at: Utc::now(),
    };
    key_import::Entity::insert(row.into_active_model())
        .exec_without_returning(db)
        .await
        .map_err(|e| StoreError::from(e).unique_as_conflict("an import with this import_id ran meanwhile"))?;
    Ok(())
}

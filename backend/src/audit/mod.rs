//! The audit log. Every mutation appends its entries in the transaction that makes the change,
//! so a change without its entry cannot be committed. Each tenant's entries form one chain:
//! entry n stores the hash of entry n−1, and its own hash covers every column that is shown.
//! Appending locks the tenant's chain head until the transaction ends, which keeps the chain a
//! single sequence when several nodes write at once; appends should therefore be the last
//! writes of a transaction.
//!
//! Entries never hold secrets: only ids, key starts, names and settings.

pub mod chain;
pub mod export;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement};
use serde_json::Value;

use crate::domain::{AuditId, Origin, TenantId};
use crate::store::entities::audit_event;

pub use chain::{ChainReport, verify};

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `resource.verb`, e.g. `key.revoked`.
    pub action: &'static str,
    /// `key`, `api`, `consumer`, `rotation`, `policy`, `member`, …
    pub target_type: &'static str,
    pub target_id: Option<String>,
    /// One sentence a person reads in the log.
    pub summary: String,
    /// Details: `before`/`after` where they matter, reasons, counts. Never secrets.
    pub data: Value,
}

impl Entry {
    #[must_use]
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl Into<String>, summary: String) -> Self {
        Self {
            action,
            target_type,
            target_id: Some(target_id.into()),
            summary,
            data: Value::Object(Default::default()),
        }
    }

    /// Adds details.
    #[must_use]
    pub fn with(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Records the state before and after a change: of two objects, only the fields that differ.
    #[must_use]
    pub fn change(self, mut before: Value, mut after: Value) -> Self {
        if let (Some(b), Some(a)) = (before.as_object_mut(), after.as_object_mut()) {
            let same: Vec<String> = b.iter().filter(|(k, v)| a.get(*k) == Some(*v)).map(|(k, _)| k.clone()).collect();
            for k in &same {
                b.remove(k);
                a.remove(k);
            }
        }
        self.with(serde_json::json!({ "before": before, "after": after }))
    }
}

/// Who acted: `user:usr_…`, `root_key:key_…`, `policy:pol_…`, `consumer:con_…`, `system`.
pub const SYSTEM: &str = "system";

/// Appends entries to the tenant's chain, within the caller's transaction. The request id and
/// the client's address come from the request being served, when there is one.
///
/// # Errors
/// Database errors; the caller's transaction must then be dropped, which undoes the change.
pub async fn record(
    txn: &impl ConnectionTrait,
    tenant: &TenantId,
    actor: &str,
    origin: &Origin,
    entries: Vec<Entry>,
) -> Result<(), DbErr> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(entries.len()).map_err(|_| DbErr::Custom("too many audit entries".into()))?;
    let (last_seq, mut prev) = claim(txn, tenant, n).await?;
    let now = Utc::now().trunc_subsecs(6);
    let mut rows = Vec::with_capacity(entries.len());
    for (i, e) in (0_i64..).zip(entries) {
        let mut row = audit_event::Model {
            id: AuditId::generate().into_string(),
            tenant_id: tenant.as_str().to_owned(),
            seq: last_seq - n + 1 + i,
            occurred_at: now,
            actor: actor.to_owned(),
            action: e.action.to_owned(),
            target_type: e.target_type.to_owned(),
            target_id: e.target_id,
            summary: e.summary,
            request_id: origin.request_id.clone(),
            ip: origin.ip.clone(),
            data: e.data.to_string(),
            prev_hash: prev,
            hash: String::new(),
        };
        row.hash = chain::hash_of(&row);
        prev = row.hash.clone();
        rows.push(row);
    }
    crate::store::insert_rows::<audit_event::Entity>(txn, &rows).await?;
    set_head_hash(txn, tenant, &prev).await
}

/// Appends an entry about a user's own account (password, two-factor sign-in) to the chain of
/// every team the user belongs to, since each team's owners should see it. Heads are locked in
/// a fixed order, so two such appends cannot wait on each other.
///
/// # Errors
/// Database errors.
pub async fn record_for_user(
    txn: &impl ConnectionTrait,
    user_id: &str,
    actor: &str,
    origin: &Origin,
    entry: Entry,
) -> Result<(), DbErr> {
    use crate::store::entities::membership;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let tenants: Vec<String> = membership::Entity::find()
        .select_only()
        .column(membership::Column::TenantId)
        .filter(membership::Column::UserId.eq(user_id))
        .order_by_asc(membership::Column::TenantId)
        .into_tuple()
        .all(txn)
        .await?;
    for t in tenants {
        record(txn, &TenantId::from_trusted(t), actor, origin, vec![entry.clone()]).await?;
    }
    Ok(())
}

/// Reserves `n` sequence numbers: returns the last of them and the hash the first one chains
/// to. The upsert locks the head row until the transaction ends.
async fn claim(txn: &impl ConnectionTrait, tenant: &TenantId, n: i64) -> Result<(i64, String), DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO audit_heads (tenant_id, seq, hash, pruned_seq, anchor_hash) VALUES ($1, $2, $3, 0, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq + EXCLUDED.seq RETURNING seq, hash"
        }
        _ => {
            "INSERT INTO audit_heads (tenant_id, seq, hash, pruned_seq, anchor_hash) VALUES (?, ?, ?, 0, ?) \
             ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq + excluded.seq RETURNING seq, hash"
        }
    };
    let values: Vec<sea_orm::Value> = match backend {
        sea_orm::DbBackend::Postgres => vec![tenant.as_str().into(), n.into(), chain::GENESIS.into()],
        _ => vec![tenant.as_str().into(), n.into(), chain::GENESIS.into(), chain::GENESIS.into()],
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .ok_or_else(|| DbErr::Custom("the audit chain head was not returned".into()))?;
    Ok((row.try_get("", "seq")?, row.try_get("", "hash")?))
}

/// Locks the tenant's chain head (creating it if need be) until the transaction ends.
///
/// # Errors
/// Database errors.
pub async fn lock_head(txn: &DatabaseTransaction, tenant: &TenantId) -> Result<(), DbErr> {
    claim(txn, tenant, 0).await.map(|_| ())
}

async fn set_head_hash(txn: &impl ConnectionTrait, tenant: &TenantId, hash: &str) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "UPDATE audit_heads SET hash = $1 WHERE tenant_id = $2",
        _ => "UPDATE audit_heads SET hash = ? WHERE tenant_id = ?",
    };
    txn.execute_raw(Statement::from_sql_and_values(backend, sql, [hash.into(), tenant.as_str().into()])).await?;
    Ok(())
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    /// An exact action, or a prefix ending in `.` (`key.` matches every key action).
    pub action: Option<String>,
    pub target_id: Option<String>,
}

/// The retention a tenant chose (`settings.audit_retention_days`), or the install's default.
#[must_use]
pub fn retention_days(tenant_settings: &Value, default: u32) -> u32 {
    tenant_settings
        .get("audit_retention_days")
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok())
        .filter(|d| *d >= 1)
        .unwrap_or(default)
}

/// Applies every tenant's retention (or `default_days`), at most once an hour per node.
///
/// # Errors
/// Database errors.
pub async fn retention_sweep(db: &DatabaseConnection, default_days: u32) -> Result<(), DbErr> {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now();
    let last = LAST.load(Ordering::Relaxed);
    if now.timestamp() - last < 3_600
        || LAST.compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return Ok(());
    }
    let tenants = crate::store::tenants::all(db).await.map_err(|e| DbErr::Custom(e.to_string()))?;
    for t in tenants {
        let days = retention_days(&t.settings, default_days);
        let before = now - chrono::TimeDelta::days(i64::from(days));
        let gone = export::prune(db, &TenantId::from_trusted(t.id.clone()), before, SYSTEM).await?;
        if gone > 0 {
            tracing::info!(tenant_id = %t.id, removed = gone, days, "audit entries past retention removed");
        }
    }
    Ok(())
}

/// What `keyroll audit verify` prints: one line per tenant (or the one asked for), and whether
/// every chain is intact.
///
/// # Errors
/// Database errors, or no such tenant.
pub async fn check_all(db: &DatabaseConnection, only: Option<&str>, json: bool) -> anyhow::Result<(bool, Vec<String>)> {
    let tenants = crate::store::tenants::all(db).await?;
    let chosen: Vec<_> = tenants.into_iter().filter(|t| only.is_none_or(|o| o == t.id)).collect();
    if chosen.is_empty() {
        anyhow::bail!(
            "{}",
            only.map_or_else(|| "no tenant exists yet".to_owned(), |o| format!("no tenant has the id {o}"))
        );
    }
    let mut all_intact = true;
    let mut lines = Vec::with_capacity(chosen.len());
    for t in chosen {
        let report = verify(db, &TenantId::from_trusted(t.id.clone())).await?;
        all_intact &= report.intact;
        lines.push(if json {
            serde_json::json!({ "tenant_id": t.id, "report": report }).to_string()
        } else if let Some(b) = &report.first_broken {
            let at = b.id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default();
            format!("{} ({}): BROKEN at entry {}{at}: {}", t.name, t.id, b.seq, b.reason)
        } else {
            format!(
                "{} ({}): intact, {} entries ({} to {}), newest hash {}",
                t.name, t.id, report.entries, report.first_seq, report.head_seq, report.head_hash
            )
        });
    }
    Ok((all_intact, lines))
}

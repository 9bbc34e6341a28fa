//! The hash chain: how an entry's hash is computed, and the walk that checks a tenant's chain.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::store::entities::{audit_event, audit_head};

/// What the first entry of a chain points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over a fixed encoding of every column except the hash itself.
#[must_use]
pub fn hash_of(e: &audit_event::Model) -> String {
    let fields = (
        "keyroll-audit-v1",
        &e.tenant_id,
        e.seq,
        &e.prev_hash,
        &e.id,
        e.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        &e.actor,
        &e.action,
        &e.target_type,
        &e.target_id,
        &e.summary,
        &e.request_id,
        &e.ip,
        &e.data,
    );
    // Serializing a tuple of strings and integers cannot fail.
    let encoded = serde_json::to_vec(&fields).unwrap_or_default();
    hex(&Sha256::digest(&encoded))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The first link that does not hold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BrokenLink {
    /// The sequence number where the chain breaks.
    pub seq: i64,
    /// The entry at that place, when there is one.
    pub id: Option<String>,
    pub reason: String,
}

/// The outcome of a walk over a tenant's chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChainReport {
    pub intact: bool,
    /// Entries checked.
    pub entries: i64,
    /// The last sequence number the head records.
    pub head_seq: i64,
    /// Entries before this one were removed by retention, as the chain itself records.
    pub first_seq: i64,
    /// The hash of the newest entry. Kept somewhere else (a ticket, a notebook), it proves later
    /// that nothing up to that entry was rewritten, even by someone who could rewrite the tail.
    pub head_hash: String,
    pub first_broken: Option<BrokenLink>,
}

/// Walks the tenant's chain from the first kept entry to the head. Every entry's hash must be
/// its own, its `prev_hash` the previous entry's hash, sequence numbers may not skip, and the
/// last entry must be the one the head names (so removing the newest entries is seen too).
///
/// # Errors
/// Database errors.
pub async fn verify(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<ChainReport, DbErr> {
    verify_from(db, tenant, None).await
}

/// As [`verify`], but when an earlier walk found the chain intact, only the entries written
/// since are read: they must continue from the hash that walk ended on.
///
/// # Errors
/// Database errors.
pub async fn verify_from(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    earlier: Option<&ChainReport>,
) -> Result<ChainReport, DbErr> {
    let head = audit_head::Entity::find_by_id(tenant.as_str()).one(db).await?;
    let (head_seq, head_hash, pruned, anchor) = head.map_or_else(
        || (0, GENESIS.to_owned(), 0, GENESIS.to_owned()),
        |h| (h.seq, h.hash, h.pruned_seq, h.anchor_hash),
    );
    let mut report = ChainReport {
        intact: true,
        entries: 0,
        head_seq,
        first_seq: pruned + 1,
        head_hash: head_hash.clone(),
        first_broken: None,
    };
    let (mut expected_seq, mut prev) = match earlier {
        Some(e) if e.intact && e.head_seq > pruned && e.head_seq <= head_seq => (e.head_seq + 1, e.head_hash.clone()),
        _ => (pruned + 1, anchor),
    };
    let broken = |seq: i64, id: Option<String>, reason: String| BrokenLink { seq, id, reason };
    loop {
        let batch = audit_event::Entity::find()
            .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
            .filter(audit_event::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_event::Column::Seq)
            .limit(1_000)
            .all(db)
            .await?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            let fault = if e.seq != expected_seq {
                Some(format!("entry {expected_seq} is missing"))
            } else if e.prev_hash != prev {
                Some("does not point to the entry before it".to_owned())
            } else if hash_of(&e) != e.hash {
                Some("its content does not match its hash: it was changed after it was written".to_owned())
            } else {
                None
            };
            if let Some(reason) = fault {
                let id = (e.seq == expected_seq).then_some(e.id);
                report.first_broken = Some(broken(expected_seq, id, reason));
                report.intact = false;
                return Ok(report);
            }
            report.entries += 1;
            expected_seq += 1;
            prev = e.hash;
        }
    }
    if expected_seq - 1 != head_seq || prev != head_hash {
        let reason = if expected_seq - 1 < head_seq {
            format!("entries {expected_seq} to {head_seq} are missing")
        } else {
            "the newest entry is not the one the chain head records".to_owned()
        };
        report.first_broken = Some(broken(expected_seq.min(head_seq), None, reason));
        report.intact = false;
    } else {
        // Every entry from the first kept one to the head is there, in order.
        report.entries = head_seq - pruned;
    }
    Ok(report)
}

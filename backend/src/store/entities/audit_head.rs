use sea_orm::entity::prelude::*;

/// The head of a tenant's audit chain: the last sequence number and hash, and what retention
/// has pruned (entries up to `pruned_seq`; the first kept entry's `prev_hash` is `anchor_hash`).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_heads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    pub seq: i64,
    pub hash: String,
    pub pruned_seq: i64,
    pub anchor_hash: String,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// The credit balance of a lineage (every version of a credential spends from it).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_credits")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub lineage_id: String,
    pub tenant_id: String,
    pub remaining: i64,
    /// The balance as last set or refilled.
    pub baseline: i64,
    /// The refill period the balance belongs to, when it refills.
    pub period: Option<String>,
    pub updated_at: DateTimeUtc,
    /// Names the last time the balance was set: spends made elsewhere (in Redis) are written
    /// only to the balance of the revision they were spent from.
    pub revision: i64,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// An advance notice (`key.expiring`) already sent for a key version and lead time.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sent_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lead_seconds: i64,
    pub sent_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

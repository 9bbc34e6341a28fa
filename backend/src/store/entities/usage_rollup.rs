use sea_orm::entity::prelude::*;

/// Verification outcomes counted per key, code and time bucket (time first, for partitioning).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_rollups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub bucket_start: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub granularity: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub code: String,
    pub tenant_id: String,
    pub count: i64,
}

impl ActiveModelBehavior for ActiveModel {}

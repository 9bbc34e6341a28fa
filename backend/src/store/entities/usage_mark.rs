use sea_orm::entity::prelude::*;

/// How far counts are rolled up into buckets of one size.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_marks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub granularity: String,
    pub rolled_until: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

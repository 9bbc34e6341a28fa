use sea_orm::entity::prelude::*;

/// A rotation policy of an API, or a consumer's override of it.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rotation_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub api_id: String,
    pub consumer_id: Option<String>,
    pub interval_days: Option<i64>,
    pub cron: Option<String>,
    pub window_seconds: i64,
    pub overlap_seconds: i64,
    pub notice_seconds: Json,
    pub retire_mode: String,
    pub max_active: i32,
    /// `end_oldest` or `refuse`.
    pub on_full: String,
    /// `pickup`: the consumer fetches the new key with its current one.
    pub delivery: String,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

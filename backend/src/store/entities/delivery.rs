use sea_orm::entity::prelude::*;

/// One delivery of an event: to a webhook endpoint or an email recipient.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub event_id: String,
    /// `webhook` or `email`.
    pub channel: String,
    pub endpoint_id: Option<String>,
    pub recipient: Option<String>,
    /// `pending`, `delivered`, `dead` (gave up) or `held` (no way to send it).
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    pub last_status: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// Where a tenant (or one of its consumers) receives signed webhooks.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// Set for a consumer's own endpoint: it receives only that consumer's events.
    pub consumer_id: Option<String>,
    pub url: String,
    /// `whsec_…`, the signing secret.
    pub secret: String,
    pub event_types: Json,
    pub enabled: bool,
    /// Consecutive deliveries that failed for good.
    pub failures: i32,
    pub disabled_at: Option<DateTimeUtc>,
    /// The secret before the last rotation of it; it signs too until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    /// When deliveries started failing without a success since.
    pub failing_since: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

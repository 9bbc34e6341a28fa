use sea_orm::entity::prelude::*;

/// A tenant's own Stripe account, connected to bill its consumers: its key sealed with the
/// master key, and the last refusal from Stripe.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    pub sealed_key: String,
    /// The key's kind and last four characters (`rk_live_…wxyz`).
    pub key_hint: String,
    pub connected_by: String,
    pub connected_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}

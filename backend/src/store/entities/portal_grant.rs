use sea_orm::entity::prelude::*;

/// A single-use way into the portal: a link the provider minted (`purpose = "link"`) or a
/// magic link sent by email (`"magic"`). `id` is the token's `jti`; `used_at` is set once.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "portal_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub consumer_id: String,
    pub purpose: String,
    pub return_url: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}

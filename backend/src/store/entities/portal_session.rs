use sea_orm::entity::prelude::*;

/// A consumer signed in to the portal. `id` is SHA-256 of the cookie's token; `csrf` is the
/// token every form of this session carries.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "portal_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub consumer_id: String,
    pub csrf: String,
    /// Where "Back to …" leads (the provider's app).
    pub return_url: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

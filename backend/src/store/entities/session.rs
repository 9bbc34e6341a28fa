use sea_orm::entity::prelude::*;

/// A signed-in browser. `id` is SHA-256 of the cookie's token; `csrf` is the token every form
/// of this session carries.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    /// The tenant the user is working in.
    pub tenant_id: Option<String>,
    pub csrf: String,
    pub ip: Option<String>,
    /// The password was right but the two-factor code is still to come: not signed in yet.
    pub mfa_pending: bool,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

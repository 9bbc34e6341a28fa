use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub email: String,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    /// The TOTP secret, sealed with the master key, when two-factor sign-in is on.
    pub totp_secret: Option<String>,
    /// The last TOTP time step accepted; a code is never accepted twice.
    pub totp_last_step: Option<i64>,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

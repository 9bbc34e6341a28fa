use sea_orm::entity::prelude::*;

/// One import of existing keys, by the caller's id: the fingerprint of its request and the
/// report it gave, answered again when the same import is sent again.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub import_id: String,
    pub fingerprint: String,
    pub report: Json,
    pub created_by: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// One event of the tenant's event log.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    #[sea_orm(column_name = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub payload: Json,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

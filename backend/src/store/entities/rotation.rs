use sea_orm::entity::prelude::*;

/// One rotation of a lineage: `from_key_id` (version n) superseded by `to_key_id` (n + 1).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "rotations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub lineage_id: String,
    pub from_key_id: String,
    pub to_key_id: String,
    pub trigger: String,
    pub actor: Option<String>,
    pub retire_mode: String,
    /// Rotated because the old key was compromised: no rollback.
    pub compromise: bool,
    pub state: String,
    pub reason: Option<String>,
    pub started_at: DateTimeUtc,
    pub grace_ends_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

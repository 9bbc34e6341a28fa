use sea_orm::entity::prelude::*;

/// The anomaly detector's baseline of one key (or of one API's `NOT_FOUND` traffic).
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "key_baselines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub subject_id: String,
    pub tenant_id: String,
    /// Verifications per active minute (EWMA).
    pub rate: f64,
    /// Failures over verifications (EWMA), 0–1.
    pub failure_share: f64,
    /// Active minutes folded in.
    pub minutes: i64,
    /// Unix minute of the last one.
    pub last_minute: i64,
}

impl ActiveModelBehavior for ActiveModel {}

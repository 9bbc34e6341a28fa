use sea_orm::entity::prelude::*;

/// One key version. The plaintext is never stored: `hash` is SHA-256 of the whole key.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub api_id: String,
    pub consumer_id: Option<String>,
    pub lineage_id: String,
    pub version: i32,
    /// A root key of the tenant's system API (management API credential).
    pub is_root: bool,
    #[sea_orm(unique)]
    pub hash: String,
    pub start: String,
    pub name: Option<String>,
    pub scopes: Json,
    pub meta: Json,
    pub enabled: bool,
    pub expires_at: Option<DateTimeUtc>,
    pub grace_ends_at: Option<DateTimeUtc>,
    pub superseded_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<DateTimeUtc>,
    pub ratelimit: Option<Json>,
    pub credits: Option<Json>,
    pub ip_allowlist: Option<Json>,
    pub created_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "apis")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub key_prefix: String,
    pub environment: String,
    pub is_system: bool,
    pub scope_catalogue: Json,
    pub default_ratelimit: Option<Json>,
    /// What a reported leak does to this API's keys: `notify`, `rotate` or `revoke`.
    pub leak_action: String,
    /// With `rotate`, how long the leaked key keeps working.
    pub leak_grace_seconds: i64,
    /// How long an access token issued for one of its keys lives (60 to 900 seconds).
    pub token_ttl_seconds: i64,
    /// The tenant's Stripe meter event its verifications are reported to (none: not reported).
    pub stripe_meter_event: Option<String>,
    /// The gateway endpoint's rules for the API (`GatewayConfig`); null for the defaults.
    pub gateway: Option<Json>,
    /// Verification also accepts imported keys of a foreign format (no Keyroll head or checksum).
    pub legacy_key_formats: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// A key a tenant signs with: access tokens (`purpose = "token"`, Ed25519, published in the
/// tenant's JWKS) or portal links (`purpose = "portal"`, HMAC, never published). The private
/// half is sealed with the master key.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    /// The `kid`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub purpose: String,
    pub alg: String,
    /// The public JWK (token keys).
    pub public_jwk: Option<Json>,
    pub private_sealed: String,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    /// When it starts signing (it is published from `created_at`).
    pub activates_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}

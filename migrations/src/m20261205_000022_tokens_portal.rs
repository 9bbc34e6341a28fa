//! Short-lived tokens and the consumer portal.
//!
//! - `signing_keys`: a tenant's keys that sign access tokens (`purpose = 'token'`, Ed25519, the
//!   public half published in the tenant's JWKS) and its portal links (`purpose = 'portal'`,
//!   HMAC). Private halves are sealed with the master key. A key's phase follows from its times
//!   and those of the tenant's other keys (see the domain's signing module).
//! - `portal_grants`: single-use portal links (provider-minted or magic links), by their `jti`.
//! - `portal_sessions`: a consumer signed in to the portal; `id` is SHA-256 of the cookie.
//! - `apis.token_ttl_seconds`: how long an access token for a key of the API lives.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, json_null, string, string_null, text, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Id,
    TenantId,
    Purpose,
    Alg,
    PublicJwk,
    PrivateSealed,
    CreatedBy,
    CreatedAt,
    ActivatesAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum PortalGrants {
    Table,
    Id,
    TenantId,
    ConsumerId,
    Purpose,
    ReturnUrl,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum PortalSessions {
    Table,
    Id,
    TenantId,
    ConsumerId,
    Csrf,
    ReturnUrl,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Apis {
    Table,
    TokenTtlSeconds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SigningKeys::Table)
                .col(string(SigningKeys::Id).primary_key())
                .col(string(SigningKeys::TenantId))
                .col(string(SigningKeys::Purpose))
                .col(string(SigningKeys::Alg))
                .col(json_null(SigningKeys::PublicJwk))
                .col(text(SigningKeys::PrivateSealed))
                .col(string(SigningKeys::CreatedBy))
                .col(timestamp_with_time_zone(SigningKeys::CreatedAt))
                .col(timestamp_with_time_zone(SigningKeys::ActivatesAt))
                .col(timestamp_with_time_zone_null(SigningKeys::RevokedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("signing_keys_tenant")
                .table(SigningKeys::Table)
                .col(SigningKeys::TenantId)
                .col(SigningKeys::Purpose)
                .col(SigningKeys::ActivatesAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PortalGrants::Table)
                .col(string(PortalGrants::Id).primary_key())
                .col(string(PortalGrants::TenantId))
                .col(string(PortalGrants::ConsumerId))
                .col(string(PortalGrants::Purpose))
                .col(string_null(PortalGrants::ReturnUrl))
                .col(timestamp_with_time_zone(PortalGrants::CreatedAt))
                .col(timestamp_with_time_zone(PortalGrants::ExpiresAt))
                .col(timestamp_with_time_zone_null(PortalGrants::UsedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("portal_grants_expires")
                .table(PortalGrants::Table)
                .col(PortalGrants::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PortalSessions::Table)
                .col(string(PortalSessions::Id).primary_key())
                .col(string(PortalSessions::TenantId))
                .col(string(PortalSessions::ConsumerId))
                .col(string(PortalSessions::Csrf))
                .col(string_null(PortalSessions::ReturnUrl))
                .col(timestamp_with_time_zone(PortalSessions::CreatedAt))
                .col(timestamp_with_time_zone(PortalSessions::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("portal_sessions_expires")
                .table(PortalSessions::Table)
                .col(PortalSessions::ExpiresAt)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter().table(Apis::Table).add_column(big_integer(Apis::TokenTtlSeconds).default(900)).to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::TokenTtlSeconds).to_owned()).await?;
        m.drop_table(Table::drop().table(PortalSessions::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(PortalGrants::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(SigningKeys::Table).to_owned()).await
    }
}

//! Tenants, users, APIs, consumers, key versions, idempotency records and usage rollups.
//! `keys` carries `lineage_id`, `version` and `grace_ends_at` from the start so rotation fits.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, boolean, integer, json_binary, json_binary_null, string, string_null, text_null,
    timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    Slug,
    Plan,
    Settings,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    UserId,
    TenantId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Apis {
    Table,
    Id,
    TenantId,
    Name,
    KeyPrefix,
    Environment,
    IsSystem,
    ScopeCatalogue,
    DefaultRatelimit,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Consumers {
    Table,
    Id,
    TenantId,
    ExternalId,
    Name,
    Email,
    Meta,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Keys {
    Table,
    Id,
    TenantId,
    ApiId,
    ConsumerId,
    LineageId,
    Version,
    IsRoot,
    Hash,
    Start,
    Name,
    Scopes,
    Meta,
    Enabled,
    ExpiresAt,
    GraceEndsAt,
    SupersededAt,
    RevokedAt,
    RevokedReason,
    LastUsedAt,
    Ratelimit,
    Credits,
    IpAllowlist,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    TenantId,
    KeyHash,
    RequestHash,
    Status,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UsageRollups {
    Table,
    BucketStart,
    Granularity,
    KeyId,
    Code,
    TenantId,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenants::Table)
                .col(string(Tenants::Id).primary_key())
                .col(string(Tenants::Name))
                .col(string(Tenants::Slug).unique_key())
                .col(string(Tenants::Plan))
                .col(json_binary(Tenants::Settings))
                .col(timestamp_with_time_zone(Tenants::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(string(Users::Id).primary_key())
                .col(string(Users::Email).unique_key())
                .col(string_null(Users::Name))
                .col(string_null(Users::PasswordHash))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Memberships::Table)
                .col(string(Memberships::UserId))
                .col(string(Memberships::TenantId))
                .col(string(Memberships::Role))
                .col(timestamp_with_time_zone(Memberships::CreatedAt))
                .primary_key(Index::create().col(Memberships::UserId).col(Memberships::TenantId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Memberships::Table, Memberships::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Memberships::Table, Memberships::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Apis::Table)
                .col(string(Apis::Id).primary_key())
                .col(string(Apis::TenantId))
                .col(string(Apis::Name))
                .col(string(Apis::KeyPrefix))
                .col(string(Apis::Environment))
                .col(boolean(Apis::IsSystem))
                .col(json_binary(Apis::ScopeCatalogue))
                .col(json_binary_null(Apis::DefaultRatelimit))
                .col(timestamp_with_time_zone(Apis::CreatedAt))
                .col(timestamp_with_time_zone(Apis::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Apis::Table, Apis::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("apis_tenant_prefix_env")
                .table(Apis::Table)
                .col(Apis::TenantId)
                .col(Apis::KeyPrefix)
                .col(Apis::Environment)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Consumers::Table)
                .col(string(Consumers::Id).primary_key())
                .col(string(Consumers::TenantId))
                .col(string(Consumers::ExternalId))
                .col(string(Consumers::Name))
                .col(string_null(Consumers::Email))
                .col(json_binary(Consumers::Meta))
                .col(timestamp_with_time_zone(Consumers::CreatedAt))
                .col(timestamp_with_time_zone(Consumers::UpdatedAt))
                .col(timestamp_with_time_zone_null(Consumers::DeletedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Consumers::Table, Consumers::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A deleted consumer frees its external id; partial unique indexes work on both backends.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX consumers_tenant_external_id ON consumers (tenant_id, external_id) \
                 WHERE deleted_at IS NULL",
            )
            .await?;

        m.create_table(
            Table::create()
                .table(Keys::Table)
                .col(string(Keys::Id).primary_key())
                .col(string(Keys::TenantId))
                .col(string(Keys::ApiId))
                .col(string_null(Keys::ConsumerId))
                .col(string(Keys::LineageId))
                .col(integer(Keys::Version))
                .col(boolean(Keys::IsRoot))
                .col(string(Keys::Hash).unique_key())
                .col(string(Keys::Start))
                .col(string_null(Keys::Name))
                .col(json_binary(Keys::Scopes))
                .col(json_binary(Keys::Meta))
                .col(boolean(Keys::Enabled))
                .col(timestamp_with_time_zone_null(Keys::ExpiresAt))
                .col(timestamp_with_time_zone_null(Keys::GraceEndsAt))
                .col(timestamp_with_time_zone_null(Keys::SupersededAt))
                .col(timestamp_with_time_zone_null(Keys::RevokedAt))
                .col(string_null(Keys::RevokedReason))
                .col(timestamp_with_time_zone_null(Keys::LastUsedAt))
                .col(json_binary_null(Keys::Ratelimit))
                .col(json_binary_null(Keys::Credits))
                .col(json_binary_null(Keys::IpAllowlist))
                .col(string_null(Keys::CreatedBy))
                .col(timestamp_with_time_zone(Keys::CreatedAt))
                .col(timestamp_with_time_zone(Keys::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Keys::Table, Keys::TenantId)
                        .to(Tenants::Table, Tenants::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(ForeignKey::create().from(Keys::Table, Keys::ApiId).to(Apis::Table, Apis::Id))
                .foreign_key(
                    ForeignKey::create().from(Keys::Table, Keys::ConsumerId).to(Consumers::Table, Consumers::Id),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("keys_lineage_version", vec![Keys::LineageId, Keys::Version]),
            ("keys_tenant_id", vec![Keys::TenantId, Keys::Id]),
            ("keys_tenant_consumer", vec![Keys::TenantId, Keys::ConsumerId]),
            ("keys_tenant_api", vec![Keys::TenantId, Keys::ApiId]),
        ] {
            let mut idx = Index::create().name(name).table(Keys::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            if name == "keys_lineage_version" {
                idx.unique();
            }
            m.create_index(idx).await?;
        }

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(string(IdempotencyKeys::TenantId))
                .col(string(IdempotencyKeys::KeyHash))
                .col(string(IdempotencyKeys::RequestHash))
                .col(ColumnDef::new(IdempotencyKeys::Status).integer().null())
                .col(text_null(IdempotencyKeys::Body))
                .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                .primary_key(Index::create().col(IdempotencyKeys::TenantId).col(IdempotencyKeys::KeyHash))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UsageRollups::Table)
                .col(timestamp_with_time_zone(UsageRollups::BucketStart))
                .col(string(UsageRollups::Granularity))
                .col(string(UsageRollups::KeyId))
                .col(string(UsageRollups::Code))
                .col(string(UsageRollups::TenantId))
                .col(big_integer(UsageRollups::Count))
                .primary_key(
                    Index::create()
                        .col(UsageRollups::BucketStart)
                        .col(UsageRollups::Granularity)
                        .col(UsageRollups::KeyId)
                        .col(UsageRollups::Code),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("usage_rollups_key_bucket")
                .table(UsageRollups::Table)
                .col(UsageRollups::KeyId)
                .col(UsageRollups::BucketStart)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["usage_rollups", "idempotency_keys", "keys", "consumers", "apis", "memberships", "users", "tenants"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}

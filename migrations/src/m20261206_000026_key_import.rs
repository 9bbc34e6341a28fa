//! Bringing existing keys over.
//!
//! - `apis.legacy_key_formats`: verification also accepts keys of a foreign format (no Keyroll
//!   head or checksum) imported into this API.
//! - `key_imports`: one row per import, by the caller's `import_id`: the fingerprint of the
//!   request and the report given, so a retried import answers the same and imports nothing
//!   twice.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{boolean, json, string, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Apis {
    Table,
    LegacyKeyFormats,
}

#[derive(DeriveIden)]
enum KeyImports {
    Table,
    TenantId,
    ImportId,
    Fingerprint,
    Report,
    CreatedBy,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Apis::Table).add_column(boolean(Apis::LegacyKeyFormats).default(false)).to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(KeyImports::Table)
                .col(string(KeyImports::TenantId))
                .col(string(KeyImports::ImportId))
                .col(string(KeyImports::Fingerprint))
                .col(json(KeyImports::Report))
                .col(string(KeyImports::CreatedBy))
                .col(timestamp_with_time_zone(KeyImports::CreatedAt))
                .primary_key(Index::create().col(KeyImports::TenantId).col(KeyImports::ImportId))
                .foreign_key(
                    ForeignKey::create()
                        .from(KeyImports::Table, KeyImports::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(KeyImports::Table).to_owned()).await?;
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::LegacyKeyFormats).to_owned()).await
    }
}

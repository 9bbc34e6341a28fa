//! Single-use recovery codes for two-factor sign-in: ten per person, shown once when two-factor
//! is turned on (or the codes are made anew). Only SHA-256 digests are stored.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CreatedAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RecoveryCodes::Table)
                .col(string(RecoveryCodes::Id).primary_key())
                .col(string(RecoveryCodes::UserId))
                .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(RecoveryCodes::Table, RecoveryCodes::UserId)
                        .to(Alias::new("users"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("recovery_codes_user")
                .table(RecoveryCodes::Table)
                .col(RecoveryCodes::UserId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RecoveryCodes::Table).to_owned()).await
    }
}

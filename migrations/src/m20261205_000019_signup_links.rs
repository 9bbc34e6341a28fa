//! Single-use sign-up links of an install whose sign-up policy is `invite`: made on the command
//! line, each creates one team. Only SHA-256 digests of the tokens are stored.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SignupLinks {
    Table,
    Id,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SignupLinks::Table)
                .col(string(SignupLinks::Id).primary_key())
                .col(timestamp_with_time_zone(SignupLinks::CreatedAt))
                .col(timestamp_with_time_zone(SignupLinks::ExpiresAt))
                .col(timestamp_with_time_zone_null(SignupLinks::UsedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SignupLinks::Table).to_owned()).await
    }
}

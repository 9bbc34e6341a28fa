//! The durable job table: claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, leased, retried.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    integer, json_binary, string, string_null, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    TenantId,
    Kind,
    Payload,
    State,
    RunAt,
    Attempts,
    MaxAttempts,
    LockedBy,
    LockedUntil,
    LastError,
    DedupeKey,
    Progress,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(string(Jobs::Id).primary_key())
                .col(string_null(Jobs::TenantId))
                .col(string(Jobs::Kind))
                .col(json_binary(Jobs::Payload))
                .col(string(Jobs::State))
                .col(timestamp_with_time_zone(Jobs::RunAt))
                .col(integer(Jobs::Attempts))
                .col(integer(Jobs::MaxAttempts))
                .col(string_null(Jobs::LockedBy))
                .col(timestamp_with_time_zone_null(Jobs::LockedUntil))
                .col(text_null(Jobs::LastError))
                .col(string_null(Jobs::DedupeKey).unique_key())
                .col(json_binary(Jobs::Progress))
                .col(timestamp_with_time_zone(Jobs::CreatedAt))
                .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("jobs_state_run_at").table(Jobs::Table).col(Jobs::State).col(Jobs::RunAt).to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Jobs::Table).to_owned()).await
    }
}

//! Alerts and what the detector keeps to raise them: per-key (and per-API) baselines, and the
//! client addresses each key was seen from.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, double, json_binary, string, string_null, text, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    TenantId,
    Kind,
    Severity,
    SubjectId,
    State,
    Summary,
    Evidence,
    Occurrences,
    FirstSeenAt,
    LastSeenAt,
    AcknowledgedAt,
    AcknowledgedBy,
    ResolvedAt,
    ResolvedBy,
}

#[derive(DeriveIden)]
enum KeyBaselines {
    Table,
    SubjectId,
    TenantId,
    Rate,
    FailureShare,
    Minutes,
    LastMinute,
}

#[derive(DeriveIden)]
enum KeyClients {
    Table,
    KeyId,
    Ip,
    TenantId,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alerts::Table)
                .col(string(Alerts::Id).primary_key())
                .col(string(Alerts::TenantId))
                .col(string(Alerts::Kind))
                .col(string(Alerts::Severity))
                .col(string(Alerts::SubjectId))
                .col(string(Alerts::State))
                .col(text(Alerts::Summary))
                .col(json_binary(Alerts::Evidence))
                .col(big_integer(Alerts::Occurrences))
                .col(timestamp_with_time_zone(Alerts::FirstSeenAt))
                .col(timestamp_with_time_zone(Alerts::LastSeenAt))
                .col(timestamp_with_time_zone_null(Alerts::AcknowledgedAt))
                .col(string_null(Alerts::AcknowledgedBy))
                .col(timestamp_with_time_zone_null(Alerts::ResolvedAt))
                .col(string_null(Alerts::ResolvedBy))
                .foreign_key(
                    ForeignKey::create()
                        .from(Alerts::Table, Alerts::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("alerts_tenant_id")
                .table(Alerts::Table)
                .col(Alerts::TenantId)
                .col(Alerts::Id)
                .to_owned(),
        )
        .await?;
        // One live alert per kind and subject: a repeat adds to it instead of piling up.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX alerts_live_subject ON alerts (tenant_id, kind, subject_id) \
                 WHERE state <> 'resolved'",
            )
            .await?;
        m.create_table(
            Table::create()
                .table(KeyBaselines::Table)
                .col(string(KeyBaselines::SubjectId).primary_key())
                .col(string(KeyBaselines::TenantId))
                .col(double(KeyBaselines::Rate))
                .col(double(KeyBaselines::FailureShare))
                .col(big_integer(KeyBaselines::Minutes))
                .col(big_integer(KeyBaselines::LastMinute))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(KeyClients::Table)
                .col(string(KeyClients::KeyId))
                .col(string(KeyClients::Ip))
                .col(string(KeyClients::TenantId))
                .col(timestamp_with_time_zone(KeyClients::FirstSeenAt))
                .col(timestamp_with_time_zone(KeyClients::LastSeenAt))
                .primary_key(Index::create().col(KeyClients::KeyId).col(KeyClients::Ip))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("key_clients_first_seen")
                .table(KeyClients::Table)
                .col(KeyClients::FirstSeenAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(KeyClients::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(KeyBaselines::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Alerts::Table).to_owned()).await
    }
}

//! Rotation policies (per API, with per-consumer overrides), the advance notices already sent,
//! and new secrets waiting for their consumer to pick them up (sealed with the master key).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, boolean, integer, json_binary, string, string_null, text, timestamp_with_time_zone,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RotationPolicies {
    Table,
    Id,
    TenantId,
    ApiId,
    ConsumerId,
    IntervalDays,
    Cron,
    WindowSeconds,
    OverlapSeconds,
    NoticeSeconds,
    RetireMode,
    MaxActive,
    OnFull,
    Delivery,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SentNotices {
    Table,
    KeyId,
    LeadSeconds,
    SentAt,
}

#[derive(DeriveIden)]
enum PendingSecrets {
    Table,
    KeyId,
    TenantId,
    LineageId,
    Sealed,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(RotationPolicies::Table)
                .col(string(RotationPolicies::Id).primary_key())
                .col(string(RotationPolicies::TenantId))
                .col(string(RotationPolicies::ApiId))
                .col(string_null(RotationPolicies::ConsumerId))
                .col(big_integer_null(RotationPolicies::IntervalDays))
                .col(string_null(RotationPolicies::Cron))
                .col(big_integer(RotationPolicies::WindowSeconds))
                .col(big_integer(RotationPolicies::OverlapSeconds))
                .col(json_binary(RotationPolicies::NoticeSeconds))
                .col(string(RotationPolicies::RetireMode))
                .col(integer(RotationPolicies::MaxActive))
                .col(string(RotationPolicies::OnFull))
                .col(string(RotationPolicies::Delivery))
                .col(boolean(RotationPolicies::Enabled))
                .col(timestamp_with_time_zone(RotationPolicies::CreatedAt))
                .col(timestamp_with_time_zone(RotationPolicies::UpdatedAt))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX rotation_policies_api ON rotation_policies (api_id) WHERE consumer_id IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX rotation_policies_consumer ON rotation_policies (api_id, consumer_id) \
             WHERE consumer_id IS NOT NULL",
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SentNotices::Table)
                .col(string(SentNotices::KeyId))
                .col(big_integer(SentNotices::LeadSeconds))
                .col(timestamp_with_time_zone(SentNotices::SentAt))
                .primary_key(Index::create().col(SentNotices::KeyId).col(SentNotices::LeadSeconds))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PendingSecrets::Table)
                .col(string(PendingSecrets::KeyId).primary_key())
                .col(string(PendingSecrets::TenantId))
                .col(string(PendingSecrets::LineageId))
                .col(text(PendingSecrets::Sealed))
                .col(timestamp_with_time_zone(PendingSecrets::CreatedAt))
                .col(timestamp_with_time_zone(PendingSecrets::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("pending_secrets_lineage")
                .table(PendingSecrets::Table)
                .col(PendingSecrets::LineageId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["pending_secrets", "sent_notices", "rotation_policies"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}

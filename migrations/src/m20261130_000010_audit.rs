//! The audit log: one hash-chained row per mutation, and each tenant's chain head, which every
//! append locks (so a tenant's entries form one sequence) and which records what retention
//! has pruned from the front of the chain.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_null, text, timestamp_with_time_zone};

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    Seq,
    OccurredAt,
    Actor,
    Action,
    TargetType,
    TargetId,
    Summary,
    RequestId,
    Ip,
    Data,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    Table,
    TenantId,
    Seq,
    Hash,
    PrunedSeq,
    AnchorHash,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(string(AuditEvents::Id).primary_key())
                .col(string(AuditEvents::TenantId))
                .col(big_integer(AuditEvents::Seq))
                .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                .col(string(AuditEvents::Actor))
                .col(string(AuditEvents::Action))
                .col(string(AuditEvents::TargetType))
                .col(string_null(AuditEvents::TargetId))
                .col(text(AuditEvents::Summary))
                .col(string_null(AuditEvents::RequestId))
                .col(string_null(AuditEvents::Ip))
                // Kept as the exact text that was hashed, so verification never depends on how
                // a database normalizes JSON.
                .col(text(AuditEvents::Data))
                .col(string(AuditEvents::PrevHash))
                .col(string(AuditEvents::Hash))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_events_tenant_seq")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::Seq)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_events_tenant_time")
                .table(AuditEvents::Table)
                .col(AuditEvents::TenantId)
                .col(AuditEvents::OccurredAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditHeads::Table)
                .col(string(AuditHeads::TenantId).primary_key())
                .col(big_integer(AuditHeads::Seq))
                .col(string(AuditHeads::Hash))
                .col(big_integer(AuditHeads::PrunedSeq).default(0))
                .col(string(AuditHeads::AnchorHash).default(""))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditHeads::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }
}

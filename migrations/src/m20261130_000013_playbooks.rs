//! Incident playbooks: a tenant's own playbooks (built-in ones live in the code), their runs with
//! each step's state and evidence, and the registry of live nodes that runs probe.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    integer, json_binary, string, string_null, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveIden)]
enum Playbooks {
    Table,
    Id,
    TenantId,
    Name,
    Description,
    TargetKind,
    Steps,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PlaybookRuns {
    Table,
    Id,
    TenantId,
    PlaybookId,
    PlaybookName,
    TargetKind,
    Target,
    Steps,
    State,
    CurrentStep,
    StartedBy,
    ApprovedBy,
    JobId,
    Error,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    Url,
    ProbeToken,
    StartedAt,
    LastSeenAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Playbooks::Table)
                .col(string(Playbooks::Id).primary_key())
                .col(string(Playbooks::TenantId))
                .col(string(Playbooks::Name))
                .col(text(Playbooks::Description))
                .col(string(Playbooks::TargetKind))
                .col(json_binary(Playbooks::Steps))
                .col(string_null(Playbooks::CreatedBy))
                .col(timestamp_with_time_zone(Playbooks::CreatedAt))
                .col(timestamp_with_time_zone(Playbooks::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Playbooks::Table, Playbooks::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("playbooks_tenant_id")
                .table(Playbooks::Table)
                .col(Playbooks::TenantId)
                .col(Playbooks::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PlaybookRuns::Table)
                .col(string(PlaybookRuns::Id).primary_key())
                .col(string(PlaybookRuns::TenantId))
                .col(string(PlaybookRuns::PlaybookId))
                .col(string(PlaybookRuns::PlaybookName))
                .col(string(PlaybookRuns::TargetKind))
                .col(json_binary(PlaybookRuns::Target))
                .col(json_binary(PlaybookRuns::Steps))
                .col(string(PlaybookRuns::State))
                .col(integer(PlaybookRuns::CurrentStep))
                .col(string(PlaybookRuns::StartedBy))
                .col(string_null(PlaybookRuns::ApprovedBy))
                .col(string_null(PlaybookRuns::JobId))
                .col(text_null(PlaybookRuns::Error))
                .col(timestamp_with_time_zone(PlaybookRuns::CreatedAt))
                .col(timestamp_with_time_zone(PlaybookRuns::UpdatedAt))
                .col(timestamp_with_time_zone_null(PlaybookRuns::FinishedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(PlaybookRuns::Table, PlaybookRuns::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("playbook_runs_tenant_id")
                .table(PlaybookRuns::Table)
                .col(PlaybookRuns::TenantId)
                .col(PlaybookRuns::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Nodes::Table)
                .col(string(Nodes::Id).primary_key())
                .col(string(Nodes::Url))
                .col(string(Nodes::ProbeToken))
                .col(timestamp_with_time_zone(Nodes::StartedAt))
                .col(timestamp_with_time_zone(Nodes::LastSeenAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Nodes::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(PlaybookRuns::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Playbooks::Table).to_owned()).await
    }
}

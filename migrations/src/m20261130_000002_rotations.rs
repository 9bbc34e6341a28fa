//! Rotation records: one per rotation of a lineage, with its state machine's current state.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    boolean, string, string_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rotations {
    Table,
    Id,
    TenantId,
    LineageId,
    FromKeyId,
    ToKeyId,
    Trigger,
    Actor,
    RetireMode,
    Compromise,
    State,
    Reason,
    StartedAt,
    GraceEndsAt,
    EndedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Rotations::Table)
                .col(string(Rotations::Id).primary_key())
                .col(string(Rotations::TenantId))
                .col(string(Rotations::LineageId))
                .col(string(Rotations::FromKeyId))
                .col(string(Rotations::ToKeyId))
                .col(string(Rotations::Trigger))
                .col(string_null(Rotations::Actor))
                .col(string(Rotations::RetireMode))
                .col(boolean(Rotations::Compromise))
                .col(string(Rotations::State))
                .col(string_null(Rotations::Reason))
                .col(timestamp_with_time_zone(Rotations::StartedAt))
                .col(timestamp_with_time_zone(Rotations::GraceEndsAt))
                .col(timestamp_with_time_zone_null(Rotations::EndedAt))
                .col(timestamp_with_time_zone(Rotations::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Rotations::Table, Rotations::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("rotations_tenant_id", vec![Rotations::TenantId, Rotations::Id]),
            ("rotations_tenant_state", vec![Rotations::TenantId, Rotations::State]),
            ("rotations_lineage", vec![Rotations::LineageId]),
            ("rotations_from_key", vec![Rotations::FromKeyId]),
        ] {
            let mut idx = Index::create().name(name).table(Rotations::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Rotations::Table).to_owned()).await
    }
}

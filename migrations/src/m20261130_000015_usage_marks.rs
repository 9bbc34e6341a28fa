//! How far verification counts have been rolled up into each coarser bucket size: rolling resumes
//! there, and readers take coarse buckets up to there and finer ones after.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, timestamp_with_time_zone};

#[derive(DeriveIden)]
enum UsageMarks {
    Table,
    Granularity,
    RolledUntil,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UsageMarks::Table)
                .col(string(UsageMarks::Granularity).primary_key())
                .col(timestamp_with_time_zone(UsageMarks::RolledUntil))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UsageMarks::Table).to_owned()).await
    }
}

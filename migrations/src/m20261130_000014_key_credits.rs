//! The credit balance of each lineage that has credits: every version of a credential spends
//! from one balance (a rotation does not refill it), decremented in place by each verification
//! with a conditional update, so nodes sharing the database never take it below zero.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_null, timestamp_with_time_zone};

#[derive(DeriveIden)]
enum KeyCredits {
    Table,
    LineageId,
    TenantId,
    Remaining,
    Baseline,
    Period,
    UpdatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(KeyCredits::Table)
                .col(string(KeyCredits::LineageId).primary_key())
                .col(string(KeyCredits::TenantId))
                .col(big_integer(KeyCredits::Remaining))
                // The balance as last set or refilled: `credits.low` fires when a spend takes the
                // balance to a tenth of it.
                .col(big_integer(KeyCredits::Baseline))
                // The refill period the balance belongs to (`2026-11-30`, `2026-11`), if it refills.
                .col(string_null(KeyCredits::Period))
                .col(timestamp_with_time_zone(KeyCredits::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(KeyCredits::Table, KeyCredits::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(KeyCredits::Table).to_owned()).await
    }
}

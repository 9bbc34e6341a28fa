//! Secrets waiting for their one view: a form that creates a key (or a signing secret) redirects
//! to a page that shows it once. The row holds the page's content sealed with a key that only the
//! redirect's URL carries, so the database never holds a readable secret; it is deleted when
//! shown, and left unshown for 15 minutes it expires.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, text, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Reveals {
    Table,
    Id,
    TenantId,
    Owner,
    Sealed,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Reveals::Table)
                .col(string(Reveals::Id).primary_key())
                .col(string(Reveals::TenantId))
                .col(string(Reveals::Owner))
                .col(text(Reveals::Sealed))
                .col(timestamp_with_time_zone(Reveals::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("reveals_expires").table(Reveals::Table).col(Reveals::ExpiresAt).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Reveals::Table).to_owned()).await
    }
}

//! Webhook endpoints: a previous signing secret that keeps signing while the endpoint's owner
//! moves to the new one, and since when deliveries have been failing without a success.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string_null, timestamp_with_time_zone_null};

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    PreviousSecret,
    PreviousSecretUntil,
    FailingSince,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for col in [
            string_null(WebhookEndpoints::PreviousSecret),
            timestamp_with_time_zone_null(WebhookEndpoints::PreviousSecretUntil),
            timestamp_with_time_zone_null(WebhookEndpoints::FailingSince),
        ] {
            let mut col = col;
            m.alter_table(Table::alter().table(WebhookEndpoints::Table).add_column(&mut col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in
            [WebhookEndpoints::PreviousSecret, WebhookEndpoints::PreviousSecretUntil, WebhookEndpoints::FailingSince]
        {
            m.alter_table(Table::alter().table(WebhookEndpoints::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

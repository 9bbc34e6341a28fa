//! What a reported leak does to a key of each API: `notify`, `rotate` (the old key keeps
//! working for `leak_grace_seconds`) or `revoke`. Root keys (the system API) are revoked.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveIden)]
enum Apis {
    Table,
    LeakAction,
    LeakGraceSeconds,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(Apis::Table).add_column(string(Apis::LeakAction).default("rotate")).to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter().table(Apis::Table).add_column(big_integer(Apis::LeakGraceSeconds).default(900)).to_owned(),
        )
        .await?;
        m.get_connection().execute_unprepared("UPDATE apis SET leak_action = 'revoke' WHERE is_system = true").await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::LeakGraceSeconds).to_owned()).await?;
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::LeakAction).to_owned()).await
    }
}

//! `key_credits.revision`: names the last time a balance was set. A flush writes spends made in
//! Redis only to the balance they were spent from: an operator who set the balance in between
//! wins, and the spends of the replaced balance are not taken from the new one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::big_integer;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum KeyCredits {
    Table,
    Revision,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table(KeyCredits::Table).add_column(big_integer(KeyCredits::Revision).default(0)).to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(KeyCredits::Table).drop_column(KeyCredits::Revision).to_owned()).await
    }
}

//! `apis.gateway`: how the gateway endpoint reads requests for an API — the header that carries
//! the key and the route → scopes rules (null: the `Authorization: Bearer` header, no rules).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::json_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Apis {
    Table,
    Gateway,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Apis::Table).add_column(json_null(Apis::Gateway)).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::Gateway).to_owned()).await
    }
}

//! Room on every page of `keys` for updated row versions. Rotations, revocations and the
//! usage flush update key rows in place; with free space on the page PostgreSQL makes those
//! heap-only updates, which skip the six indexes of the table. SQLite has no such setting.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::set_fillfactor(m, "keys", Some(80)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::set_fillfactor(m, "keys", None).await
    }
}

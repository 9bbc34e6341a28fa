//! Half of every page of `keys` left free for updated row versions. Each key row is updated
//! about once between two page prunings (superseded by a rotation, revoked, or its last use
//! recorded by the usage flush), so each row needs room for one more version beside it to
//! keep those updates heap-only. At 80 % only about one row in four found that room, and the
//! others rewrote an entry in each of the table's six indexes. Existing pages keep their
//! layout until they are rewritten; new pages follow the setting.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            m.get_connection().execute_unprepared("ALTER TABLE keys SET (fillfactor = 50)").await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            m.get_connection().execute_unprepared("ALTER TABLE keys SET (fillfactor = 80)").await?;
        }
        Ok(())
    }
}

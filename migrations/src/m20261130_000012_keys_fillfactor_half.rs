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
        crate::set_fillfactor(m, "keys", Some(50)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::set_fillfactor(m, "keys", Some(80)).await
    }
}

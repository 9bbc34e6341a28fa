//! Half of every page of `usage_rollups` left free for updated row versions. Each flush of a
//! node adds its counts to the cells of the current minute, about twelve times a minute, and
//! a cell's rows sit side by side (written in one order by every flush). At the default of
//! 100 % an update found no room on the page, wrote its version elsewhere and an entry in both
//! of the table's indexes; with room beside it the update stays heap-only and the page is
//! pruned in place. Existing pages keep their layout until they are rewritten; new pages
//! follow the setting.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::set_fillfactor(m, "usage_rollups", Some(50)).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::set_fillfactor(m, "usage_rollups", None).await
    }
}

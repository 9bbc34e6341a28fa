//! Indexes for the dashboard's key lists at scale: a consumer's or an API's keys newest first
//! read in index order (no scan of the team's other keys), and a narrow index the key search
//! reads instead of the table (start, name and the filters beside the id).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Keys {
    Table,
    TenantId,
    ConsumerId,
    ApiId,
    Id,
    IsRoot,
    Start,
    Name,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, cols) in [
            ("keys_tenant_consumer_id", vec![Keys::TenantId, Keys::ConsumerId, Keys::Id]),
            ("keys_tenant_api_id", vec![Keys::TenantId, Keys::ApiId, Keys::Id]),
            ("keys_tenant_search", vec![Keys::TenantId, Keys::Id, Keys::IsRoot, Keys::ApiId, Keys::Start, Keys::Name]),
        ] {
            let mut idx = Index::create().name(name).table(Keys::Table).to_owned();
            for c in cols {
                idx.col(c);
            }
            m.create_index(idx).await?;
        }
        // The new ones begin with the same columns.
        for old in ["keys_tenant_consumer", "keys_tenant_api"] {
            m.drop_index(Index::drop().name(old).table(Keys::Table).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, col) in [("keys_tenant_consumer", Keys::ConsumerId), ("keys_tenant_api", Keys::ApiId)] {
            m.create_index(Index::create().name(name).table(Keys::Table).col(Keys::TenantId).col(col).to_owned())
                .await?;
        }
        for name in ["keys_tenant_consumer_id", "keys_tenant_api_id", "keys_tenant_search"] {
            m.drop_index(Index::drop().name(name).table(Keys::Table).to_owned()).await?;
        }
        Ok(())
    }
}

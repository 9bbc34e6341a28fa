//! The invalidation log: every change that makes cached key records stale appends the hashes
//! to drop (and those of the keys it created, which other nodes may hold a cached miss for), in
//! its own transaction. Nodes tail it, so an invalidation lost on the Redis bus
//! costs a poll interval, and replay it after any interruption of Redis. `seq` only grows
//! (SQLite `AUTOINCREMENT` never reuses a pruned number); `created_ms` is the database's clock
//! when the row was written, in Unix milliseconds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let table = if m.get_database_backend() == sea_orm::DbBackend::Postgres {
            "CREATE TABLE invalidations (seq BIGSERIAL PRIMARY KEY, hashes TEXT NOT NULL, created TEXT NOT NULL, \
             created_ms BIGINT NOT NULL)"
        } else {
            "CREATE TABLE invalidations (seq INTEGER PRIMARY KEY AUTOINCREMENT, hashes TEXT NOT NULL, \
             created TEXT NOT NULL, created_ms BIGINT NOT NULL)"
        };
        let db = m.get_connection();
        db.execute_unprepared(table).await?;
        db.execute_unprepared("CREATE INDEX invalidations_created_ms ON invalidations (created_ms)").await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection().execute_unprepared("DROP TABLE invalidations").await?;
        Ok(())
    }
}

//! Schema migrations for Keyroll. They run on SQLite and PostgreSQL alike, at server start-up
//! and with `cargo run -p migration -- up|down|status`.

pub use sea_orm_migration::prelude::*;

mod m20261130_000001_initial;
mod m20261130_000002_rotations;
mod m20261130_000003_jobs;
mod m20261130_000004_notifications;
mod m20261130_000005_policies;
mod m20261130_000006_keys_fillfactor;
mod m20261130_000007_endpoint_secrets;
mod m20261130_000008_sessions;
mod m20261130_000009_totp;
mod m20261130_000010_audit;
mod m20261130_000011_leak_policy;
mod m20261130_000012_keys_fillfactor_half;
mod m20261130_000013_playbooks;
mod m20261130_000014_key_credits;
mod m20261130_000015_usage_marks;
mod m20261130_000016_alerts;
mod m20261201_000017_invalidations;
mod m20261205_000018_reveals;
mod m20261205_000019_signup_links;
mod m20261205_000020_recovery_codes;
mod m20261205_000021_key_list_indexes;
mod m20261205_000022_tokens_portal;
mod m20261206_000023_billing;
mod m20261206_000024_consumer_billing;
mod m20261206_000025_api_gateway;
mod m20261206_000026_key_import;
mod m20261206_000027_credit_revisions;
mod m20261207_000028_usage_rollups_fillfactor;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_initial::Migration),
            Box::new(m20261130_000002_rotations::Migration),
            Box::new(m20261130_000003_jobs::Migration),
            Box::new(m20261130_000004_notifications::Migration),
            Box::new(m20261130_000005_policies::Migration),
            Box::new(m20261130_000006_keys_fillfactor::Migration),
            Box::new(m20261130_000007_endpoint_secrets::Migration),
            Box::new(m20261130_000008_sessions::Migration),
            Box::new(m20261130_000009_totp::Migration),
            Box::new(m20261130_000010_audit::Migration),
            Box::new(m20261130_000011_leak_policy::Migration),
            Box::new(m20261130_000012_keys_fillfactor_half::Migration),
            Box::new(m20261130_000013_playbooks::Migration),
            Box::new(m20261130_000014_key_credits::Migration),
            Box::new(m20261130_000015_usage_marks::Migration),
            Box::new(m20261130_000016_alerts::Migration),
            Box::new(m20261201_000017_invalidations::Migration),
            Box::new(m20261205_000018_reveals::Migration),
            Box::new(m20261205_000019_signup_links::Migration),
            Box::new(m20261205_000020_recovery_codes::Migration),
            Box::new(m20261205_000021_key_list_indexes::Migration),
            Box::new(m20261205_000022_tokens_portal::Migration),
            Box::new(m20261206_000023_billing::Migration),
            Box::new(m20261206_000024_consumer_billing::Migration),
            Box::new(m20261206_000025_api_gateway::Migration),
            Box::new(m20261206_000026_key_import::Migration),
            Box::new(m20261206_000027_credit_revisions::Migration),
            Box::new(m20261207_000028_usage_rollups_fillfactor::Migration),
        ]
    }
}

/// Sets how full PostgreSQL fills the pages of `table` (`None`: its default). SQLite has no
/// such setting, and nothing is done there.
async fn set_fillfactor(m: &SchemaManager<'_>, table: &str, percent: Option<u8>) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let sql = match percent {
        Some(p) => format!("ALTER TABLE {table} SET (fillfactor = {p})"),
        None => format!("ALTER TABLE {table} RESET (fillfactor)"),
    };
    m.get_connection().execute_unprepared(&sql).await.map(|_| ())
}

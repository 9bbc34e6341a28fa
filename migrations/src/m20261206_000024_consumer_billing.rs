//! Providers billing their own consumers through their own Stripe account.
//!
//! - `stripe_connections`: a tenant's own Stripe restricted key, sealed with the master key,
//!   with a hint to recognise it by, and the last refusal from Stripe when reporting failed.
//! - `consumers.stripe_customer_id`: the provider's Stripe customer for the consumer.
//! - `apis.stripe_meter_event`: the meter event an API's verifications are reported to; an API
//!   without one is not reported.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string, string_null, text, timestamp_with_time_zone, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StripeConnections {
    Table,
    TenantId,
    SealedKey,
    KeyHint,
    ConnectedBy,
    ConnectedAt,
    LastError,
    LastErrorAt,
}

#[derive(DeriveIden)]
enum Consumers {
    Table,
    StripeCustomerId,
}

#[derive(DeriveIden)]
enum Apis {
    Table,
    StripeMeterEvent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(StripeConnections::Table)
                .col(string(StripeConnections::TenantId).primary_key())
                .col(text(StripeConnections::SealedKey))
                .col(string(StripeConnections::KeyHint))
                .col(string(StripeConnections::ConnectedBy))
                .col(timestamp_with_time_zone(StripeConnections::ConnectedAt))
                .col(string_null(StripeConnections::LastError))
                .col(timestamp_with_time_zone_null(StripeConnections::LastErrorAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(StripeConnections::Table, StripeConnections::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter().table(Consumers::Table).add_column(string_null(Consumers::StripeCustomerId)).to_owned(),
        )
        .await?;
        m.alter_table(Table::alter().table(Apis::Table).add_column(string_null(Apis::StripeMeterEvent)).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table(Apis::Table).drop_column(Apis::StripeMeterEvent).to_owned()).await?;
        m.alter_table(Table::alter().table(Consumers::Table).drop_column(Consumers::StripeCustomerId).to_owned())
            .await?;
        m.drop_table(Table::drop().table(StripeConnections::Table).to_owned()).await
    }
}

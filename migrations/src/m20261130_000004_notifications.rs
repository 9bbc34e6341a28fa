//! Notifications: webhook endpoints, the event log, and the outbox of deliveries (webhooks and
//! emails), written in the same transaction as the change that caused them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    boolean, integer, integer_null, json_binary, string, string_null, text_null, timestamp_with_time_zone,
    timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEndpoints {
    Table,
    Id,
    TenantId,
    ConsumerId,
    Url,
    Secret,
    EventTypes,
    Enabled,
    Failures,
    DisabledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    TenantId,
    Type,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    TenantId,
    EventId,
    Channel,
    EndpointId,
    Recipient,
    State,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastStatus,
    LastError,
    DeliveredAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(WebhookEndpoints::Table)
                .col(string(WebhookEndpoints::Id).primary_key())
                .col(string(WebhookEndpoints::TenantId))
                .col(string_null(WebhookEndpoints::ConsumerId))
                .col(string(WebhookEndpoints::Url))
                .col(string(WebhookEndpoints::Secret))
                .col(json_binary(WebhookEndpoints::EventTypes))
                .col(boolean(WebhookEndpoints::Enabled))
                .col(integer(WebhookEndpoints::Failures))
                .col(timestamp_with_time_zone_null(WebhookEndpoints::DisabledAt))
                .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                .col(timestamp_with_time_zone(WebhookEndpoints::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("webhook_endpoints_tenant")
                .table(WebhookEndpoints::Table)
                .col(WebhookEndpoints::TenantId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Events::Table)
                .col(string(Events::Id).primary_key())
                .col(string(Events::TenantId))
                .col(string(Events::Type))
                .col(json_binary(Events::Payload))
                .col(timestamp_with_time_zone(Events::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("events_tenant_id")
                .table(Events::Table)
                .col(Events::TenantId)
                .col(Events::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Deliveries::Table)
                .col(string(Deliveries::Id).primary_key())
                .col(string(Deliveries::TenantId))
                .col(string(Deliveries::EventId))
                .col(string(Deliveries::Channel))
                .col(string_null(Deliveries::EndpointId))
                .col(string_null(Deliveries::Recipient))
                .col(string(Deliveries::State))
                .col(integer(Deliveries::Attempts))
                .col(timestamp_with_time_zone(Deliveries::NextAttemptAt))
                .col(timestamp_with_time_zone_null(Deliveries::LockedUntil))
                .col(integer_null(Deliveries::LastStatus))
                .col(text_null(Deliveries::LastError))
                .col(timestamp_with_time_zone_null(Deliveries::DeliveredAt))
                .col(timestamp_with_time_zone(Deliveries::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("deliveries_state_next")
                .table(Deliveries::Table)
                .col(Deliveries::State)
                .col(Deliveries::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("deliveries_event").table(Deliveries::Table).col(Deliveries::EventId).to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["deliveries", "events", "webhook_endpoints"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}

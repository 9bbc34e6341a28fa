//! Billing through Stripe.
//!
//! - `billing_accounts`: a tenant's Stripe customer and subscription as last read from Stripe
//!   (the newest object, whatever order the webhooks came in), when it fell past due, and which
//!   allowance notice (80 %, 100 %) it was sent in which period.
//! - `stripe_events`: the ids of the Stripe events handled, so a replayed event does nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    integer, string, string_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BillingAccounts {
    Table,
    TenantId,
    StripeCustomerId,
    SubscriptionId,
    SubscriptionStatus,
    PriceId,
    PeriodStart,
    PeriodEnd,
    PastDueSince,
    NoticePeriod,
    NoticeLevel,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    Type,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BillingAccounts::Table)
                .col(string(BillingAccounts::TenantId).primary_key())
                .col(string_null(BillingAccounts::StripeCustomerId))
                .col(string_null(BillingAccounts::SubscriptionId))
                .col(string(BillingAccounts::SubscriptionStatus))
                .col(string_null(BillingAccounts::PriceId))
                .col(timestamp_with_time_zone_null(BillingAccounts::PeriodStart))
                .col(timestamp_with_time_zone_null(BillingAccounts::PeriodEnd))
                .col(timestamp_with_time_zone_null(BillingAccounts::PastDueSince))
                .col(string_null(BillingAccounts::NoticePeriod))
                .col(integer(BillingAccounts::NoticeLevel))
                .col(timestamp_with_time_zone(BillingAccounts::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(BillingAccounts::Table, BillingAccounts::TenantId)
                        .to(Alias::new("tenants"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("billing_accounts_customer")
                .table(BillingAccounts::Table)
                .col(BillingAccounts::StripeCustomerId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(StripeEvents::Table)
                .col(string(StripeEvents::Id).primary_key())
                .col(string(StripeEvents::Type))
                .col(timestamp_with_time_zone(StripeEvents::ReceivedAt))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(StripeEvents::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(BillingAccounts::Table).to_owned()).await
    }
}

use sea_orm::entity::prelude::*;

/// A tenant's Stripe customer and subscription, as last read from Stripe.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "billing_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: String,
    pub stripe_customer_id: Option<String>,
    pub subscription_id: Option<String>,
    /// Stripe's subscription status (`active`, `past_due`, `canceled`, …), or `none`.
    pub subscription_status: String,
    pub price_id: Option<String>,
    pub period_start: Option<DateTimeUtc>,
    pub period_end: Option<DateTimeUtc>,
    pub past_due_since: Option<DateTimeUtc>,
    /// The period (its start, RFC 3339) of the last allowance notice, and its level (80, 100).
    pub notice_period: Option<String>,
    pub notice_level: i32,
    pub updated_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}

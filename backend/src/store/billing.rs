//! What a tenant holds against its plan's limits.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::StoreError;
use super::entities::{billing_account, key, membership, stripe_event, webhook_endpoint};
use crate::domain::TenantId;

/// Keys that are not revoked and have not expired (disabled ones too: they can be enabled
/// again), root keys aside.
///
/// # Errors
/// Database errors.
pub async fn active_keys(db: &impl ConnectionTrait, tenant: &TenantId, now: DateTime<Utc>) -> Result<u64, StoreError> {
    use sea_orm::Condition;
    Ok(key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::IsRoot.eq(false))
        .filter(key::Column::RevokedAt.is_null())
        .filter(Condition::any().add(key::Column::ExpiresAt.is_null()).add(key::Column::ExpiresAt.gt(now)))
        .filter(Condition::any().add(key::Column::GraceEndsAt.is_null()).add(key::Column::GraceEndsAt.gt(now)))
        .count(db)
        .await?)
}

/// The team's members.
///
/// # Errors
/// Database errors.
pub async fn members(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<u64, StoreError> {
    Ok(membership::Entity::find().filter(membership::Column::TenantId.eq(tenant.as_str())).count(db).await?)
}

/// The team's own webhook endpoints (its consumers' endpoints are theirs).
///
/// # Errors
/// Database errors.
pub async fn webhook_endpoints(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<u64, StoreError> {
    Ok(webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::TenantId.eq(tenant.as_str()))
        .filter(webhook_endpoint::Column::ConsumerId.is_null())
        .count(db)
        .await?)
}

/// The tenant's billing account, if it has one yet.
///
/// # Errors
/// Database errors.
pub async fn account(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Option<billing_account::Model>, StoreError> {
    Ok(billing_account::Entity::find_by_id(tenant.as_str()).one(db).await?)
}

/// The billing account of a Stripe customer.
///
/// # Errors
/// Database errors.
pub async fn account_of_customer(
    db: &impl ConnectionTrait,
    customer: &str,
) -> Result<Option<billing_account::Model>, StoreError> {
    Ok(billing_account::Entity::find().filter(billing_account::Column::StripeCustomerId.eq(customer)).one(db).await?)
}

/// Writes the account whole (made when missing).
///
/// # Errors
/// Database errors.
pub async fn put_account(db: &impl ConnectionTrait, a: billing_account::Model) -> Result<(), StoreError> {
    use sea_orm::sea_query::OnConflict;
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let am = a.into_active_model().reset_all();
    billing_account::Entity::insert(am)
        .on_conflict(
            OnConflict::column(billing_account::Column::TenantId)
                .update_columns([
                    billing_account::Column::StripeCustomerId,
                    billing_account::Column::SubscriptionId,
                    billing_account::Column::SubscriptionStatus,
                    billing_account::Column::PriceId,
                    billing_account::Column::PeriodStart,
                    billing_account::Column::PeriodEnd,
                    billing_account::Column::PastDueSince,
                    billing_account::Column::NoticePeriod,
                    billing_account::Column::NoticeLevel,
                    billing_account::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records a Stripe event as handled; `false` when it was handled before.
///
/// # Errors
/// Database errors.
pub async fn record_event(db: &impl ConnectionTrait, id: &str, type_: &str) -> Result<bool, StoreError> {
    use sea_orm::Set;
    use sea_orm::sea_query::OnConflict;
    let row = stripe_event::ActiveModel {
        id: Set(id.to_owned()),
        type_: Set(type_.to_owned()),
        received_at: Set(chrono::Utc::now()),
    };
    let n = stripe_event::Entity::insert(row)
        .on_conflict(OnConflict::column(stripe_event::Column::Id).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(n == 1)
}

/// Whether a Stripe event was handled before.
///
/// # Errors
/// Database errors.
pub async fn event_seen(db: &impl ConnectionTrait, id: &str) -> Result<bool, StoreError> {
    Ok(stripe_event::Entity::find_by_id(id).one(db).await?.is_some())
}

/// Every tenant with a Stripe customer: `(tenant id, customer id)`.
///
/// # Errors
/// Database errors.
pub async fn customers(db: &impl ConnectionTrait) -> Result<Vec<(String, String)>, StoreError> {
    use sea_orm::QuerySelect;
    let rows: Vec<(String, Option<String>)> = billing_account::Entity::find()
        .select_only()
        .columns([billing_account::Column::TenantId, billing_account::Column::StripeCustomerId])
        .filter(billing_account::Column::StripeCustomerId.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(t, c)| c.map(|c| (t, c))).collect())
}

//! Teams' own Stripe accounts, connected to bill their consumers, and what is reported to them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, Statement,
};

use super::StoreError;
use super::entities::{stripe_connection, usage_mark};
use crate::domain::TenantId;

/// The team's connection, if it has one.
///
/// # Errors
/// Database errors.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<Option<stripe_connection::Model>, StoreError> {
    Ok(stripe_connection::Entity::find_by_id(tenant.as_str()).one(db).await?)
}

/// Every connected team.
///
/// # Errors
/// Database errors.
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<stripe_connection::Model>, StoreError> {
    Ok(stripe_connection::Entity::find().all(db).await?)
}

/// Connects (or replaces the key of) a team's account; a past refusal is forgotten.
///
/// # Errors
/// Database errors.
pub async fn put(db: &impl ConnectionTrait, row: stripe_connection::Model) -> Result<(), StoreError> {
    stripe_connection::Entity::insert(row.into_active_model().reset_all())
        .on_conflict(
            OnConflict::column(stripe_connection::Column::TenantId)
                .update_columns([
                    stripe_connection::Column::SealedKey,
                    stripe_connection::Column::KeyHint,
                    stripe_connection::Column::ConnectedBy,
                    stripe_connection::Column::ConnectedAt,
                    stripe_connection::Column::LastError,
                    stripe_connection::Column::LastErrorAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Disconnects a team's account and forgets how far it was reported; `false` when none was
/// connected.
///
/// # Errors
/// Database errors.
pub async fn delete(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<bool, StoreError> {
    usage_mark::Entity::delete_by_id(mark_name(tenant.as_str())).exec(db).await?;
    Ok(stripe_connection::Entity::delete_by_id(tenant.as_str()).exec(db).await?.rows_affected == 1)
}

/// Records Stripe's last refusal (or clears it with `None`).
///
/// # Errors
/// Database errors.
pub async fn set_error(
    db: &impl ConnectionTrait,
    tenant: &str,
    error: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(row) = stripe_connection::Entity::find_by_id(tenant).one(db).await? else { return Ok(()) };
    let mut am = row.into_active_model();
    am.last_error_at = Set(error.as_ref().map(|_| at));
    am.last_error = Set(error);
    am.update(db).await?;
    Ok(())
}

/// The usage mark of a team's consumer reporting.
#[must_use]
pub fn mark_name(tenant: &str) -> String {
    format!("consumer_meter:{tenant}")
}

/// One consumer's successful verifications of one API in a span, with where they are billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerUsage {
    pub api_id: String,
    pub event_name: String,
    pub consumer_id: String,
    pub customer: String,
    pub count: u64,
}

/// The team's successful verifications in `[from, to)` per API with a meter event and consumer
/// with a Stripe customer, added up over whichever rollups cover the span.
///
/// # Errors
/// Database errors.
pub async fn consumer_usage(
    db: &impl ConnectionTrait,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ConsumerUsage>, StoreError> {
    let backend = db.get_database_backend();
    let text = "SELECT k.api_id, a.stripe_meter_event, k.consumer_id, c.stripe_customer_id, \
                CAST(SUM(u.count) AS BIGINT) AS n \
                FROM usage_rollups u JOIN keys k ON k.id = u.key_id JOIN apis a ON a.id = k.api_id \
                JOIN consumers c ON c.id = k.consumer_id \
                WHERE u.tenant_id = ? AND u.granularity = ? AND u.bucket_start >= ? AND u.bucket_start < ? \
                AND u.code = 'VALID' AND a.stripe_meter_event IS NOT NULL AND c.stripe_customer_id IS NOT NULL \
                GROUP BY k.api_id, a.stripe_meter_event, k.consumer_id, c.stripe_customer_id";
    let mut totals: std::collections::BTreeMap<(String, String, String, String), u64> = Default::default();
    for (g, start, end) in super::usage::spans(db, from, to).await? {
        let stmt = Statement::from_sql_and_values(
            backend,
            super::sql(backend, text),
            [tenant.into(), g.into(), start.into(), end.into()],
        );
        for row in db.query_all_raw(stmt).await? {
            let key = (
                row.try_get::<String>("", "api_id")?,
                row.try_get::<String>("", "stripe_meter_event")?,
                row.try_get::<String>("", "consumer_id")?,
                row.try_get::<String>("", "stripe_customer_id")?,
            );
            let n = u64::try_from(row.try_get::<Option<i64>>("", "n")?.unwrap_or(0)).unwrap_or(0);
            *totals.entry(key).or_insert(0) += n;
        }
    }
    Ok(totals
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((api_id, event_name, consumer_id, customer), count)| ConsumerUsage {
            api_id,
            event_name,
            consumer_id,
            customer,
            count,
        })
        .collect())
}

/// How far each of these teams' consumer reporting has got, for those that have a mark.
///
/// # Errors
/// Database errors.
pub async fn marks(
    db: &impl ConnectionTrait,
    tenants: &[String],
) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StoreError> {
    let names: Vec<String> = tenants.iter().map(|t| mark_name(t)).collect();
    let rows = usage_mark::Entity::find().filter(usage_mark::Column::Granularity.is_in(names)).all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|m| m.granularity.strip_prefix("consumer_meter:").map(|t| (t.to_owned(), m.rolled_until)))
        .collect())
}

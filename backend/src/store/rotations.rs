//! Rotation records and the lineage queries rotation needs.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::StoreError;
use super::entities::{key, rotation};
use super::page::{Cursor, Page, paginate};
use crate::domain::rotation::RotationState;
use crate::domain::{KeyId, RotationId, TenantId};

/// Every version of a lineage, oldest first.
///
/// # Errors
/// Database errors.
pub async fn lineage(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    lineage_id: &str,
) -> Result<Vec<key::Model>, StoreError> {
    Ok(key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::LineageId.eq(lineage_id))
        .order_by_asc(key::Column::Version)
        .all(db)
        .await?)
}

/// Inserts a rotation record.
///
/// # Errors
/// Database errors.
pub async fn insert(db: &impl ConnectionTrait, model: rotation::Model) -> Result<rotation::Model, StoreError> {
    Ok(model.into_active_model().reset_all().insert(db).await?)
}

/// A new in-progress record.
#[must_use]
#[expect(clippy::too_many_arguments, reason = "one column each; a builder would only rename them")]
pub fn new_record(
    tenant: &TenantId,
    lineage_id: &str,
    from: &str,
    to: &str,
    trigger: &str,
    actor: Option<String>,
    retire_mode: &str,
    compromise: bool,
    grace_ends_at: DateTime<Utc>,
) -> rotation::Model {
    let now = Utc::now();
    rotation::Model {
        id: RotationId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        lineage_id: lineage_id.to_owned(),
        from_key_id: from.to_owned(),
        to_key_id: to.to_owned(),
        trigger: trigger.to_owned(),
        actor,
        retire_mode: retire_mode.to_owned(),
        compromise,
        state: RotationState::InProgress.as_str().to_owned(),
        reason: None,
        started_at: now,
        grace_ends_at,
        ended_at: None,
        updated_at: now,
    }
}

/// One rotation of the tenant.
///
/// # Errors
/// `NotFound`.
pub async fn get(db: &impl ConnectionTrait, tenant: &TenantId, id: &RotationId) -> Result<rotation::Model, StoreError> {
    rotation::Entity::find_by_id(id.as_str())
        .filter(rotation::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// A page of rotations, newest first, optionally in one state.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    state: Option<RotationState>,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<rotation::Model>, StoreError> {
    let mut q = rotation::Entity::find().filter(rotation::Column::TenantId.eq(tenant.as_str()));
    if let Some(s) = state {
        q = q.filter(rotation::Column::State.eq(s.as_str()));
    }
    if let Some(c) = cursor {
        q = q.filter(rotation::Column::Id.lt(c.after_id.as_str()));
    }
    let rows = q.order_by_desc(rotation::Column::Id).limit(limit + 1).all(db).await?;
    Ok(paginate(rows, limit, |r| &r.id))
}

/// The in-progress rotations whose old version is `key_id`.
///
/// # Errors
/// Database errors.
pub async fn open_from(db: &impl ConnectionTrait, key_id: &str) -> Result<Vec<rotation::Model>, StoreError> {
    Ok(rotation::Entity::find()
        .filter(rotation::Column::FromKeyId.eq(key_id))
        .filter(rotation::Column::State.eq(RotationState::InProgress.as_str()))
        .all(db)
        .await?)
}

/// The in-progress rotation that involves `key_id` as old or new version, if any.
///
/// # Errors
/// Database errors.
pub async fn open_involving(db: &impl ConnectionTrait, key_id: &KeyId) -> Result<Option<rotation::Model>, StoreError> {
    Ok(rotation::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(rotation::Column::FromKeyId.eq(key_id.as_str()))
                .add(rotation::Column::ToKeyId.eq(key_id.as_str())),
        )
        .filter(rotation::Column::State.eq(RotationState::InProgress.as_str()))
        .order_by_desc(rotation::Column::Id)
        .one(db)
        .await?)
}

/// Moves a record to `state` (and its end of grace, when given).
///
/// # Errors
/// Database errors.
pub async fn set_state(
    db: &impl ConnectionTrait,
    current: rotation::Model,
    state: RotationState,
    grace_ends_at: Option<DateTime<Utc>>,
    reason: Option<String>,
) -> Result<rotation::Model, StoreError> {
    let now = Utc::now();
    let mut am = current.into_active_model();
    am.state = Set(state.as_str().to_owned());
    if let Some(g) = grace_ends_at {
        am.grace_ends_at = Set(g);
    }
    if state != RotationState::InProgress {
        am.ended_at = Set(Some(now));
    }
    if reason.is_some() {
        am.reason = Set(reason);
    }
    am.updated_at = Set(now);
    Ok(am.update(db).await?)
}

/// Sets a key's rotation timestamps.
///
/// # Errors
/// Database errors.
pub async fn set_key_grace(
    db: &impl ConnectionTrait,
    key_id: &str,
    superseded_at: Option<DateTime<Utc>>,
    grace_ends_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    key::Entity::update_many()
        .col_expr(key::Column::SupersededAt, Expr::value(superseded_at))
        .col_expr(key::Column::GraceEndsAt, Expr::value(grace_ends_at))
        .col_expr(key::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(key::Column::Id.eq(key_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Verifications of `key_id` with code VALID since `since`: minute buckets up to the first whole
/// hour, then hour rollups where they exist and minutes after them (each count once).
///
/// # Errors
/// Database errors.
pub async fn valid_uses_since(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    key_id: &str,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    use chrono::DurationRound;

    use super::usage::{Scope, counts};
    let now = Utc::now() + chrono::TimeDelta::minutes(1);
    let minute = since.duration_trunc(chrono::TimeDelta::minutes(1)).unwrap_or(since);
    let hour = since.duration_trunc(chrono::TimeDelta::hours(1)).unwrap_or(since);
    let whole = if hour < minute { hour + chrono::TimeDelta::hours(1) } else { hour };
    let mut rows = counts(db, tenant, Scope::Key(key_id), "minute", minute, whole.min(now)).await?;
    if whole < now {
        rows.extend(counts(db, tenant, Scope::Key(key_id), "hour", whole, now).await?);
    }
    Ok(rows.iter().filter(|(_, code, _)| code == "VALID").map(|(_, _, n)| n).sum())
}

/// Every rotation of a lineage, newest first.
///
/// # Errors
/// Database errors.
pub async fn of_lineage(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    lineage_id: &str,
) -> Result<Vec<rotation::Model>, StoreError> {
    Ok(rotation::Entity::find()
        .filter(rotation::Column::TenantId.eq(tenant.as_str()))
        .filter(rotation::Column::LineageId.eq(lineage_id))
        .order_by_desc(rotation::Column::Id)
        .all(db)
        .await?)
}

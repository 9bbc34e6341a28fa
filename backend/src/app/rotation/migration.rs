//! The migration view: how traffic moves from old versions to new ones over time, per rotation
//! and per API, and the stragglers — rotations whose old version still gets traffic close to its
//! deadline. A rotation the drain rule of the retirement sweep ([`super::retire::drained`]) would
//! retire is never a straggler: both read the same signals.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::domain::TenantId;
use crate::domain::rotation::RotationState;
use crate::store::entities::{consumer, key, rotation};
use crate::store::usage::{self, Scope};
use crate::store::{StoreError, rotations};

/// One bucket of a migration.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Point {
    pub bucket_start: String,
    /// Successful verifications of old versions.
    pub old: i64,
    /// Successful verifications of new versions.
    pub new: i64,
}

/// A range in buckets of one size.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub granularity: &'a str,
    pub step: TimeDelta,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window<'static> {
    /// From `since` (rounded down to a bucket) to `now`, in buckets that fit the span: minutes
    /// up to three hours, hours up to 31 days, days beyond.
    #[must_use]
    pub fn since(since: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let span = now - since;
        let granularity = if span <= TimeDelta::hours(3) {
            "minute"
        } else if span <= TimeDelta::days(31) {
            "hour"
        } else {
            "day"
        };
        let step = usage::step_of(granularity);
        Self { granularity, step, from: since.duration_trunc(step).unwrap_or(since), to: now }
    }
}

/// Successful verifications of `old_ids` and `new_ids` by bucket, every bucket of the range
/// (empty ones as zeros), oldest first.
///
/// # Errors
/// Database errors.
pub async fn series(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    old_ids: &[String],
    new_ids: &[String],
    w: Window<'_>,
) -> Result<Vec<Point>, StoreError> {
    let Window { granularity, step, from, to } = w;
    let mut buckets: BTreeMap<DateTime<Utc>, (i64, i64)> = BTreeMap::new();
    let mut at = from.duration_trunc(step).unwrap_or(from);
    while at < to {
        buckets.insert(at, (0, 0));
        at += step;
    }
    for (ids, new) in [(old_ids, false), (new_ids, true)] {
        for chunk in ids.chunks(300) {
            for (t, code, n) in usage::counts(db, tenant, Scope::Keys(chunk), granularity, from, to).await? {
                if code != "VALID" {
                    continue;
                }
                let cell = buckets.entry(t.duration_trunc(step).unwrap_or(t)).or_default();
                if new {
                    cell.1 += n;
                } else {
                    cell.0 += n;
                }
            }
        }
    }
    Ok(buckets.into_iter().map(|(t, (old, new))| Point { bucket_start: crate::time::rfc3339(t), old, new }).collect())
}

/// The share of new-version traffic over a series, when there was any.
#[must_use]
pub fn new_share(points: &[Point]) -> Option<f64> {
    let (old, new) = points.iter().fold((0, 0), |(o, n), p| (o + p.old, n + p.new));
    #[expect(clippy::cast_precision_loss, reason = "a share for display")]
    ((old + new) > 0).then(|| new as f64 / (old + new) as f64)
}

/// A rotation whose old version is still used close to its deadline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Straggler {
    pub rotation_id: String,
    pub lineage_id: String,
    pub consumer_id: Option<String>,
    pub consumer_external_id: Option<String>,
    pub consumer_name: Option<String>,
    pub old_key_id: String,
    pub old_version: i32,
    pub new_version: i32,
    pub grace_ends_at: DateTime<Utc>,
    /// Seconds until the old version stops working.
    pub seconds_left: i64,
    pub old_last_used_at: Option<DateTime<Utc>>,
    pub new_last_used_at: Option<DateTime<Utc>>,
    /// Successful verifications of the old version in the last hour.
    pub old_uses_last_hour: i64,
}

/// The rotations of an API that matter to a range: in progress, or ended within it. At most
/// 1 000, newest first.
///
/// # Errors
/// Database errors.
pub async fn rotations_of_api(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    api_id: &str,
    from: DateTime<Utc>,
) -> Result<Vec<rotation::Model>, StoreError> {
    let rows = rotation::Entity::find()
        .filter(rotation::Column::TenantId.eq(tenant.as_str()))
        .filter(rotation::Column::State.eq(RotationState::InProgress.as_str()).or(rotation::Column::EndedAt.gte(from)))
        // Correlated: the few rotations in the window are checked against their key, rather than
        // the API's keys (thousands) gathered first.
        .filter(sea_orm::sea_query::Expr::exists(
            sea_orm::sea_query::Query::select()
                .expr(sea_orm::sea_query::Expr::val(1))
                .from(key::Entity)
                .and_where(
                    sea_orm::sea_query::Expr::col((key::Entity, key::Column::Id))
                        .equals((rotation::Entity, rotation::Column::ToKeyId)),
                )
                .and_where(key::Column::ApiId.eq(api_id))
                .to_owned(),
        ))
        .order_by_desc(rotation::Column::StartedAt)
        .limit(1_000)
        .all(db)
        .await?;
    Ok(rows)
}

/// The stragglers among `open` rotations: old version used within the quiet period, deadline
/// within `horizon`, and not drained (by the retirement's own settings). Soonest deadline first.
///
/// # Errors
/// Database errors.
pub async fn stragglers(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    open: &[rotation::Model],
    now: DateTime<Utc>,
    horizon: TimeDelta,
    settings: &crate::config::RotationSettings,
) -> Result<Vec<Straggler>, StoreError> {
    let (quiet, min_overlap) = (settings.quiet(), settings.min_overlap());
    let open: Vec<&rotation::Model> = open
        .iter()
        .filter(|r| super::effective_state(r, now) == RotationState::InProgress && r.grace_ends_at <= now + horizon)
        .collect();
    let mut ids: Vec<String> = open.iter().flat_map(|r| [r.from_key_id.clone(), r.to_key_id.clone()]).collect();
    ids.dedup();
    let mut versions = std::collections::HashMap::new();
    for chunk in ids.chunks(300) {
        for k in key::Entity::find()
            .filter(key::Column::TenantId.eq(tenant.as_str()))
            .filter(key::Column::Id.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
        {
            versions.insert(k.id.clone(), k);
        }
    }
    let mut out = Vec::new();
    for r in open {
        let (Some(old), Some(new)) = (versions.get(&r.from_key_id), versions.get(&r.to_key_id)) else { continue };
        let recently = old.last_used_at.is_some_and(|t| t > now - quiet);
        if !recently
            || super::retire::drained(now, r.started_at, old.last_used_at, new.last_used_at, quiet, min_overlap)
        {
            continue;
        }
        let hour = rotations::valid_uses_since(db, tenant, &old.id, now - TimeDelta::hours(1)).await?;
        let c = match &old.consumer_id {
            Some(id) => consumer::Entity::find_by_id(id.as_str()).one(db).await?,
            None => None,
        };
        out.push(Straggler {
            rotation_id: r.id.clone(),
            lineage_id: r.lineage_id.clone(),
            consumer_id: old.consumer_id.clone(),
            consumer_external_id: c.as_ref().map(|c| c.external_id.clone()),
            consumer_name: c.map(|c| c.name),
            old_key_id: old.id.clone(),
            old_version: old.version,
            new_version: new.version,
            grace_ends_at: r.grace_ends_at,
            seconds_left: Ord::max((r.grace_ends_at - now).num_seconds(), 0),
            old_last_used_at: old.last_used_at,
            new_last_used_at: new.last_used_at,
            old_uses_last_hour: hour,
        });
    }
    out.sort_by_key(|s| s.seconds_left);
    Ok(out)
}

//! Rotation policies per API, with per-consumer overrides.

use chrono::{TimeDelta, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::policy::Schedule;
use crate::domain::rotation::{Handoff, RetireMode};
use crate::domain::{ApiId, ConsumerId, PolicyId, TenantId};
use crate::store::entities::rotation_policy;
use crate::store::{StoreError, apis, consumers, policies};

const DAY: i64 = 86_400;

/// `POST /v1/policies` (and, all optional, `PATCH`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub api_id: Option<String>,
    /// Set for a consumer's override of the API's policy.
    pub consumer_id: Option<String>,
    /// Rotate every N days (1–3650) …
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    #[schema(value_type = Option<i64>)]
    pub interval_days: Option<Option<i64>>,
    /// … or at each occurrence of a cron expression (UTC).
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    #[schema(value_type = Option<String>)]
    pub cron: Option<Option<String>>,
    /// With `cron`: how long after an occurrence a rotation may still start (default 3600).
    pub window_seconds: Option<i64>,
    /// Overlap of old and new version (default 86400; at least 1800 and shorter than the period).
    pub overlap_seconds: Option<i64>,
    /// Advance notices before each rotation (default `[1209600, 86400]`: 14 days and 1 day).
    pub notice_seconds: Option<Vec<i64>>,
    /// `at_deadline` (default) or `when_drained`.
    pub retire_mode: Option<String>,
    /// Versions of one lineage valid at once (1–10, default 2).
    pub max_active: Option<i32>,
    /// At `max_active`: `end_oldest` (default) or `refuse`.
    pub on_full: Option<String>,
    /// How the consumer gets the new key: `pickup` (the default: fetched with the current key,
    /// `POST /v1/self/pickup`) or `webhook` (in the `rotation.started` webhook to the consumer's
    /// own endpoints; fetched as with `pickup` until one of them accepts it).
    pub delivery: Option<String>,
    pub enabled: Option<bool>,
}

/// A policy with the defaults, before a body is applied.
pub fn new_policy(tenant: &TenantId, api_id: String, consumer_id: Option<String>) -> rotation_policy::Model {
    let now = Utc::now();
    rotation_policy::Model {
        id: PolicyId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        api_id,
        consumer_id,
        interval_days: None,
        cron: None,
        window_seconds: 3_600,
        overlap_seconds: DAY,
        notice_seconds: serde_json::json!([14 * DAY, DAY]),
        retire_mode: "at_deadline".into(),
        max_active: 2,
        on_full: "end_oldest".into(),
        delivery: "pickup".into(),
        enabled: true,
        created_at: now,
        updated_at: now,
    }
}

/// Applies a body onto a policy and checks the result as a whole.
pub fn apply(p: &mut rotation_policy::Model, b: &PolicyBody, master_key: bool) -> Result<(), ServiceError> {
    let mut c = Checks::default();
    if let Some(v) = b.interval_days {
        p.interval_days = v;
    }
    if let Some(v) = &b.cron {
        p.cron.clone_from(v);
    }
    if let Some(v) = b.window_seconds {
        if (0..=7 * DAY).contains(&v) {
            p.window_seconds = v
        } else {
            c.push("window_seconds", "must be between 0 and 604800")
        }
    }
    if let Some(v) = b.overlap_seconds {
        p.overlap_seconds = v;
    }
    if let Some(v) = &b.notice_seconds {
        if v.len() > 10 {
            c.push("notice_seconds", "must have at most 10 lead times");
        }
        for (i, s) in v.iter().enumerate() {
            if !(60..=365 * DAY).contains(s) {
                c.push(format!("notice_seconds[{i}]"), "must be between 60 and 31536000");
            }
        }
        p.notice_seconds = serde_json::json!(v);
    }
    if let Some(v) = &b.retire_mode {
        if RetireMode::parse(v).is_some() {
            p.retire_mode.clone_from(v)
        } else {
            c.push("retire_mode", "must be at_deadline or when_drained")
        }
    }
    if let Some(v) = b.max_active {
        if (1..=10).contains(&v) { p.max_active = v } else { c.push("max_active", "must be between 1 and 10") }
    }
    if let Some(v) = &b.on_full {
        if matches!(v.as_str(), "end_oldest" | "refuse") {
            p.on_full.clone_from(v)
        } else {
            c.push("on_full", "must be end_oldest or refuse")
        }
    }
    if let Some(v) = &b.delivery {
        if Handoff::parse(v).is_some() {
            p.delivery.clone_from(v)
        } else {
            c.push("delivery", "must be pickup or webhook")
        }
    }
    if !master_key {
        c.push("delivery", "keeping new keys for consumers needs KEYROLL_MASTER_KEY on every node");
    }
    if let Some(v) = b.enabled {
        p.enabled = v;
    }
    match Schedule::parse(p.interval_days, p.cron.as_deref(), TimeDelta::seconds(p.window_seconds)) {
        Ok(s) => {
            let period = s.period(Utc::now()).map_or(i64::MAX, |d| d.num_seconds());
            if p.overlap_seconds < 1_800 || p.overlap_seconds >= period {
                c.push("overlap_seconds", "must be at least 1800 and shorter than the time between rotations");
            }
        }
        Err(e) => {
            let field = if p.cron.is_some() && p.interval_days.is_none() { "cron" } else { "interval_days" };
            c.push(field, e.to_string());
        }
    }
    c.finish()
}

fn parse_id(s: &str) -> Result<PolicyId, ServiceError> {
    PolicyId::parse(s).map_err(|_| ServiceError::NotFound("no such policy"))
}

fn audited(p: &rotation_policy::Model) -> serde_json::Value {
    serde_json::json!({
        "api_id": p.api_id, "consumer_id": p.consumer_id, "interval_days": p.interval_days, "cron": p.cron,
        "window_seconds": p.window_seconds, "overlap_seconds": p.overlap_seconds, "notice_seconds": p.notice_seconds,
        "retire_mode": p.retire_mode, "max_active": p.max_active, "on_full": p.on_full, "delivery": p.delivery,
        "enabled": p.enabled,
    })
}

fn scope_of(p: &rotation_policy::Model) -> String {
    p.consumer_id.as_ref().map_or_else(|| format!("API {}", p.api_id), |c| format!("consumer {c} of API {}", p.api_id))
}

/// Creates a rotation policy for an API, or a consumer's override of it.
///
/// # Errors
/// `Invalid` naming every bad field, `NotFound` for an API or consumer not of this tenant,
/// `Conflict` when the API or consumer has a policy already.
pub async fn create(ctx: &Ctx<'_>, b: &PolicyBody) -> Result<rotation_policy::Model, ServiceError> {
    ctx.require(Permission::PoliciesWrite)?;
    let api_id = b.api_id.as_deref().ok_or_else(|| ServiceError::field("api_id", "is required"))?;
    let api_id = ApiId::parse(api_id).map_err(|_| ServiceError::NotFound("api_id names no API of this tenant"))?;
    let api = match apis::get(ctx.db(), &ctx.tenant, &api_id).await {
        Err(StoreError::NotFound) => return Err(ServiceError::NotFound("api_id names no API of this tenant")),
        other => other?,
    };
    let consumer_id = match &b.consumer_id {
        Some(id) => {
            let missing = ServiceError::NotFound("consumer_id names no consumer of this tenant");
            let id = ConsumerId::parse(id).map_err(|_| ServiceError::NotFound("no such consumer"))?;
            match consumers::get(ctx.db(), &ctx.tenant, &id).await {
                Err(StoreError::NotFound) => return Err(missing),
                other => Some(other?.id),
            }
        }
        None => None,
    };
    let mut p = new_policy(&ctx.tenant, api.id, consumer_id);
    apply(&mut p, b, ctx.state.master_key.is_some())?;
    let policy_id = p.id.clone();
    commit(ctx, async |txn, change| {
        write_policy(txn, change, &ctx.tenant, None, Some(p)).await?;
        let id = PolicyId::from_trusted(policy_id);
        Ok(policies::get(txn, &ctx.tenant, &id).await?)
    })
    .await
}

/// Changes a rotation policy (its API and consumer stay).
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field.
pub async fn update(ctx: &Ctx<'_>, id: &str, b: &PolicyBody) -> Result<rotation_policy::Model, ServiceError> {
    ctx.require(Permission::PoliciesWrite)?;
    let id = parse_id(id)?;
    let mut p = policies::get(ctx.db(), &ctx.tenant, &id).await.map_err(not_found)?;
    if b.api_id.is_some() || b.consumer_id.is_some() {
        return Err(ServiceError::field("api_id", "cannot be changed; create another policy"));
    }
    apply(&mut p, b, ctx.state.master_key.is_some())?;
    commit(ctx, async |txn, change| {
        let before = policies::get(txn, &ctx.tenant, &id).await.map_err(not_found)?;
        write_policy(txn, change, &ctx.tenant, Some(before), Some(p)).await?;
        Ok(policies::get(txn, &ctx.tenant, &id).await?)
    })
    .await
}

/// Deletes a rotation policy: its keys are no longer rotated by it.
///
/// # Errors
/// `NotFound`.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<(), ServiceError> {
    ctx.require(Permission::PoliciesWrite)?;
    let id = parse_id(id)?;
    commit(ctx, async |txn, change| {
        let before = policies::get(txn, &ctx.tenant, &id).await.map_err(not_found)?;
        write_policy(txn, change, &ctx.tenant, Some(before), None).await
    })
    .await
}

/// What an API's settings do to the API's own rotation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Leave it as it is (or without one).
    Keep,
    /// No scheduled rotation: delete it.
    Remove,
    /// Rotate every `days` days with this overlap; its other settings stay (or take the defaults).
    Every { days: i64, overlap_seconds: i64 },
}

/// Whether two versions of a policy say the same.
#[must_use]
pub(super) fn same(a: &rotation_policy::Model, b: &rotation_policy::Model) -> bool {
    audited(a) == audited(b)
}

/// The API's own policy as `plan` makes it, checked: `None` to keep what there is, `Some(None)`
/// to delete it. Errors go into `c` as `policy.{field}`.
pub(super) fn plan_default(
    ctx: &Ctx<'_>,
    c: &mut Checks,
    api_id: &str,
    existing: Option<&rotation_policy::Model>,
    plan: DefaultPolicy,
) -> Option<Option<rotation_policy::Model>> {
    let DefaultPolicy::Every { days, overlap_seconds } = plan else {
        return (plan == DefaultPolicy::Remove).then_some(None);
    };
    let mut p = existing.cloned().unwrap_or_else(|| new_policy(&ctx.tenant, api_id.to_owned(), None));
    let body = PolicyBody {
        api_id: None,
        consumer_id: None,
        interval_days: Some(Some(days)),
        cron: Some(None),
        window_seconds: None,
        overlap_seconds: Some(overlap_seconds),
        notice_seconds: None,
        retire_mode: None,
        max_active: None,
        on_full: None,
        delivery: None,
        enabled: None,
    };
    if let Err(ServiceError::Invalid(errs)) = apply(&mut p, &body, ctx.state.master_key.is_some()) {
        for e in errs {
            c.push(format!("policy.{}", e.field), e.message);
        }
    }
    Some(Some(p))
}

/// Writes a policy change with its audit entry: `(None, Some)` creates, `(Some, Some)` saves,
/// `(Some, None)` deletes.
///
/// # Errors
/// Database errors.
pub(super) async fn write_policy(
    txn: &sea_orm::DatabaseTransaction,
    change: &mut super::commit::Change,
    tenant: &TenantId,
    existing: Option<rotation_policy::Model>,
    planned: Option<rotation_policy::Model>,
) -> Result<(), ServiceError> {
    match (existing, planned) {
        (Some(before), Some(p)) => {
            let saved = policies::save(txn, p).await?;
            change.audit(
                Entry::new(
                    "policy.updated",
                    "policy",
                    saved.id.clone(),
                    format!("Changed the rotation policy of the {}", scope_of(&saved)),
                )
                .change(audited(&before), audited(&saved)),
            );
        }
        (None, Some(p)) => {
            let saved = policies::insert(txn, p).await?;
            change.audit(
                Entry::new(
                    "policy.created",
                    "policy",
                    saved.id.clone(),
                    format!("Created a rotation policy for the {}", scope_of(&saved)),
                )
                .with(audited(&saved)),
            );
        }
        (Some(before), None) => {
            policies::delete(txn, tenant, &PolicyId::from_trusted(before.id.clone())).await?;
            change.audit(
                Entry::new(
                    "policy.deleted",
                    "policy",
                    before.id.clone(),
                    format!("Deleted the rotation policy of the {}", scope_of(&before)),
                )
                .with(serde_json::json!({ "before": audited(&before) })),
            );
        }
        (None, None) => {}
    }
    Ok(())
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such policy"),
        other => other.into(),
    }
}

//! The policy scheduler's work: for every enabled policy, send the advance notices that are due
//! (`key.expiring`, once per version and lead time) and rotate the versions that are due. The
//! new secret is sealed with the master key until the consumer fetches it or, with `webhook`
//! delivery, until one of the consumer's endpoints has accepted it.

use chrono::{TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::{Handoff, RotateRequest, policy_rules};
use crate::app::{Actor, Ctx, ServiceError, commit};
use crate::domain::policy::{Schedule, notices_due};
use crate::domain::rotation::{RetireMode, Trigger};
use crate::domain::{EventType, KeyId, TenantId};
use crate::notify;
use crate::state::AppState;
use crate::store::entities::{key, rotation_policy};
use crate::store::policies;

/// One pass over every enabled policy.
///
/// # Errors
/// Database errors.
pub async fn scan(state: &AppState) -> anyhow::Result<()> {
    for p in policies::enabled(&state.db).await? {
        if let Err(e) = scan_policy(state, &p).await {
            tracing::warn!(policy_id = %p.id, error = %e, "policy scan failed");
        }
    }
    Ok(())
}

fn schedule(p: &rotation_policy::Model) -> Option<Schedule> {
    Schedule::parse(p.interval_days, p.cron.as_deref(), TimeDelta::seconds(p.window_seconds)).ok()
}

/// When the rotation policy in force for this version will rotate it, if one does (an enabled
/// policy of its consumer, else of its API).
///
/// # Errors
/// Database errors.
pub async fn due_at(
    db: &impl sea_orm::ConnectionTrait,
    k: &key::Model,
) -> Result<Option<chrono::DateTime<Utc>>, crate::store::StoreError> {
    let policy = policies::effective(db, &k.api_id, k.consumer_id.as_deref()).await?;
    Ok(policy.filter(|p| p.enabled).as_ref().and_then(schedule).and_then(|s| s.next_due(k.created_at)))
}

async fn scan_policy(state: &AppState, p: &rotation_policy::Model) -> anyhow::Result<()> {
    let Some(schedule) = schedule(p) else { return Ok(()) };
    let now = Utc::now();
    let tenant = TenantId::from_trusted(p.tenant_id.clone());
    let mut q = key::Entity::find()
        .filter(key::Column::TenantId.eq(p.tenant_id.as_str()))
        .filter(key::Column::ApiId.eq(p.api_id.as_str()))
        .filter(key::Column::IsRoot.eq(false))
        .filter(crate::store::keys::current(now));
    match &p.consumer_id {
        Some(c) => q = q.filter(key::Column::ConsumerId.eq(c.as_str())),
        None => {
            let own = policies::overridden_consumers(&state.db, &p.api_id).await?;
            if !own.is_empty() {
                q = q.filter(key::Column::ConsumerId.is_not_in(own));
            }
        }
    }
    let leads: Vec<TimeDelta> = serde_json::from_value::<Vec<i64>>(p.notice_seconds.clone())
        .unwrap_or_default()
        .into_iter()
        .map(TimeDelta::seconds)
        .collect();
    for k in q.all(&state.db).await? {
        if let Some(due) = schedule.next_due(k.created_at) {
            for lead in notices_due(due, &leads, now) {
                notice(state, &tenant, p, &k, due, lead).await?;
            }
        }
        if schedule.due_now(k.created_at, now) {
            due(state, &tenant, p, &k, now).await?;
            rotate(state, &tenant, p, &k).await?;
        }
    }
    Ok(())
}

async fn notice(
    state: &AppState,
    tenant: &TenantId,
    p: &rotation_policy::Model,
    k: &key::Model,
    due: chrono::DateTime<Utc>,
    lead: TimeDelta,
) -> anyhow::Result<()> {
    let data = json!({
        "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id, "version": k.version,
        "consumer_id": k.consumer_id, "rotation_due_at": crate::time::rfc3339(due),
        "lead_seconds": lead.num_seconds(), "policy_id": p.id,
    });
    once(state, tenant, p, k, lead.num_seconds(), EventType::KeyExpiring, data).await
}

/// Tells the team, once per version, that its policy has a rotation due now — also when the
/// rotation cannot happen (no master key, a full lineage), which the event says.
async fn due(
    state: &AppState,
    tenant: &TenantId,
    p: &rotation_policy::Model,
    k: &key::Model,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let data = json!({
        "policy_id": p.id, "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id,
        "version": k.version, "api_id": k.api_id, "consumer_id": k.consumer_id,
        "rotation_due_at": crate::time::rfc3339(now), "delivery": p.delivery,
        "overlap_seconds": p.overlap_seconds, "rotating": state.master_key.is_some(),
    });
    once(state, tenant, p, k, crate::store::keys::DUE_NOTICE, EventType::PolicyRotationDue, data).await
}

/// Emits `kind` about `k`, as the policy, unless it was sent already for this version and
/// `lead` (the mark is written in the same change). `key.expiring` goes to the key's consumer
/// too, with the alert that lists it; `policy.rotation_due` to the team only.
async fn once(
    state: &AppState,
    tenant: &TenantId,
    p: &rotation_policy::Model,
    k: &key::Model,
    lead: i64,
    kind: EventType,
    data: serde_json::Value,
) -> anyhow::Result<()> {
    let ctx = Ctx::acting(state, tenant.clone(), Actor::Policy(p.id.clone()));
    commit(&ctx, async |txn, change| {
        if !policies::mark_notice(txn, &k.id, lead).await? {
            return Ok(());
        }
        let audience = if kind == EventType::KeyExpiring {
            // The notice is sent once per version and lead time anyway; the alert only lists it.
            crate::alerts::beside_notice(txn, tenant, kind.as_str(), &data).await?;
            notify::audience_of(txn, k.consumer_id.as_deref()).await?
        } else {
            notify::Audience::default()
        };
        change.emit(kind, data, &audience);
        Ok(())
    })
    .await?;
    Ok(())
}

async fn rotate(state: &AppState, tenant: &TenantId, p: &rotation_policy::Model, k: &key::Model) -> anyhow::Result<()> {
    let handoff = Handoff::parse(&p.delivery).unwrap_or(Handoff::Pickup);
    if state.master_key.is_none() {
        // Rotating now would make a secret nobody can ever be given.
        tracing::error!(key_id = %k.id, "no master key: a policy rotation is due but the new secret could not be kept");
        return Ok(());
    }
    let request = RotateRequest {
        overlap: TimeDelta::seconds(p.overlap_seconds),
        scopes: None,
        meta: None,
        retire_mode: RetireMode::parse(&p.retire_mode).unwrap_or(RetireMode::AtDeadline),
        trigger: Trigger::Policy,
        compromise: false,
        expires_at: None,
        rules: policy_rules(p),
        handoff: Some(handoff),
    };
    let ctx = Ctx::acting(state, tenant.clone(), Actor::Policy(p.id.clone()));
    match super::rotate(&ctx, &KeyId::from_trusted(k.id.clone()), false, request).await {
        Ok(_) => Ok(()),
        // Another node rotated it first, or the lineage is full and the policy says refuse.
        Err(e @ (ServiceError::Conflict(_) | ServiceError::Invalid(_) | ServiceError::NotFound(_))) => {
            tracing::info!(key_id = %k.id, reason = %e, "policy rotation skipped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

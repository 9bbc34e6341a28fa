//! Alerts: what staff do to them (acknowledge, resolve) and the tenant's anomaly thresholds.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::Value;

use super::{Ctx, FieldError, Permission, ServiceError, commit};
use crate::alerts::{emit_to_staff, title, view};
use crate::audit::Entry;
use crate::domain::anomaly::{SETTING, Thresholds};
use crate::domain::{AlertId, EventType};
use crate::store::StoreError;
use crate::store::entities::alert;

/// What staff do to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChange {
    /// Someone is on it (open alerts only).
    Acknowledge,
    /// Done; the next occurrence raises a new alert (announced as `alert.resolved`).
    Resolve,
}

/// Parses an alert id; a malformed one names no alert.
///
/// # Errors
/// `NotFound`.
pub fn alert_id(id: &str) -> Result<AlertId, ServiceError> {
    AlertId::parse(id).map_err(|_| ServiceError::NotFound("no such alert"))
}

/// Acknowledges or resolves an alert.
///
/// # Errors
/// `NotFound`; `Conflict` when the alert's state does not allow the change.
pub async fn change(ctx: &Ctx<'_>, id: &str, what: AlertChange) -> Result<alert::Model, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    let id = alert_id(id)?;
    let actor = ctx.actor_id();
    commit(ctx, async |txn, change| {
        let a = crate::store::alerts::get(txn, &ctx.tenant, &id).await.map_err(|e| match e {
            StoreError::NotFound => ServiceError::NotFound("no such alert"),
            other => other.into(),
        })?;
        let (state, action, verb) = match what {
            AlertChange::Acknowledge if a.state != "open" => {
                return Err(ServiceError::Conflict("only an open alert can be acknowledged".into()));
            }
            AlertChange::Resolve if a.state == "resolved" => {
                return Err(ServiceError::Conflict("the alert is already resolved".into()));
            }
            AlertChange::Acknowledge => ("acknowledged", "alert.acknowledged", "Acknowledged"),
            AlertChange::Resolve => ("resolved", "alert.resolved", "Resolved"),
        };
        let (now, by) = (Set(Some(Utc::now())), Set(Some(actor.clone())));
        let mut am = a.into_active_model();
        am.state = Set(state.to_owned());
        if what == AlertChange::Acknowledge {
            (am.acknowledged_at, am.acknowledged_by) = (now, by);
        } else {
            (am.resolved_at, am.resolved_by) = (now, by);
        }
        let saved = am.update(txn).await?;
        if what == AlertChange::Resolve {
            // To the team's endpoints and by email to its owners and admins.
            emit_to_staff(txn, &ctx.tenant, EventType::AlertResolved, view(&saved)).await?;
        }
        let summary = format!("{verb} the alert \"{}\" on {}", title(&saved), saved.subject_id);
        change.audit(Entry::new(action, "alert", saved.id.clone(), summary));
        Ok(saved)
    })
    .await
}

/// Checks a change of thresholds: every field named in the body, with its problem.
///
/// # Errors
/// The fields that are unknown, of the wrong type or out of bounds.
pub fn patched(current: Thresholds, body: &Value) -> Result<Thresholds, Vec<FieldError>> {
    let Some(changes) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be an object of thresholds")]);
    };
    let mut merged = serde_json::to_value(current).unwrap_or_default();
    let mut errors = Vec::new();
    for (k, v) in changes {
        let Some(slot) = merged.get_mut(k) else {
            errors.push(FieldError::new(k.clone(), "is not a threshold"));
            continue;
        };
        let mut alone = serde_json::to_value(current).unwrap_or_default();
        alone[k.as_str()] = v.clone();
        if serde_json::from_value::<Thresholds>(alone).is_err() {
            errors.push(FieldError::new(k.clone(), "must be a number of the threshold's kind"));
            continue;
        }
        *slot = v.clone();
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let t: Thresholds = serde_json::from_value(merged).map_err(|e| vec![FieldError::new("body", e.to_string())])?;
    let problems = t.problems();
    if problems.is_empty() { Ok(t) } else { Err(problems.into_iter().map(|(f, m)| FieldError::new(f, m)).collect()) }
}

/// Checks and saves a change of the tenant's thresholds (the API and the dashboard).
///
/// # Errors
/// `Invalid` naming every bad threshold.
pub async fn save_thresholds(ctx: &Ctx<'_>, body: &Value) -> Result<Thresholds, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    let current = crate::store::tenants::get(ctx.db(), &ctx.tenant).await?;
    let before = Thresholds::from_settings(&current.settings);
    let after = patched(before, body).map_err(ServiceError::Invalid)?;
    commit(ctx, async |txn, change| {
        let value = serde_json::to_value(after).unwrap_or_default();
        crate::store::tenants::set_setting(txn, &ctx.tenant, SETTING, value.clone()).await?;
        change.audit(
            Entry::new(
                "alert_thresholds.updated",
                "tenant",
                ctx.tenant.as_str().to_owned(),
                "Changed the anomaly alert thresholds".to_owned(),
            )
            .change(serde_json::to_value(before).unwrap_or_default(), value),
        );
        Ok(after)
    })
    .await
}

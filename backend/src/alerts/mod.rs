//! Alerts: raised by the anomaly detector ([`scan`]) and beside the notices of the verify path
//! and the policy scan, shown on the dashboard and the API, acknowledged and resolved by staff.
//!
//! One live alert per tenant, kind and subject: a repeat adds an occurrence and replaces the
//! summary and figures with the latest, instead of piling up. A detected alert is announced once,
//! when it is raised, as `alert.raised` (webhooks and email to the team's owners and admins);
//! resolving announces `alert.resolved`. `credits.low`, `ratelimit.exceeded` and `key.expiring`
//! keep their own events and are recorded as alerts beside them.

pub mod scan;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::Value;

use crate::domain::anomaly::{AlertKind, Finding};
use crate::domain::{AlertId, TenantId};
use crate::notify::Audience;
use crate::store::StoreError;
use crate::store::entities::{alert, membership, user};

/// An alert as the API, events and the dashboard show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: String,
    /// `rate_spike`, `failure_spike`, `revoked_key_used`, `expired_key_used`, `old_version_new_ip`,
    /// `not_found_burst`, `credits_low`, `ratelimit_exceeded` or `key_expiring`.
    pub kind: String,
    /// The kind in words.
    pub title: &'static str,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The key (`key_…`) or, for `not_found_burst`, the API (`api_…`).
    pub subject_id: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// The latest occurrence, in words: what was seen, against what baseline and threshold.
    pub summary: String,
    /// The latest occurrence's figures.
    #[schema(value_type = Object)]
    pub evidence: Value,
    pub occurrences: i64,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

impl AlertView {
    #[must_use]
    pub fn of(a: &alert::Model) -> Self {
        Self {
            id: a.id.clone(),
            kind: a.kind.clone(),
            title: title(a),
            severity: a.severity.clone(),
            subject_id: a.subject_id.clone(),
            state: a.state.clone(),
            summary: a.summary.clone(),
            evidence: a.evidence.clone(),
            occurrences: a.occurrences,
            first_seen_at: crate::time::rfc3339(a.first_seen_at),
            last_seen_at: crate::time::rfc3339(a.last_seen_at),
            acknowledged_at: a.acknowledged_at.map(crate::time::rfc3339),
            acknowledged_by: a.acknowledged_by.clone(),
            resolved_at: a.resolved_at.map(crate::time::rfc3339),
            resolved_by: a.resolved_by.clone(),
        }
    }
}

/// The alert as an event's data.
#[must_use]
pub fn view(a: &alert::Model) -> Value {
    serde_json::to_value(AlertView::of(a)).unwrap_or_default()
}

/// Raises (or adds to) the alert of `finding` on `subject_id`. Returns the alert and whether it
/// is new.
///
/// # Errors
/// Database errors.
pub async fn raise(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    subject_id: &str,
    finding: &Finding,
    now: DateTime<Utc>,
) -> Result<(alert::Model, bool), StoreError> {
    if let Some(live) = live(txn, tenant, finding.kind, subject_id).await? {
        return Ok((add_occurrence(txn, live, finding, now).await?, false));
    }
    let row = alert::Model {
        id: AlertId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        kind: finding.kind.as_str().to_owned(),
        severity: finding.kind.severity().to_owned(),
        subject_id: subject_id.to_owned(),
        state: "open".to_owned(),
        summary: finding.summary.clone(),
        evidence: finding.evidence.clone(),
        occurrences: 1,
        first_seen_at: now,
        last_seen_at: now,
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
    };
    // Another node may raise the same alert at the same moment: the live-alert index lets one
    // insert through, and the other adds its occurrence to it.
    let sp = txn.begin().await?;
    match row.clone().into_active_model().reset_all().insert(&sp).await {
        Ok(saved) => {
            sp.commit().await?;
            if finding.kind.detected() {
                emit_to_staff(txn, tenant, crate::domain::EventType::AlertRaised, view(&saved)).await?;
            }
            Ok((saved, true))
        }
        Err(e) if crate::store::is_unique_violation(&e) => {
            sp.rollback().await?;
            let live = live(txn, tenant, finding.kind, subject_id).await?.ok_or(StoreError::Db(e))?;
            Ok((add_occurrence(txn, live, finding, now).await?, false))
        }
        Err(e) => Err(e.into()),
    }
}

async fn live(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    kind: AlertKind,
    subject_id: &str,
) -> Result<Option<alert::Model>, StoreError> {
    Ok(alert::Entity::find()
        .filter(alert::Column::TenantId.eq(tenant.as_str()))
        .filter(alert::Column::Kind.eq(kind.as_str()))
        .filter(alert::Column::SubjectId.eq(subject_id))
        .filter(alert::Column::State.ne("resolved"))
        .one(txn)
        .await?)
}

async fn add_occurrence(
    txn: &DatabaseTransaction,
    a: alert::Model,
    finding: &Finding,
    now: DateTime<Utc>,
) -> Result<alert::Model, StoreError> {
    let n = a.occurrences + 1;
    let mut am = a.into_active_model();
    am.occurrences = Set(n);
    am.last_seen_at = Set(now);
    am.summary = Set(finding.summary.clone());
    am.evidence = Set(finding.evidence.clone());
    Ok(am.update(txn).await?)
}

/// Records an alert beside a notice that has its own event (`credits.low`,
/// `ratelimit.exceeded`, `key.expiring`), in the notice's transaction. Returns whether the alert
/// is new (a repeat while it is live only adds an occurrence, and is not worth another email).
///
/// # Errors
/// Database errors.
pub async fn beside_notice(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    event_type: &str,
    data: &Value,
) -> Result<bool, StoreError> {
    let kind = match event_type {
        "credits.low" => AlertKind::CreditsLow,
        "ratelimit.exceeded" => AlertKind::RatelimitExceeded,
        "key.expiring" => AlertKind::KeyExpiring,
        _ => return Ok(true),
    };
    let key_id = data.get("key_id").and_then(Value::as_str).unwrap_or_default();
    let summary = match kind {
        AlertKind::CreditsLow => format!(
            "Credits are low: {} left, a tenth or less of the balance last set or refilled.",
            data.get("remaining").unwrap_or(&Value::Null)
        ),
        AlertKind::RatelimitExceeded => format!(
            "The key went over its rate limit of {} per {} s; verifications are refused until {}.",
            data.get("limit").unwrap_or(&Value::Null),
            data.get("window_seconds").unwrap_or(&Value::Null),
            data.get("reset_at").and_then(Value::as_str).unwrap_or("the window ends")
        ),
        _ => format!(
            "Version {} is due to be rotated by its policy at {}; its holder has been told.",
            data.get("version").unwrap_or(&Value::Null),
            data.get("rotation_due_at").and_then(Value::as_str).unwrap_or("?")
        ),
    };
    let finding = Finding { kind, summary, evidence: data.clone() };
    raise(txn, tenant, key_id, &finding, Utc::now()).await.map(|(_, new)| new)
}

/// Writes an event for the team: the tenant's webhook endpoints, and email to its owners and
/// admins.
///
/// # Errors
/// Database errors.
pub async fn emit_to_staff(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    event_type: crate::domain::EventType,
    data: Value,
) -> Result<(), StoreError> {
    let event_id = crate::notify::emit(txn, tenant, event_type, data, &Audience::default()).await?;
    let members: Vec<String> = membership::Entity::find()
        .select_only()
        .column(membership::Column::UserId)
        .filter(membership::Column::TenantId.eq(tenant.as_str()))
        .filter(membership::Column::Role.is_in(["owner", "admin"]))
        .into_tuple()
        .all(txn)
        .await?;
    let staff: Vec<String> = if members.is_empty() {
        Vec::new()
    } else {
        user::Entity::find()
            .select_only()
            .column(user::Column::Email)
            .filter(user::Column::Id.is_in(members))
            .into_tuple()
            .all(txn)
            .await?
    };
    for email in staff {
        crate::store::notify::insert_delivery(txn, tenant, &event_id, "email", None, Some(email)).await?;
    }
    Ok(())
}

/// The title of an alert's kind.
#[must_use]
pub fn title(a: &alert::Model) -> &'static str {
    AlertKind::parse(&a.kind).map_or("alert", AlertKind::title)
}

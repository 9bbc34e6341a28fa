//! The `validate` step: the run checks its own outcome and records the evidence. Every live
//! node is asked what it answers right now for the versions the run acted on (at most 100 of
//! them) and for the new versions it issued; the answers must match what the database says each
//! version is (refused once revoked or past its grace; accepted while in grace, and when new).
//! Caches converge within about a second, so a disagreement is looked at again for 30 s before
//! the step fails. The notifications of the run must not have been given up on, and the audit
//! log must hold at least one entry per change the run made.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::json;

use super::execute::{Outcome, accepted_now, audit_entries, deliveries_since, hash_hex, probe};
use super::runs::{self, Target};
use crate::domain::{RotationId, TenantId};
use crate::state::AppState;
use crate::store::entities::{key, playbook_run, rotation};
use crate::store::rotations;

/// How long node answers may lag behind the database before the step fails.
const SETTLE: TimeDelta = TimeDelta::seconds(30);
const SAMPLE: u64 = 100;

pub(super) struct Check<'a> {
    pub state: &'a AppState,
    pub tenant: &'a TenantId,
    pub run: &'a playbook_run::Model,
    pub target: &'a Target,
    pub actor: &'a str,
    /// Changes the earlier steps made.
    pub changed: u64,
}

pub(super) async fn validate(c: &Check<'_>, started: DateTime<Utc>) -> anyhow::Result<Outcome> {
    let db = &c.state.db;
    let now = Utc::now();
    let old: Vec<key::Model> = if let Some(r) = &c.target.rotation_id {
        let r = rotations::get(db, c.tenant, &RotationId::from_trusted(r.clone())).await?;
        key::Entity::find().filter(key::Column::Id.is_in([r.from_key_id, r.to_key_id])).all(db).await?
    } else {
        runs::targeted(c.tenant, c.target, c.run.created_at).order_by_asc(key::Column::Id).limit(SAMPLE).all(db).await?
    };
    let new_ids: Vec<String> = rotation::Entity::find()
        .select_only()
        .column(rotation::Column::ToKeyId)
        .filter(rotation::Column::TenantId.eq(c.tenant.as_str()))
        .filter(rotation::Column::Actor.eq(c.actor))
        .filter(rotation::Column::FromKeyId.is_in(old.iter().map(|k| k.id.as_str())))
        .into_tuple()
        .all(db)
        .await?;
    let new: Vec<key::Model> = key::Entity::find().filter(key::Column::Id.is_in(new_ids)).all(db).await?;

    let refused = old.iter().filter(|k| !accepted_now(k, now)).count();
    let in_grace: Vec<_> = old
        .iter()
        .filter(|k| accepted_now(k, now) && k.grace_ends_at.is_some())
        .map(|k| json!({"key_id": k.id, "grace_ends_at": k.grace_ends_at.map(crate::time::rfc3339)}))
        .collect();
    let new_refused: Vec<&str> = new.iter().filter(|k| !accepted_now(k, now)).map(|k| k.id.as_str()).collect();
    let expected: Vec<(String, bool)> =
        old.iter().chain(&new).filter_map(|k| hash_hex(k).map(|h| (h, accepted_now(k, now)))).collect();
    let (nodes_agree, nodes) = probe(c.state, &expected).await?;
    let notifications = deliveries_since(c.state, c.tenant, c.run.created_at).await?;
    let given_up = notifications.get(crate::store::notify::DEAD).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let entries = audit_entries(c.state, c.tenant, c.actor, c.run.created_at).await?;
    let evidence = json!({
        "checked_at": crate::time::rfc3339(now),
        "old_versions": {"checked": old.len(), "refused": refused, "in_grace": in_grace},
        "new_versions": {"checked": new.len(), "accepted": new.len() - new_refused.len(), "refused": new_refused},
        "nodes": nodes,
        "notifications": notifications,
        "audit": {"entries": entries, "changes": c.changed},
    });

    let mut failures = Vec::new();
    if !new_refused.is_empty() {
        failures.push(format!("{} new versions are not accepted", new_refused.len()));
    }
    if given_up > 0 {
        failures.push(format!("{given_up} notifications could not be delivered"));
    }
    if entries < c.changed {
        failures.push(format!("the audit log has {entries} entries for {} changes", c.changed));
    }
    if !failures.is_empty() {
        return Ok(Outcome::Fail { evidence, error: failures.join("; ") });
    }
    if !nodes_agree {
        if now < started + SETTLE {
            return Ok(Outcome::Wait { evidence, until: Some(now + TimeDelta::seconds(1)) });
        }
        return Ok(Outcome::Fail {
            evidence,
            error: "not every live node answers as the database says (see nodes)".into(),
        });
    }
    Ok(Outcome::Done(evidence))
}

//! Playbook runs: the target a run acts on, the dry run (exactly what would change), starting a
//! run and approving one. A run keeps each step's state, timing and evidence in its own row; the
//! job `playbook.run` executes it (see `execute`), so a run survives a restart and resumes at
//! the step it was on.
//!
//! The keys a run acts on are the versions of its target that still worked when the run
//! started, not counting root keys; versions issued later (by the run itself, too) are never
//! touched by a later step.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::catalogue::{Definition, Step, TargetKind};
use crate::app::{self, ServiceError};
use crate::domain::{ApiId, ConsumerId, EventType, KeyId, RotationId, RunId, TenantId};
use crate::store::entities::{key, playbook_run};
use crate::store::{StoreError, apis, consumers, jobs, keys, rotations};

/// The job that executes runs.
pub const JOB_KIND: &str = "playbook.run";

/// What a run acts on, as given by the caller (one field, by the playbook's target kind).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_id: Option<String>,
    /// With `api_id`: only keys issued before this moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_before: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<String>,
}

/// Why a target cannot be used: the field and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    pub field: &'static str,
    pub message: String,
}

fn target_error(field: &'static str, message: impl Into<String>) -> TargetError {
    TargetError { field, message: message.into() }
}

impl Target {
    /// Checks that exactly the field the target kind needs is given, and that it names an
    /// object of this tenant. Returns the target with ids as stored.
    ///
    /// # Errors
    /// A field error, or a database error as `Err(Ok(..))`.
    pub async fn check(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        kind: TargetKind,
    ) -> Result<Self, Result<StoreError, TargetError>> {
        let given: Vec<&str> = [
            ("key_id", self.key_id.is_some()),
            ("consumer_id", self.consumer_id.is_some()),
            ("api_id", self.api_id.is_some()),
            ("rotation_id", self.rotation_id.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        let wanted = match kind {
            TargetKind::Key => "key_id",
            TargetKind::Consumer => "consumer_id",
            TargetKind::Api => "api_id",
            TargetKind::Rotation => "rotation_id",
        };
        if given != [wanted] {
            return Err(Err(target_error("target", format!("must name exactly {wanted} for this playbook"))));
        }
        if self.created_before.is_some() && kind != TargetKind::Api {
            return Err(Err(target_error("target.created_before", "applies only to an api_id target")));
        }
        let missing =
            |field: &'static str, what: &str| Err(target_error(field, format!("names no {what} of this team")));
        let found = |r: Result<(), StoreError>, field: &'static str, what: &str| match r {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(missing(field, what)),
            Err(e) => Err(Ok(e)),
        };
        match kind {
            TargetKind::Key => {
                let id = self.key_id.as_deref().and_then(|s| KeyId::parse(s).ok());
                let Some(id) = id else { return Err(missing("target.key_id", "key")) };
                found(keys::get(db, tenant, &id, false).await.map(|_| ()), "target.key_id", "key")?;
            }
            TargetKind::Consumer => {
                let id = self.consumer_id.as_deref().and_then(|s| ConsumerId::parse(s).ok());
                let Some(id) = id else { return Err(missing("target.consumer_id", "consumer")) };
                found(consumers::get(db, tenant, &id).await.map(|_| ()), "target.consumer_id", "consumer")?;
            }
            TargetKind::Api => {
                let id = self.api_id.as_deref().and_then(|s| ApiId::parse(s).ok());
                let Some(id) = id else { return Err(missing("target.api_id", "API")) };
                found(apis::get(db, tenant, &id).await.map(|_| ()), "target.api_id", "API")?;
            }
            TargetKind::Rotation => {
                let id = self.rotation_id.as_deref().and_then(|s| RotationId::parse(s).ok());
                let Some(id) = id else { return Err(missing("target.rotation_id", "rotation")) };
                found(rotations::get(db, tenant, &id).await.map(|_| ()), "target.rotation_id", "rotation")?;
            }
        }
        Ok(self.clone())
    }

    /// A short label: `key key_…`, `consumer con_…`, `API api_… (issued before …)`.
    #[must_use]
    pub fn label(&self) -> String {
        if let Some(k) = &self.key_id {
            format!("key {k}")
        } else if let Some(c) = &self.consumer_id {
            format!("consumer {c}")
        } else if let Some(a) = &self.api_id {
            match self.created_before {
                Some(t) => format!("API {a} (keys issued before {})", t.format("%Y-%m-%d %H:%M UTC")),
                None => format!("API {a}"),
            }
        } else if let Some(r) = &self.rotation_id {
            format!("rotation {r}")
        } else {
            "nothing".into()
        }
    }
}

/// The versions a run acts on: still working when the run started (`as_of`: not revoked, not
/// expired, not past their grace), not root keys.
pub fn targeted(tenant: &TenantId, target: &Target, as_of: DateTime<Utc>) -> sea_orm::Select<key::Entity> {
    let until = |c: key::Column| Condition::any().add(c.is_null()).add(c.gte(as_of));
    let mut q = key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::IsRoot.eq(false))
        .filter(key::Column::CreatedAt.lt(as_of))
        .filter(until(key::Column::RevokedAt))
        .filter(until(key::Column::ExpiresAt))
        .filter(until(key::Column::GraceEndsAt));
    if let Some(k) = &target.key_id {
        q = q.filter(key::Column::Id.eq(k.as_str()));
    } else if let Some(c) = &target.consumer_id {
        q = q.filter(key::Column::ConsumerId.eq(c.as_str()));
    } else if let Some(a) = &target.api_id {
        q = q.filter(key::Column::ApiId.eq(a.as_str()));
        if let Some(t) = target.created_before {
            q = q.filter(key::Column::CreatedAt.lt(t));
        }
    } else {
        // A rotation target acts on the rotation, not on a set of keys.
        q = q.filter(key::Column::Id.eq(""));
    }
    q
}

/// Of the targeted versions, those a rotation would renew: current (not in grace), enabled,
/// not expired.
pub fn current(q: sea_orm::Select<key::Entity>, now: DateTime<Utc>) -> sea_orm::Select<key::Entity> {
    q.filter(crate::store::keys::current(now))
}

/// What one step would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepPlan {
    pub index: usize,
    pub kind: String,
    pub description: String,
    /// Keys (versions) the step would change; 0 for steps that change none.
    pub keys: u64,
    /// Consumers concerned.
    pub consumers: u64,
}

/// A dry run: every step, and the keys concerned (up to 100 listed).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunPlan {
    pub playbook: String,
    pub target: Target,
    pub steps: Vec<StepPlan>,
    /// Versions the run acts on.
    pub keys: u64,
    /// Up to 100 of them: `{id, start, version, consumer_id, state}`.
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<Value>,
    pub consumers: u64,
    /// Whether the run stops for a second person's approval.
    pub needs_approval: bool,
}

async fn count_consumers(db: &impl ConnectionTrait, q: sea_orm::Select<key::Entity>) -> Result<u64, StoreError> {
    let ids: Vec<Option<String>> =
        q.select_only().column(key::Column::ConsumerId).distinct().into_tuple().all(db).await?;
    Ok(u64::try_from(ids.into_iter().flatten().count()).unwrap_or(0))
}

/// Exactly what a run started now would change.
///
/// # Errors
/// Database errors.
pub async fn plan(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    def: &Definition,
    target: &Target,
) -> Result<RunPlan, StoreError> {
    let now = Utc::now();
    let all = targeted(tenant, target, now);
    let keys = all.clone().count(db).await?;
    let consumers = count_consumers(db, all.clone()).await?;
    let rotatable = current(all.clone(), now).count(db).await?;
    let rotatable_consumers = count_consumers(db, current(all.clone(), now)).await?;
    let in_grace = all.clone().filter(key::Column::GraceEndsAt.gt(now)).count(db).await?;
    let rotation = match &target.rotation_id {
        Some(id) => Some(rotations::get(db, tenant, &RotationId::from_trusted(id.clone())).await?),
        None => None,
    };
    let mut steps = Vec::with_capacity(def.steps.len());
    let mut rotated_before = false;
    for (index, step) in def.steps.iter().enumerate() {
        let (k, c) = match step {
            Step::Rotate { .. } => {
                rotated_before = true;
                (rotatable, rotatable_consumers)
            }
            Step::Revoke {} => (keys, consumers),
            Step::ShortenGrace { .. } => {
                if let Some(r) = &rotation {
                    (1, u64::from(r.state == "in_progress"))
                } else if rotated_before {
                    (in_grace + rotatable, consumers)
                } else {
                    (in_grace, consumers)
                }
            }
            Step::Rollback {} => (u64::from(rotation.is_some()) * 2, u64::from(rotation.is_some())),
            Step::Notify { .. } => (0, if rotation.is_some() { 1 } else { consumers }),
            Step::WaitForDrain { .. } | Step::RequireApproval {} | Step::Validate {} => (0, 0),
        };
        steps.push(StepPlan {
            index,
            kind: step.kind().to_owned(),
            description: step.describe(),
            keys: k,
            consumers: c,
        });
    }
    let sample = all
        .order_by_asc(key::Column::Id)
        .limit(100)
        .all(db)
        .await?
        .into_iter()
        .map(|k| {
            let state = crate::domain::KeyState::derive(&crate::app::rotation::times(&k), now);
            json!({"id": k.id, "start": k.start, "version": k.version, "consumer_id": k.consumer_id, "state": state.as_str()})
        })
        .collect();
    Ok(RunPlan {
        playbook: def.name.clone(),
        target: target.clone(),
        steps,
        keys,
        sample,
        consumers,
        needs_approval: def.steps.iter().any(|s| matches!(s, Step::RequireApproval {})),
    })
}

/// A step of a run as stored: the step, its state, timing, evidence and error.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    #[schema(value_type = Object)]
    pub step: Step,
    /// `pending`, `running`, `waiting`, `done`, `failed`.
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub evidence: Value,
    pub error: Option<String>,
}

/// Run states.
pub mod state {
    pub const RUNNING: &str = "running";
    pub const WAITING: &str = "waiting";
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// The steps of a stored run.
#[must_use]
pub fn steps_of(run: &playbook_run::Model) -> Vec<StepRecord> {
    serde_json::from_value(run.steps.clone()).unwrap_or_default()
}

/// Starts a run: the row, its `playbook.run.started` event, its audit entry and the job that
/// executes it from `run_at`, in one transaction.
///
/// # Errors
/// Database errors.
pub async fn start(
    ctx: &app::Ctx<'_>,
    playbook_id: &str,
    def: &Definition,
    target: &Target,
    run_at: DateTime<Utc>,
) -> Result<playbook_run::Model, ServiceError> {
    ctx.require(app::Permission::PlaybooksRun)?;
    let (tenant, actor) = (&ctx.tenant, ctx.actor_id());
    let now = Utc::now();
    let steps: Vec<StepRecord> = def
        .steps
        .iter()
        .map(|s| StepRecord {
            step: s.clone(),
            state: "pending".into(),
            started_at: None,
            finished_at: None,
            evidence: json!({}),
            error: None,
        })
        .collect();
    let run = playbook_run::Model {
        id: RunId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        playbook_id: playbook_id.to_owned(),
        playbook_name: def.name.clone(),
        target_kind: def.target.as_str().to_owned(),
        target: serde_json::to_value(target).unwrap_or_default(),
        steps: serde_json::to_value(&steps).unwrap_or_default(),
        state: state::RUNNING.into(),
        current_step: 0,
        started_by: actor.clone(),
        approved_by: None,
        job_id: None,
        error: None,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    app::commit(ctx, async |txn, change| {
        let mut run = run.clone();
        run.job_id = enqueue(txn, &run, run_at).await?;
        playbook_run::Entity::insert(sea_orm::IntoActiveModel::into_active_model(run.clone()))
            .exec_without_returning(txn)
            .await?;
        let data = json!({"run_id": run.id, "playbook_id": playbook_id, "playbook": def.name, "target": target});
        change.emit(EventType::PlaybookRunStarted, data.clone(), &crate::notify::Audience::default());
        change.audit(
            crate::audit::Entry::new(
                "playbook.run_started",
                "playbook_run",
                run.id.clone(),
                format!("Started the playbook \"{}\" on {}", def.name, target.label()),
            )
            .with(data),
        );
        Ok(run)
    })
    .await
}

/// Queues the run's execution (again) at `at`; returns the job's id.
///
/// # Errors
/// Database errors.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    run: &playbook_run::Model,
    at: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let mut job = jobs::NewJob::now(JOB_KIND, json!({"run_id": run.id}));
    job.tenant_id = Some(run.tenant_id.clone());
    job.run_at = at;
    jobs::enqueue(db, job).await
}

/// Why an approval is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("the run is not waiting for an approval")]
    NotWaiting,
    #[error("the person who started the run cannot approve it; a second person must")]
    SamePerson,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for ApproveError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

/// Approves a run waiting at an approval step (by someone other than who started it) and
/// resumes it.
///
/// # Errors
/// Not waiting, the same person, database errors.
pub async fn approve(ctx: &app::Ctx<'_>, id: &RunId) -> Result<playbook_run::Model, ApproveError> {
    ctx.require(app::Permission::PlaybooksRun)?;
    let actor = ctx.actor_id();
    let actor = actor.as_str();
    let run = crate::store::playbooks::get_run(ctx.db(), &ctx.tenant, id).await?;
    if run.state != state::AWAITING_APPROVAL {
        return Err(ApproveError::NotWaiting);
    }
    if same_person(&run.started_by, actor) {
        return Err(ApproveError::SamePerson);
    }
    let now = Utc::now();
    let run = app::commit(ctx, async |txn, change| {
        let mut active: playbook_run::ActiveModel = run.clone().into();
        active.approved_by = sea_orm::Set(Some(actor.to_owned()));
        active.state = sea_orm::Set(state::RUNNING.into());
        active.updated_at = sea_orm::Set(now);
        active.job_id = sea_orm::Set(enqueue(txn, &run, now).await?);
        let updated = sea_orm::ActiveModelTrait::update(active, txn).await?;
        change.audit(crate::audit::Entry::new(
            "playbook.run_approved",
            "playbook_run",
            run.id.clone(),
            format!("Approved the run of \"{}\" started by {}", run.playbook_name, run.started_by),
        ));
        Ok(updated)
    })
    .await?;
    Ok(run)
}

/// Two actors are the same when they are the same user or the same root key: each root key is a
/// credential of its own, held apart, and the audit log names which one approved.
fn same_person(a: &str, b: &str) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvers_must_be_someone_else() {
        assert!(same_person("user:usr_1", "user:usr_1"));
        assert!(same_person("root_key:key_1", "root_key:key_1"));
        assert!(!same_person("root_key:key_1", "root_key:key_2"));
        assert!(!same_person("user:usr_1", "user:usr_2"));
        assert!(!same_person("root_key:key_1", "user:usr_2"));
    }
}

//! Executes a playbook run, step by step, as the job `playbook.run`. Every step is idempotent:
//! a run picked up again (a retry, another node after a crash) redoes the step it was on, and
//! what that step already changed is not changed twice — rotated keys are no longer current,
//! revoked keys stay revoked, a shortened grace is not shortened again. Changes are made as
//! `playbook:{run id}`, so the audit log and the validation can find them.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Value, json};

use super::catalogue::Step;
use super::nodes;
use super::runs::{self, StepRecord, Target, state};
use crate::app::rotation::bulk::{BulkFilter, BulkRequest};
use crate::app::rotation::{self, Handoff, RotateRequest};
use crate::app::{self, Actor, ServiceError};
use crate::domain::rotation::{RetireMode, Trigger};
use crate::domain::{EventType, KeyHash, KeyId, KeyState, RotationId, TenantId};
use crate::state::AppState;
use crate::store::entities::{audit_event, consumer, delivery, key, playbook_run, rotation as rotation_entity};
use crate::store::{StoreError, rotations};

/// How a step ended this time.
pub(super) enum Outcome {
    Done(Value),
    /// Not yet: try again at `until` (or, for an approval, when someone approves).
    Wait {
        evidence: Value,
        until: Option<DateTime<Utc>>,
    },
    Fail {
        evidence: Value,
        error: String,
    },
}

struct RunCtx<'a> {
    state: &'a AppState,
    job_id: &'a str,
    tenant: TenantId,
    target: Target,
    run: playbook_run::Model,
    actor: String,
}

impl RunCtx<'_> {
    /// The context of the changes the run makes: the run acts, for its tenant.
    fn app(&self) -> app::Ctx<'_> {
        app::Ctx::acting(self.state, self.tenant.clone(), Actor::PlaybookRun(self.run.id.clone()))
    }
}

/// Runs (or resumes) the run `run_id`.
///
/// # Errors
/// Database errors: the job is retried and the run resumes at the step it was on.
pub async fn run(state: &AppState, job_id: &str, run_id: &str) -> anyhow::Result<()> {
    let Some(run) = playbook_run::Entity::find_by_id(run_id).one(&state.db).await? else {
        return Ok(());
    };
    if matches!(run.state.as_str(), state::COMPLETED | state::FAILED | state::AWAITING_APPROVAL) {
        return Ok(());
    }
    let mut steps = runs::steps_of(&run);
    let ctx = RunCtx {
        state,
        job_id,
        tenant: TenantId::from_trusted(run.tenant_id.clone()),
        target: serde_json::from_value(run.target.clone())?,
        actor: Actor::PlaybookRun(run.id.clone()).to_string(),
        run,
    };
    let mut i = usize::try_from(ctx.run.current_step).unwrap_or(0);
    while i < steps.len() {
        let now = Utc::now();
        let started = *steps[i].started_at.get_or_insert(now);
        steps[i].state = "running".into();
        save(&ctx, &steps, i, state::RUNNING).await?;
        // Changes made by the steps before this one, which the audit log must show.
        let changed = steps[..i].iter().filter_map(|s| s.evidence.get("changed").and_then(Value::as_u64)).sum();
        match exec(&ctx, &steps[i].step, started, changed).await? {
            Outcome::Done(evidence) => {
                let s = &mut steps[i];
                s.state = "done".into();
                s.finished_at = Some(Utc::now());
                s.evidence = evidence;
                s.error = None;
                i += 1;
                save(&ctx, &steps, i, state::RUNNING).await?;
            }
            Outcome::Wait { evidence, until } => {
                steps[i].state = "waiting".into();
                steps[i].evidence = evidence;
                let Some(at) = until else {
                    save(&ctx, &steps, i, state::AWAITING_APPROVAL).await?;
                    return Ok(());
                };
                // The row and the job that picks it up again, together.
                let txn = crate::store::begin_write(&state.db).await?;
                let mut active = row(&ctx, &steps, i, state::WAITING);
                active.job_id = sea_orm::Set(runs::enqueue(&txn, &ctx.run, at).await?);
                sea_orm::ActiveModelTrait::update(active, &txn).await?;
                txn.commit().await?;
                return Ok(());
            }
            Outcome::Fail { evidence, error } => {
                let s = &mut steps[i];
                s.state = "failed".into();
                s.finished_at = Some(Utc::now());
                s.evidence = evidence;
                s.error = Some(error.clone());
                finish(&ctx, &steps, i, Some(error)).await?;
                return Ok(());
            }
        }
    }
    finish(&ctx, &steps, i, None).await?;
    Ok(())
}

/// The run's row with its steps, current step and state as they are now.
fn row(ctx: &RunCtx<'_>, steps: &[StepRecord], current: usize, run_state: &str) -> playbook_run::ActiveModel {
    let mut active: playbook_run::ActiveModel = ctx.run.clone().into();
    active.steps = sea_orm::Set(serde_json::to_value(steps).unwrap_or_default());
    active.current_step = sea_orm::Set(i32::try_from(current).unwrap_or(i32::MAX));
    active.state = sea_orm::Set(run_state.to_owned());
    active.updated_at = sea_orm::Set(Utc::now());
    if !ctx.job_id.is_empty() {
        active.job_id = sea_orm::Set(Some(ctx.job_id.to_owned()));
    }
    active
}

async fn save(ctx: &RunCtx<'_>, steps: &[StepRecord], current: usize, run_state: &str) -> Result<(), StoreError> {
    sea_orm::ActiveModelTrait::update(row(ctx, steps, current, run_state), &ctx.state.db).await?;
    Ok(())
}

/// Ends the run: its state, its `playbook.run.completed` or `playbook.run.failed` event and its
/// audit entry, in one transaction.
async fn finish(
    ctx: &RunCtx<'_>,
    steps: &[StepRecord],
    current: usize,
    error: Option<String>,
) -> Result<(), ServiceError> {
    let now = Utc::now();
    let (run_state, event) = if error.is_some() {
        (state::FAILED, crate::domain::EventType::PlaybookRunFailed)
    } else {
        (state::COMPLETED, crate::domain::EventType::PlaybookRunCompleted)
    };
    let run = &ctx.run;
    app::commit(&ctx.app(), async |txn, change| {
        let mut active = row(ctx, steps, current, run_state);
        active.finished_at = sea_orm::Set(Some(now));
        active.error = sea_orm::Set(error.clone());
        sea_orm::ActiveModelTrait::update(active, txn).await?;
        let data = json!({
            "run_id": run.id, "playbook_id": run.playbook_id, "playbook": run.playbook_name,
            "target": ctx.target, "error": error,
        });
        change.emit(event, data.clone(), &crate::notify::Audience::default());
        let summary = match &error {
            None => format!("The playbook \"{}\" completed on {}", run.playbook_name, ctx.target.label()),
            Some(e) => format!("The playbook \"{}\" failed on {}: {e}", run.playbook_name, ctx.target.label()),
        };
        let action = if error.is_some() { "playbook.run_failed" } else { "playbook.run_completed" };
        change.audit(crate::audit::Entry::new(action, "playbook_run", run.id.clone(), summary).with(data));
        Ok(())
    })
    .await
}

async fn exec(ctx: &RunCtx<'_>, step: &Step, started: DateTime<Utc>, changed: u64) -> anyhow::Result<Outcome> {
    Ok(match step {
        Step::Rotate { overlap_seconds } => rotate(ctx, *overlap_seconds).await?,
        Step::Revoke {} => revoke(ctx).await?,
        Step::ShortenGrace { grace_seconds } => shorten(ctx, started + TimeDelta::seconds(*grace_seconds)).await?,
        Step::Rollback {} => rollback(ctx).await?,
        Step::Notify { message } => notify(ctx, message.as_deref()).await?,
        Step::WaitForDrain { quiet_seconds, timeout_seconds } => {
            drain(ctx, started, TimeDelta::seconds(*quiet_seconds), TimeDelta::seconds(*timeout_seconds)).await?
        }
        Step::RequireApproval {} => match &ctx.run.approved_by {
            Some(by) => Outcome::Done(json!({"approved_by": by})),
            None => Outcome::Wait { evidence: json!({"waiting_for": "a second person's approval"}), until: None },
        },
        Step::Validate {} => {
            let check = super::validate::Check {
                state: ctx.state,
                tenant: &ctx.tenant,
                run: &ctx.run,
                target: &ctx.target,
                actor: &ctx.actor,
                changed,
            };
            super::validate::validate(&check, started).await?
        }
    })
}

fn targeted(ctx: &RunCtx<'_>) -> sea_orm::Select<key::Entity> {
    runs::targeted(&ctx.tenant, &ctx.target, ctx.run.created_at)
}

/// Rotations this run made (its actor), counted.
async fn rotated_by_run(ctx: &RunCtx<'_>) -> Result<u64, StoreError> {
    Ok(rotation_entity::Entity::find()
        .filter(rotation_entity::Column::TenantId.eq(ctx.tenant.as_str()))
        .filter(rotation_entity::Column::Actor.eq(ctx.actor.as_str()))
        .count(&ctx.state.db)
        .await?)
}

async fn rotate(ctx: &RunCtx<'_>, overlap: i64) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    if ctx.target.key_id.is_some() {
        // One key: rotated like a leaked key, with the new secret kept for the consumer as its
        // policy says.
        let Some(k) = runs::current(targeted(ctx), now).one(&ctx.state.db).await? else {
            return Ok(Outcome::Done(json!({"rotated": rotated_by_run(ctx).await?, "changed": 0})));
        };
        return Ok(match rotate_compromised(&ctx.app(), &k, TimeDelta::seconds(overlap)).await {
            Ok(r) => Outcome::Done(json!({
                "rotated": 1, "changed": 1, "key_id": k.id, "new_key_id": r.key.id, "rotation_id": r.rotation.id,
                "grace_ends_at": crate::time::rfc3339(r.rotation.grace_ends_at),
            })),
            Err(ServiceError::Internal(e)) => return Err(e),
            Err(e) => {
                Outcome::Fail { evidence: json!({"key_id": k.id}), error: format!("key {} not rotated: {e}", k.start) }
            }
        });
    }
    // A consumer's or an API's keys: in set-based batches, one API at a time.
    let before = rotated_by_run(ctx).await?;
    let api_ids: Vec<String> = runs::current(targeted(ctx), now)
        .select_only()
        .column(key::Column::ApiId)
        .distinct()
        .into_tuple()
        .all(&ctx.state.db)
        .await?;
    for api_id in api_ids {
        let req = BulkRequest {
            tenant_id: ctx.tenant.as_str().to_owned(),
            api_id,
            filter: BulkFilter {
                created_before: ctx.target.created_before,
                consumer_id: ctx.target.consumer_id.clone(),
            },
            overlap_seconds: overlap,
            compromise: true,
            actor: ctx.actor.clone(),
            as_of: ctx.run.created_at,
            playbook: true,
        };
        crate::app::rotation::bulk::run(ctx.state, ctx.job_id, &req).await?;
    }
    let n = rotated_by_run(ctx).await?;
    Ok(Outcome::Done(json!({"rotated": n, "changed": n - before, "overlap_seconds": overlap})))
}

/// Rotates a key as a compromise, keeping the new secret for the consumer (pickup, or the
/// consumer's webhook when its policy says so).
///
/// # Errors
/// The rotation's own errors.
pub(crate) async fn rotate_compromised(
    ctx: &app::Ctx<'_>,
    k: &key::Model,
    overlap: TimeDelta,
) -> Result<rotation::Rotated, ServiceError> {
    let state = ctx.state;
    let policy = crate::store::policies::effective(&state.db, &k.api_id, k.consumer_id.as_deref()).await?;
    let handoff = state
        .master_key
        .as_ref()
        .map(|_| policy.as_ref().and_then(|p| Handoff::parse(&p.delivery)).unwrap_or(Handoff::Pickup));
    let request = RotateRequest {
        overlap,
        scopes: None,
        meta: None,
        retire_mode: RetireMode::AtDeadline,
        trigger: Trigger::Playbook,
        compromise: true,
        expires_at: None,
        rules: rotation::rules_for(&state.db, k).await?,
        handoff,
    };
    rotation::rotate(ctx, &KeyId::from_trusted(k.id.clone()), false, request).await
}

async fn revoke(ctx: &RunCtx<'_>) -> anyhow::Result<Outcome> {
    let reason = format!("playbook \"{}\" (run {})", ctx.run.playbook_name, ctx.run.id);
    let mut changed = 0u64;
    loop {
        let batch = targeted(ctx)
            .filter(key::Column::RevokedAt.is_null())
            .order_by_asc(key::Column::Id)
            .limit(200)
            .all(&ctx.state.db)
            .await?;
        if batch.is_empty() {
            break;
        }
        let ids: Vec<KeyId> = batch.iter().map(|k| KeyId::from_trusted(k.id.clone())).collect();
        let revoked = app::keys::revoke_many(&ctx.app(), &ids, false, &reason)
            .await
            .map_err(|e| anyhow::anyhow!("keys could not be revoked: {e}"))?;
        changed += u64::try_from(revoked.len()).unwrap_or(0);
    }
    let revoked = targeted(ctx).filter(key::Column::RevokedAt.is_not_null()).count(&ctx.state.db).await?;
    Ok(Outcome::Done(json!({"revoked": revoked, "changed": changed})))
}

async fn shorten(ctx: &RunCtx<'_>, end: DateTime<Utc>) -> anyhow::Result<Outcome> {
    let mut changed = 0u64;
    let open: Vec<rotation_entity::Model> = if let Some(r) = &ctx.target.rotation_id {
        rotations::get(&ctx.state.db, &ctx.tenant, &RotationId::from_trusted(r.clone())).await.map(|r| vec![r])?
    } else {
        let mut out = Vec::new();
        let ids: Vec<String> = targeted(ctx)
            .filter(key::Column::GraceEndsAt.gt(end.max(Utc::now())))
            .select_only()
            .column(key::Column::Id)
            .into_tuple()
            .all(&ctx.state.db)
            .await?;
        for id in ids {
            out.extend(rotations::open_from(&ctx.state.db, &id).await?);
        }
        out
    };
    for r in open {
        if r.state != "in_progress" || r.grace_ends_at <= end {
            continue;
        }
        rotation::shorten(&ctx.app(), &RotationId::from_trusted(r.id.clone()), end)
            .await
            .map_err(|e| anyhow::anyhow!("the grace of rotation {} could not be shortened: {e}", r.id))?;
        changed += 1;
    }
    Ok(Outcome::Done(json!({"shortened": changed, "changed": changed, "grace_ends_at": crate::time::rfc3339(end)})))
}

async fn rollback(ctx: &RunCtx<'_>) -> anyhow::Result<Outcome> {
    let Some(id) = &ctx.target.rotation_id else {
        return Ok(Outcome::Fail { evidence: json!({}), error: "rollback needs a rotation target".into() });
    };
    let id = RotationId::from_trusted(id.clone());
    let r = rotations::get(&ctx.state.db, &ctx.tenant, &id).await?;
    if r.state == "rolled_back" {
        return Ok(Outcome::Done(json!({"rotation_id": r.id, "state": r.state, "changed": 0})));
    }
    Ok(match rotation::rollback(&ctx.app(), &id).await {
        Ok(r) => Outcome::Done(json!({"rotation_id": r.id, "state": r.state, "changed": 1})),
        Err(ServiceError::Internal(e)) => return Err(e),
        Err(e) => Outcome::Fail { evidence: json!({"rotation_id": r.id, "state": r.state}), error: e.to_string() },
    })
}

/// One notice per consumer concerned, to its own endpoints and by email, in one transaction.
async fn notify(ctx: &RunCtx<'_>, message: Option<&str>) -> anyhow::Result<Outcome> {
    let consumer_ids: Vec<Option<String>> = if let Some(r) = &ctx.target.rotation_id {
        let r = rotations::get(&ctx.state.db, &ctx.tenant, &RotationId::from_trusted(r.clone())).await?;
        key::Entity::find_by_id(r.from_key_id)
            .select_only()
            .column(key::Column::ConsumerId)
            .into_tuple()
            .all(&ctx.state.db)
            .await?
    } else {
        targeted(ctx).select_only().column(key::Column::ConsumerId).distinct().into_tuple().all(&ctx.state.db).await?
    };
    let ids: Vec<String> = consumer_ids.into_iter().flatten().collect();
    let mut items = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let found = consumer::Entity::find()
            .filter(consumer::Column::TenantId.eq(ctx.tenant.as_str()))
            .filter(consumer::Column::Id.is_in(chunk.iter().map(String::as_str)))
            .all(&ctx.state.db)
            .await?;
        for c in found {
            let data = json!({
                "run_id": ctx.run.id, "playbook": ctx.run.playbook_name, "consumer_id": c.id,
                "notice": true, "message": message,
            });
            items.push((data, crate::notify::Audience { consumer_id: Some(c.id), consumer_email: c.email }));
        }
    }
    let n = items.len();
    app::commit(&ctx.app(), async |_, change| {
        for (data, audience) in items {
            change.emit(EventType::PlaybookRunStarted, data, &audience);
        }
        Ok(())
    })
    .await?;
    Ok(Outcome::Done(json!({"consumers_notified": n})))
}

async fn drain(
    ctx: &RunCtx<'_>,
    started: DateTime<Utc>,
    quiet: TimeDelta,
    timeout: TimeDelta,
) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    let in_grace = targeted(ctx).filter(key::Column::GraceEndsAt.gt(now));
    let busy = in_grace.clone().filter(key::Column::LastUsedAt.gt(now - quiet)).count(&ctx.state.db).await?;
    let waiting = in_grace.count(&ctx.state.db).await?;
    let evidence =
        json!({"in_grace": waiting, "used_within_quiet_period": busy, "checked_at": crate::time::rfc3339(now)});
    if busy == 0 {
        return Ok(Outcome::Done(evidence));
    }
    if now >= started + timeout {
        return Ok(Outcome::Fail {
            evidence,
            error: format!("{busy} old versions were still in use when the wait timed out"),
        });
    }
    let poll = (quiet / 6).clamp(TimeDelta::seconds(5), TimeDelta::seconds(60));
    Ok(Outcome::Wait { evidence, until: Some(now + poll) })
}

/// The entries this run wrote to the audit log.
pub(crate) async fn audit_entries(
    state: &AppState,
    tenant: &TenantId,
    actor: &str,
    since: DateTime<Utc>,
) -> Result<u64, StoreError> {
    Ok(audit_event::Entity::find()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::Actor.eq(actor))
        .filter(audit_event::Column::OccurredAt.gte(since - TimeDelta::seconds(1)))
        .count(&state.db)
        .await?)
}

/// Deliveries of the tenant's notifications since `since`, by state.
pub(crate) async fn deliveries_since(
    state: &AppState,
    tenant: &TenantId,
    since: DateTime<Utc>,
) -> Result<Value, StoreError> {
    let rows: Vec<(String, i64)> = delivery::Entity::find()
        .select_only()
        .column(delivery::Column::State)
        .column_as(delivery::Column::Id.count(), "n")
        .filter(delivery::Column::TenantId.eq(tenant.as_str()))
        .filter(delivery::Column::CreatedAt.gte(since))
        .group_by(delivery::Column::State)
        .into_tuple()
        .all(&state.db)
        .await?;
    Ok(rows.into_iter().map(|(s, n)| (s, json!(n))).collect::<serde_json::Map<_, _>>().into())
}

/// What every live node answers for `hashes`, and whether each answer matches `expected`
/// (hash → accepted).
pub(crate) async fn probe(state: &AppState, expected: &[(String, bool)]) -> Result<(bool, Vec<Value>), StoreError> {
    let hashes: Vec<String> = expected.iter().map(|(h, _)| h.clone()).collect();
    let answers = nodes::probe_all(state, &hashes).await?;
    let mut all_ok = !answers.is_empty();
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        let Some(answer) = a.answer else {
            all_ok = false;
            out.push(json!({"node_id": a.node_id, "url": a.url, "error": a.error}));
            continue;
        };
        let mismatches: Vec<Value> = answer
            .results
            .iter()
            .zip(expected)
            .filter(|(r, (_, want))| r.accepted != *want)
            .map(|(r, (_, want))| json!({"hash_prefix": &r.hash[..12], "state": r.state, "expected_accepted": want}))
            .collect();
        all_ok &= mismatches.is_empty();
        out.push(json!({
            "node_id": a.node_id, "url": a.url, "checked": answer.results.len(), "mismatches": mismatches,
        }));
    }
    Ok((all_ok, out))
}

/// Whether a version is accepted now, by its stored state.
pub(crate) fn accepted_now(k: &key::Model, now: DateTime<Utc>) -> bool {
    matches!(KeyState::derive(&rotation::times(k), now), KeyState::Valid | KeyState::Superseded)
}

/// A version's hash as the probe sends it.
pub(crate) fn hash_hex(k: &key::Model) -> Option<String> {
    KeyHash::from_hex(&k.hash).map(|h| h.to_hex())
}

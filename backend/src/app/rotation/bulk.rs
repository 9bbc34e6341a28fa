//! Bulk rotation (incident response): every current key of an API that matches a filter gets a
//! new version, in set-based batches — one transaction per batch for the new versions, the
//! grace windows, the rotation records, the outbox, the audit entries and the secrets held for
//! pickup. The candidates are listed once; each batch locks its rows and keeps those that are
//! still candidates. A batch that is interrupted is simply redone: rotated keys are no longer
//! current, so they are not picked again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::json;

use sea_orm::DatabaseTransaction;

use crate::app::{Actor, Change, Ctx, Permission, ServiceError, commit};
use crate::domain::rotation::{RetireMode, RotationState, Trigger};
use crate::domain::{ApiKey, EventType, KeyHash, KeyHead, KeyId, KeyState, TenantId};
use crate::notify::Audience;
use crate::state::AppState;
use crate::store::entities::{consumer, key, pending_secret, rotation};
use crate::store::{StoreError, apis, insert_rows, jobs, rotations};

/// Rows per transaction.
const BATCH: usize = 1_000;
/// Batches written at once. Each batch ends by appending to the tenant's audit chain, which one
/// batch at a time may do; a third lane keeps the database busy meanwhile (on two cores: 9.9 s
/// for 100 000 keys against 10.5–11.1 s with two lanes; a fourth gained nothing).
const LANES: usize = 3;

/// Which keys of the API to rotate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// Only keys whose current version was issued before this moment.
    pub created_before: Option<DateTime<Utc>>,
    /// Only this consumer's keys.
    pub consumer_id: Option<String>,
}

/// The work, as stored in the job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkRequest {
    pub tenant_id: String,
    pub api_id: String,
    pub filter: BulkFilter,
    pub overlap_seconds: i64,
    pub compromise: bool,
    pub actor: String,
    /// Only versions issued before this moment (the request's): the new versions a run makes,
    /// also in an earlier attempt of the same job, are never rotated again.
    pub as_of: DateTime<Utc>,
    /// Started by a playbook run (the rotations' trigger says so).
    #[serde(default)]
    pub playbook: bool,
}

/// What a run would change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkPlan {
    pub keys: u64,
    pub consumer_count: u64,
    /// Up to 100 of the consumers concerned.
    pub consumers: Vec<String>,
}

fn candidates(tenant: &str, api_id: &str, f: &BulkFilter, now: DateTime<Utc>) -> sea_orm::Select<key::Entity> {
    let mut q = key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant))
        .filter(key::Column::ApiId.eq(api_id))
        .filter(key::Column::IsRoot.eq(false))
        .filter(crate::store::keys::current(now));
    if let Some(t) = f.created_before {
        q = q.filter(key::Column::CreatedAt.lt(t));
    }
    if let Some(c) = &f.consumer_id {
        q = q.filter(key::Column::ConsumerId.eq(c.as_str()));
    }
    q
}

/// The same test as [`candidates`], for a row already read: each batch looks its rows up by id
/// alone, which the planner always answers from the primary key.
fn is_candidate(k: &key::Model, api_id: &str, f: &BulkFilter, now: DateTime<Utc>) -> bool {
    k.api_id == api_id
        && !k.is_root
        && KeyState::derive(&super::times(k), now) == KeyState::Valid
        && f.created_before.is_none_or(|t| k.created_at < t)
        && f.consumer_id.as_ref().is_none_or(|c| k.consumer_id.as_ref() == Some(c))
}

/// The dry run: exactly what a run started now would rotate.
///
/// # Errors
/// Database errors.
pub async fn plan(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    api_id: &str,
    f: &BulkFilter,
) -> Result<BulkPlan, StoreError> {
    let now = Utc::now();
    let keys = candidates(tenant.as_str(), api_id, f, now).count(db).await?;
    let consumers: Vec<Option<String>> = candidates(tenant.as_str(), api_id, f, now)
        .select_only()
        .column(key::Column::ConsumerId)
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let mut consumers: Vec<String> = consumers.into_iter().flatten().collect();
    consumers.sort();
    let consumer_count = u64::try_from(consumers.len()).unwrap_or(0);
    consumers.truncate(100);
    Ok(BulkPlan { keys, consumer_count, consumers })
}

/// Runs a bulk rotation as job `job_id`, reporting `{done, total}` progress.
///
/// # Errors
/// Database errors (the job is retried; finished batches stay done).
pub async fn run(state: &AppState, job_id: &str, req: &BulkRequest) -> anyhow::Result<()> {
    let tenant = TenantId::from_trusted(req.tenant_id.clone());
    let api = apis::get(&state.db, &tenant, &crate::domain::ApiId::from_trusted(req.api_id.clone())).await?;
    let head = apis::head_of(&api)?;
    // The candidates are listed once, in id order; each batch then locks its own rows and keeps
    // those that are still candidates, so a key rotated or revoked meanwhile is left alone.
    let ids: Vec<String> = candidates(tenant.as_str(), &req.api_id, &req.filter, Utc::now())
        .filter(key::Column::CreatedAt.lt(req.as_of))
        .select_only()
        .column(key::Column::Id)
        .order_by_asc(key::Column::Id)
        .into_tuple()
        .all(&state.db)
        .await?;
    let left = u64::try_from(ids.len()).unwrap_or(u64::MAX);
    // Taken over from a node that stopped halfway, the job keeps counting from where it was:
    // the keys that node rotated are no longer candidates, but they are part of the job.
    let before = jobs::get(&state.db, job_id)
        .await
        .ok()
        .filter(|j| j.progress["api_id"] == req.api_id.as_str())
        .and_then(|j| j.progress["total"].as_u64());
    let total = before.filter(|t| *t >= left).unwrap_or(left);
    if state.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Fresh statistics before a hundred batches of lookups by lineage: a table just filled
        // by an import has none yet, and the planner would scan it whole for every batch.
        state.db.execute_unprepared("ANALYZE keys").await?;
    }
    let mut done = total - left;
    let progress = |done: u64| json!({"done": done, "total": total, "api_id": req.api_id});
    jobs::set_progress(&state.db, job_id, progress(done)).await?;
    let shared = Arc::new((state.clone(), tenant.clone(), head, req.clone()));
    let mut lanes = tokio::task::JoinSet::new();
    let mut batches = ids.chunks(BATCH).map(<[String]>::to_vec);
    loop {
        // Batches are disjoint sets of lineages, so they are written side by side: the database
        // spends most of a batch on index and constraint work that other connections overlap.
        while lanes.len() < LANES {
            let Some(batch) = batches.next() else { break };
            let shared = Arc::clone(&shared);
            lanes.spawn(async move {
                let (state, tenant, head, req) = &*shared;
                let n = u64::try_from(batch.len()).unwrap_or(0);
                rotate_batch(state, tenant, head, req, &batch).await.map(|()| n)
            });
        }
        let Some(finished) = lanes.join_next().await else { break };
        done += finished??;
        let progress = |done: u64| json!({"done": done, "total": total, "api_id": req.api_id});
        jobs::set_progress(&state.db, job_id, progress(done)).await?;
    }
    Ok(())
}

/// Queues the rotation as a job and records who started it, in one transaction. The job acts
/// as the context's actor.
///
/// # Errors
/// Database errors.
pub async fn start(ctx: &Ctx<'_>, req: &BulkRequest, plan: &BulkPlan) -> Result<Option<String>, ServiceError> {
    ctx.require(Permission::KeysRotate)?;
    let payload =
        serde_json::to_value(req).map_err(|e| ServiceError::Internal(anyhow::anyhow!("cannot encode the job: {e}")))?;
    let mut job = jobs::NewJob::now(jobs::kind::ROTATION_BULK, payload);
    job.tenant_id = Some(ctx.tenant.as_str().to_owned());
    commit(ctx, async |txn, change| {
        let id = jobs::enqueue(txn, job).await?;
        let entry = crate::audit::Entry::new(
            "rotation.bulk_started",
            "api",
            req.api_id.clone(),
            format!(
                "Started a bulk rotation of {} keys ({} consumers){}",
                plan.keys,
                plan.consumer_count,
                if req.compromise { ", marked as a compromise" } else { "" }
            ),
        )
        .with(json!({
            "job_id": id, "filter": req.filter, "overlap_seconds": req.overlap_seconds,
            "compromise": req.compromise, "keys": plan.keys,
        }));
        change.audit(entry);
        Ok(id)
    })
    .await
}

/// A version of a lineage: id, hash, lineage, version number, end of grace.
type VersionRow = (String, String, String, i32, Option<DateTime<Utc>>);

async fn rotate_batch(
    state: &AppState,
    tenant: &TenantId,
    head: &KeyHead,
    req: &BulkRequest,
    ids: &[String],
) -> anyhow::Result<()> {
    let ctx = Ctx::acting(state, tenant.clone(), Actor::parse(&req.actor));
    commit(&ctx, async |txn, change| rotate_batch_in(state, txn, change, tenant, head, req, ids).await).await?;
    Ok(())
}

async fn rotate_batch_in(
    state: &AppState,
    txn: &DatabaseTransaction,
    change: &mut Change,
    tenant: &TenantId,
    head: &KeyHead,
    req: &BulkRequest,
    ids: &[String],
) -> Result<(), ServiceError> {
    let now = Utc::now();
    let overlap = TimeDelta::seconds(req.overlap_seconds);
    let mut batch = key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::Id.is_in(ids.iter().map(String::as_str)))
        .lock_exclusive()
        .all(txn)
        .await?;
    batch.retain(|k| is_candidate(k, &req.api_id, &req.filter, now));
    if batch.is_empty() {
        return Ok(());
    }
    let lineages: HashSet<&str> = batch.iter().map(|k| k.lineage_id.as_str()).collect();

    // Every version of these lineages: the highest version number, and the earlier versions
    // still in grace, which end now so each lineage stays within two active versions.
    let versions: Vec<VersionRow> = key::Entity::find()
        .select_only()
        .columns([key::Column::Id, key::Column::Hash, key::Column::LineageId, key::Column::Version])
        .column(key::Column::GraceEndsAt)
        .filter(key::Column::LineageId.is_in(lineages.iter().copied()))
        .into_tuple()
        .all(txn)
        .await?;
    let mut max_versions: HashMap<&str, i32> = HashMap::with_capacity(lineages.len());
    let mut ending: Vec<(&str, &str)> = Vec::new();
    for (id, hash, lineage, version, grace) in &versions {
        let max = max_versions.entry(lineage.as_str()).or_insert(*version);
        *max = (*max).max(*version);
        if grace.is_some_and(|g| g > now) {
            ending.push((id.as_str(), hash.as_str()));
        }
    }
    if !ending.is_empty() {
        key::Entity::update_many()
            .col_expr(key::Column::GraceEndsAt, Expr::value(now))
            .filter(key::Column::Id.is_in(ending.iter().map(|(id, _)| *id)))
            .exec(txn)
            .await?;
        rotation::Entity::update_many()
            .col_expr(rotation::Column::State, Expr::value(RotationState::Completed.as_str()))
            .col_expr(rotation::Column::EndedAt, Expr::value(now))
            .col_expr(rotation::Column::Reason, Expr::value("retired by a bulk rotation"))
            .filter(rotation::Column::FromKeyId.is_in(ending.iter().map(|(id, _)| *id)))
            .filter(rotation::Column::State.eq(RotationState::InProgress.as_str()))
            .exec(txn)
            .await?;
    }

    let consumer_ids: HashSet<&str> = batch.iter().filter_map(|k| k.consumer_id.as_deref()).collect();
    let emails: HashMap<String, Option<String>> = consumer::Entity::find()
        .select_only()
        .columns([consumer::Column::Id, consumer::Column::Email])
        .filter(consumer::Column::Id.is_in(consumer_ids))
        .into_tuple()
        .all(txn)
        .await?
        .into_iter()
        .collect();

    let mut new_keys = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    let mut held = Vec::new();

    let grace = now + overlap;
    for old in &batch {
        let secret = ApiKey::generate(head);
        let id = KeyId::generate().into_string();
        let version = max_versions.get(old.lineage_id.as_str()).copied().unwrap_or(old.version) + 1;
        let old_grace = old.expires_at.map_or(grace, |e| e.min(grace));
        let record = rotations::new_record(
            tenant,
            &old.lineage_id,
            &old.id,
            &id,
            if req.playbook { Trigger::Playbook } else { Trigger::Api }.as_str(),
            Some(req.actor.clone()),
            RetireMode::AtDeadline.as_str(),
            req.compromise,
            old_grace,
        );
        let mut data = super::event_data(&record, old);
        data["new_key_id"] = json!(id);
        data["new_version"] = json!(version);
        data["bulk"] = json!(true);
        let audience = Audience {
            consumer_id: old.consumer_id.clone(),
            consumer_email: old.consumer_id.as_ref().and_then(|c| emails.get(c).cloned().flatten()),
        };
        change.emit(EventType::RotationStarted, data, &audience);
        if let Some(mk) = &state.master_key
            && let Some(sealed) = mk.seal(secret.expose().as_bytes())
        {
            held.push(pending_secret::Model {
                key_id: id.clone(),
                tenant_id: tenant.as_str().to_owned(),
                lineage_id: old.lineage_id.clone(),
                sealed,
                created_at: now,
                expires_at: old_grace + TimeDelta::days(7),
            });
        }
        change.created(secret.hash());
        records.push(record);
        new_keys.push(key::Model {
            id,
            version,
            hash: secret.hash().to_hex(),
            start: secret.start().to_owned(),
            // The lineage keeps its expiry (`..old`): a rotation renews the secret, not the lease.
            grace_ends_at: None,
            superseded_at: None,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            created_by: Some(req.actor.clone()),
            created_at: now,
            updated_at: now,
            ..old.clone()
        });
    }
    insert_rows::<key::Entity>(txn, &new_keys).await?;
    // Grace never outlasts a key's own expiry.
    key::Entity::update_many()
        .col_expr(key::Column::SupersededAt, Expr::value(now))
        .col_expr(
            key::Column::GraceEndsAt,
            Expr::case(key::Column::ExpiresAt.lt(grace), Expr::col(key::Column::ExpiresAt)).finally(grace).into(),
        )
        .col_expr(key::Column::UpdatedAt, Expr::value(now))
        .filter(key::Column::Id.is_in(batch.iter().map(|k| k.id.as_str())))
        .exec(txn)
        .await?;
    insert_rows::<rotation::Entity>(txn, &records).await?;
    insert_rows::<pending_secret::Entity>(txn, &held).await?;
    // One entry per key, like a single rotation, so a key's own audit trail shows it.
    for ((old, r), new) in batch.iter().zip(&records).zip(&new_keys) {
        let mut e = super::rotated_entry(r, old, new, 0);
        e.summary.push_str(" (bulk rotation)");
        change.audit(e);
    }
    change.invalidate(batch.iter().filter_map(|k| KeyHash::from_hex(&k.hash)));
    change.invalidate(ending.iter().filter_map(|(_, h)| KeyHash::from_hex(h)));
    Ok(())
}

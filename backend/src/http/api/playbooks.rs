//! `/v1/playbooks` and `/v1/playbook-runs`: the built-in and the team's own incident playbooks,
//! dry runs, runs and their approval.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::views::Checks;
use crate::app::ServiceError;
use crate::domain::{PlaybookId, RunId, TenantId};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::playbooks::catalogue::{self, Definition, Step, TargetKind};
use crate::playbooks::runs::{self, ApproveError, RunPlan, StepRecord, Target};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::entities::{playbook, playbook_run};

/// A playbook, built-in or the team's own.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybookView {
    /// A built-in playbook's name (`leaked_key`, `compromised_consumer`, `mass_rotation`,
    /// `rollback_rotation`) or `pbk_…`.
    pub id: String,
    pub builtin: bool,
    pub name: String,
    pub description: String,
    pub target: TargetKind,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<Step>,
    /// One sentence per step.
    pub step_descriptions: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl PlaybookView {
    #[must_use]
    pub fn of(id: String, builtin: bool, d: Definition, created_at: Option<DateTime<Utc>>) -> Self {
        let step_descriptions = d.steps.iter().map(Step::describe).collect();
        Self {
            id,
            builtin,
            name: d.name,
            description: d.description,
            target: d.target,
            steps: d.steps,
            step_descriptions,
            created_at,
        }
    }
}

/// The playbooks.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaybookList {
    pub data: Vec<PlaybookView>,
}

/// `POST /v1/playbooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookBody {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `key`, `consumer`, `api` or `rotation`.
    pub target: String,
    /// Steps from the catalogue, in order: `{"kind": "rotate", "overlap_seconds": 900}`,
    /// `revoke`, `shorten_grace` (`grace_seconds`), `rollback`, `notify` (`message`),
    /// `wait_for_drain` (`quiet_seconds`, `timeout_seconds`), `require_approval`, `validate`.
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<Value>,
}

/// `POST /v1/playbooks/{id}/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    pub target: Target,
    #[serde(default)]
    pub dry_run: bool,
}

/// A run, with each step's state and evidence.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub playbook_id: String,
    pub playbook: String,
    pub target: Target,
    /// `running`, `waiting`, `awaiting_approval`, `completed` or `failed`.
    pub state: String,
    pub current_step: i32,
    pub steps: Vec<StepRecord>,
    /// Steps done out of all, with the current step's own progress, as a percentage.
    pub progress_percent: u32,
    /// The current step's progress while it runs, when it reports one (`{done, total}` keys).
    #[schema(value_type = Option<Object>)]
    pub step_progress: Option<Value>,
    pub started_by: String,
    pub approved_by: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<playbook_run::Model> for RunView {
    fn from(r: playbook_run::Model) -> Self {
        let steps = runs::steps_of(&r);
        let done = steps.iter().filter(|s| s.state == "done").count();
        let progress_percent = u32::try_from(done * 100 / steps.len().max(1)).unwrap_or(100);
        Self {
            id: r.id,
            playbook_id: r.playbook_id,
            playbook: r.playbook_name,
            target: serde_json::from_value(r.target).unwrap_or_default(),
            state: r.state,
            current_step: r.current_step,
            steps,
            progress_percent,
            step_progress: None,
            started_by: r.started_by,
            approved_by: r.approved_by,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// A run as shown: with the progress of a step that is running, from its job.
///
/// # Errors
/// Database errors.
pub async fn view(state: &AppState, r: playbook_run::Model) -> Result<RunView, StoreError> {
    let job = match (&r.job_id, r.state == runs::state::RUNNING) {
        (Some(id), true) => crate::store::jobs::get(&state.db, id).await.ok(),
        _ => None,
    };
    let mut v = RunView::from(r);
    let progress = job.map(|j| j.progress).filter(|p| p["total"].as_u64().is_some_and(|t| t > 0));
    if let Some(p) = progress {
        let (done, total) = (p["done"].as_u64().unwrap_or(0), p["total"].as_u64().unwrap_or(1).max(1));
        let steps = u64::try_from(v.steps.len().max(1)).unwrap_or(1);
        let finished = u64::try_from(v.steps.iter().filter(|s| s.state == "done").count()).unwrap_or(0);
        v.progress_percent = u32::try_from((finished * total + done.min(total)) * 100 / (steps * total)).unwrap_or(100);
        v.step_progress = Some(p);
    }
    Ok(v)
}

/// A dry run's answer, or a started run's.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAnswer {
    pub dry_run: bool,
    pub plan: RunPlan,
    pub run: Option<RunView>,
}

/// Runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<RunView>,
}

fn stored_definition(p: &playbook::Model) -> Definition {
    Definition {
        name: p.name.clone(),
        description: p.description.clone(),
        target: serde_json::from_value(Value::String(p.target_kind.clone())).unwrap_or(TargetKind::Key),
        steps: serde_json::from_value(p.steps.clone()).unwrap_or_default(),
    }
}

/// The playbook `id` of the tenant: built-in or its own.
///
/// # Errors
/// 404, database errors.
pub async fn find(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
) -> Result<(String, bool, Definition, Option<DateTime<Utc>>), ApiError> {
    if let Some(b) = catalogue::builtin(id) {
        return Ok((b.id.to_owned(), true, b.definition, None));
    }
    let pid = PlaybookId::parse(id).map_err(|_| ApiError::NotFound("no such playbook"))?;
    let p = crate::store::playbooks::get(&state.db, tenant, &pid).await?;
    Ok((p.id.clone(), false, stored_definition(&p), Some(p.created_at)))
}

/// The built-in playbooks and the team's own.
///
/// # Errors
/// Database errors.
pub async fn all(state: &AppState, tenant: &TenantId) -> Result<Vec<PlaybookView>, ApiError> {
    let mut out: Vec<PlaybookView> = catalogue::builtins()
        .into_iter()
        .map(|b| PlaybookView::of(b.id.to_owned(), true, b.definition, None))
        .collect();
    for p in crate::store::playbooks::list(&state.db, tenant).await? {
        out.push(PlaybookView::of(p.id.clone(), false, stored_definition(&p), Some(p.created_at)));
    }
    Ok(out)
}

/// Checks a playbook body into a definition, naming every problem.
///
/// # Errors
/// 400 with one entry per problem.
pub fn definition_of(b: &PlaybookBody) -> Result<Definition, ApiError> {
    let mut c = Checks::default();
    let target = match serde_json::from_value::<TargetKind>(Value::String(b.target.clone())) {
        Ok(t) => Some(t),
        Err(_) => {
            c.push("target", "must be key, consumer, api or rotation");
            None
        }
    };
    let mut steps = Vec::with_capacity(b.steps.len());
    for (i, raw) in b.steps.iter().enumerate() {
        match serde_json::from_value::<Step>(raw.clone()) {
            Ok(s) => steps.push(s),
            Err(e) => c.push(format!("steps[{i}]"), format!("is not a step of the catalogue: {e}")),
        }
    }
    if let Some(target) = target
        && c.0.is_empty()
    {
        let d =
            Definition { name: b.name.trim().to_owned(), description: b.description.trim().to_owned(), target, steps };
        for p in d.problems() {
            c.push(p.field, p.message);
        }
        c.finish()?;
        return Ok(d);
    }
    if b.steps.is_empty() {
        c.push("steps", "must have 1 to 20 steps");
    }
    c.finish()?;
    Err(ApiError::field("steps", "are not valid"))
}

/// List the playbooks: the built-in ones, then the team's own.
#[utoipa::path(get, path = "/v1/playbooks", tag = "playbooks",
    responses((status = 200, body = PlaybookList)), security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, root: Root) -> Result<web::Json<PlaybookList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    Ok(web::Json(PlaybookList { data: all(&state, &root.tenant_id).await? }))
}

/// Create a playbook from the step catalogue.
#[utoipa::path(post, path = "/v1/playbooks", tag = "playbooks", request_body = PlaybookBody,
    responses((status = 201, body = PlaybookView), (status = 400, body = Problem)), security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    root: Root,
    body: Body<PlaybookBody>,
) -> Result<HttpResponse, ApiError> {
    let d = definition_of(&body.value)?;
    let p = crate::playbooks::create(&root.ctx(&state), &d).await?;
    Ok(HttpResponse::Created().json(PlaybookView::of(p.id.clone(), false, d, Some(p.created_at))))
}

/// Read a playbook.
#[utoipa::path(get, path = "/v1/playbooks/{id}", tag = "playbooks", params(("id" = String, Path)),
    responses((status = 200, body = PlaybookView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<PlaybookView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let (id, builtin, d, at) = find(&state, &root.tenant_id, &id).await?;
    Ok(web::Json(PlaybookView::of(id, builtin, d, at)))
}

/// Checks a run's target against the playbook, as field errors.
///
/// # Errors
/// 400 naming the target field, 404-free (a missing object is a field error), database errors.
pub async fn checked_target(
    state: &AppState,
    tenant: &TenantId,
    d: &Definition,
    t: &Target,
) -> Result<Target, ApiError> {
    match t.check(&state.db, tenant, d.target).await {
        Ok(t) => Ok(t),
        Err(Ok(e)) => Err(e.into()),
        Err(Err(e)) => Err(ApiError::field(e.field, e.message)),
    }
}

/// Run a playbook, or with `dry_run` see exactly what it would change.
#[utoipa::path(post, path = "/v1/playbooks/{id}/runs", tag = "playbooks", params(("id" = String, Path)),
    request_body = RunBody,
    responses((status = 200, body = RunAnswer, description = "dry run"), (status = 202, body = RunAnswer),
        (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn run(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<RunBody>,
) -> Result<HttpResponse, ApiError> {
    root.require(crate::app::Permission::PlaybooksRun)?;
    let (pid, _, d, _) = find(&state, &root.tenant_id, &id).await?;
    let target = checked_target(&state, &root.tenant_id, &d, &body.value.target).await?;
    let plan = runs::plan(&state.db, &root.tenant_id, &d, &target).await?;
    if body.value.dry_run {
        return Ok(HttpResponse::Ok().json(RunAnswer { dry_run: true, plan, run: None }));
    }
    let run = runs::start(&root.ctx(&state), &pid, &d, &target, Utc::now()).await?;
    Ok(HttpResponse::Accepted().json(RunAnswer { dry_run: false, plan, run: Some(run.into()) }))
}

fn parse_run(id: &str) -> Result<RunId, ApiError> {
    RunId::parse(id).map_err(|_| ApiError::NotFound("no such playbook run"))
}

/// Read a run: each step's state, timing and evidence.
#[utoipa::path(get, path = "/v1/playbook-runs/{id}", tag = "playbooks", params(("id" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get_run(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RunView>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    Ok(web::Json(
        view(&state, crate::store::playbooks::get_run(&state.db, &root.tenant_id, &parse_run(&id)?).await?).await?,
    ))
}

/// The latest runs (up to 100), newest first.
#[utoipa::path(get, path = "/v1/playbook-runs", tag = "playbooks",
    responses((status = 200, body = RunList)), security(("root_key" = [])))]
pub async fn list_runs(state: web::Data<AppState>, root: Root) -> Result<web::Json<RunList>, ApiError> {
    root.require(crate::app::Permission::KeysRead)?;
    let rows = crate::store::playbooks::list_runs(&state.db, &root.tenant_id, 100).await?;
    Ok(web::Json(RunList { data: rows.into_iter().map(Into::into).collect() }))
}

/// Approve a run waiting for a second person (not the one who started it).
#[utoipa::path(post, path = "/v1/playbook-runs/{id}/approve", tag = "playbooks", params(("id" = String, Path)),
    responses((status = 200, body = RunView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn approve(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<RunView>, ApiError> {
    root.require(crate::app::Permission::PlaybooksRun)?;
    match runs::approve(&root.ctx(&state), &parse_run(&id)?).await {
        Ok(r) => Ok(web::Json(r.into())),
        Err(ApproveError::NotWaiting) => Err(ApiError::Conflict(ApproveError::NotWaiting.to_string())),
        Err(ApproveError::SamePerson) => Err(ApiError::Forbidden(ApproveError::SamePerson.to_string())),
        Err(ApproveError::Service(ServiceError::NotFound(_))) => Err(ApiError::NotFound("no such playbook run")),
        Err(ApproveError::Service(e)) => Err(e.into()),
    }
}

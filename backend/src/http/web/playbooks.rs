//! Incident playbooks in the browser: the built-in and the team's own playbooks, a playbook of
//! one's own built from the step catalogue, a run started after an exact dry run, and each run's
//! page with its steps' evidence and live progress (it refreshes itself while the run goes on),
//! where a second person approves it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::app::Chrome;
use super::session::{FormErrors, Signed, WebError, page, page_with, see_other};
use crate::domain::RunId;
use crate::http::api::playbooks::{
    PlaybookBody, PlaybookView, RunView, all, checked_target, definition_of, find, view,
};
use crate::http::errors::ApiError;
use crate::playbooks::catalogue::TargetKind;
use crate::playbooks::runs::{self, ApproveError, RunPlan, Target};
use crate::state::AppState;
use crate::store::apis;
use crate::store::entities::api;

/// One line per step: how the new-playbook form writes each step of the catalogue.
const STEP_SYNTAX: &[(&str, &str)] = &[
    ("rotate 3600", "new version; the old one valid for 3600 s"),
    ("revoke", "refuse the keys at once"),
    ("shorten_grace 900", "end old versions' grace within 900 s"),
    ("rollback", "undo the rotation (rotation playbooks)"),
    ("notify Your message", "tell each consumer (message optional)"),
    ("wait_for_drain 900 3600", "until old versions are quiet 900 s, at most 3600 s"),
    ("require_approval", "wait for a second person"),
    ("validate", "check every node, notifications and the audit log"),
];

#[derive(Template)]
#[template(path = "app/playbooks.html")]
struct PlaybooksPage<'a> {
    c: Chrome,
    playbooks: Vec<PlaybookView>,
    runs: Vec<(RunView, RunRow)>,
    form: &'a NewForm,
    errors: &'a FormErrors,
    line_errors: Vec<String>,
    syntax: &'static [(&'static str, &'static str)],
}

/// What the new-playbook form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewForm {
    pub csrf: String,
    pub name: String,
    pub description: String,
    pub target: String,
    /// One step per line (see [`STEP_SYNTAX`]).
    pub steps: String,
}

/// `GET /app/playbooks`.
pub async fn playbooks_page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    let form = NewForm { target: "key".into(), steps: "rotate 3600\nnotify\nvalidate".into(), ..NewForm::default() };
    render_list(&state, &me, &form, &FormErrors::new(), Vec::new(), StatusCode::OK).await
}

async fn render_list(
    state: &AppState,
    me: &Signed,
    form: &NewForm,
    errors: &FormErrors,
    line_errors: Vec<String>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = me.tenant_id();
    let playbooks = all(state, &t).await.map_err(api_to_web)?;
    let views: Vec<RunView> =
        crate::store::playbooks::list_runs(&state.db, &t, 20).await?.into_iter().map(RunView::from).collect();
    let names = super::names::Names::of(state, &t, views.iter().flat_map(ids_of).collect::<Vec<_>>()).await?;
    let actors = super::audit::Actors::of(state, me).await?;
    let runs = views
        .into_iter()
        .map(|r| {
            let row = RunRow::of(&r, &names, &actors);
            (r, row)
        })
        .collect();
    let p = PlaybooksPage {
        c: Chrome::of(me, "playbooks"),
        playbooks,
        runs,
        form,
        errors,
        line_errors,
        syntax: STEP_SYNTAX,
    };
    page_with(status, &p)
}

fn api_to_web(e: ApiError) -> WebError {
    match e {
        ApiError::NotFound(_) => WebError::NotFound,
        other => WebError::Internal(anyhow::anyhow!("{other}")),
    }
}

/// A step line as the API's JSON: `shorten_grace 900` → `{"kind": "shorten_grace", "grace_seconds": 900}`.
fn step_of_line(line: &str) -> Value {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default().to_lowercase();
    let rest: Vec<&str> = words.collect();
    let num = |i: usize| rest.get(i).map(|w| w.parse::<i64>().map_or_else(|_| json!(w), |n| json!(n)));
    let mut step = json!({"kind": kind});
    let params: &[&str] = match kind.as_str() {
        "rotate" => &["overlap_seconds"],
        "shorten_grace" => &["grace_seconds"],
        "wait_for_drain" => &["quiet_seconds", "timeout_seconds"],
        "notify" => {
            if !rest.is_empty() {
                step["message"] = json!(rest.join(" "));
            }
            &[]
        }
        _ => &[],
    };
    for (i, name) in params.iter().enumerate() {
        if let Some(v) = num(i) {
            step[*name] = v;
        }
    }
    if params.len() < rest.len() && kind != "notify" {
        step["unexpected"] = json!(rest[params.len()..].join(" "));
    }
    step
}

/// The steps a line may start with, and how many numbers (seconds) each takes.
const STEP_KINDS: &[(&str, usize)] = &[
    ("rotate", 1),
    ("revoke", 0),
    ("shorten_grace", 1),
    ("rollback", 0),
    ("notify", 0),
    ("wait_for_drain", 2),
    ("require_approval", 0),
    ("validate", 0),
];

/// Edit distance of two short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// What is wrong with one step line, in plain words (`None` when the catalogue will take it).
fn line_problem(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default().to_lowercase();
    let rest: Vec<&str> = words.collect();
    let Some((_, takes)) = STEP_KINDS.iter().find(|(k, _)| *k == kind) else {
        let near = STEP_KINDS.iter().map(|(k, _)| (distance(&kind, k), *k)).min().filter(|(d, _)| *d <= 2);
        let hint = near.map_or_else(String::new, |(_, k)| format!(" Did you mean “{k}”?"));
        let all: Vec<&str> = STEP_KINDS.iter().map(|(k, _)| *k).collect();
        return Some(format!("“{kind}” is not a step.{hint} The steps are {}.", all.join(", ")));
    };
    if kind == "notify" {
        return None;
    }
    if let Some(extra) = rest.get(*takes..).filter(|x| !x.is_empty()) {
        let n = match takes {
            0 => "no number".to_owned(),
            1 => "one number of seconds".to_owned(),
            t => format!("{t} numbers of seconds"),
        };
        return Some(format!("“{kind}” takes {n}; remove “{}”.", extra.join(" ")));
    }
    rest.iter()
        .find(|w| w.parse::<u64>().is_err())
        .map(|w| format!("“{w}” is not a whole number of seconds (write 3600 for an hour)."))
}

/// `POST /app/playbooks`: a playbook of the team's own.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<NewForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let lines: Vec<&str> = form.steps.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut errors = FormErrors::new();
    // Lines the catalogue would refuse with a parser's words are explained here instead, and
    // left out of the check of the rest, so that every other error shows in the same answer.
    let mut line_errors: Vec<String> = Vec::new();
    let mut explained = std::collections::HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(p) = line_problem(l) {
            line_errors.push(format!("Line {}: {p}", i + 1));
            explained.insert(i + 1);
        }
    }
    let body = PlaybookBody {
        name: form.name.clone(),
        description: form.description.clone(),
        target: form.target.clone(),
        steps: lines
            .iter()
            .enumerate()
            .map(|(i, l)| if explained.contains(&(i + 1)) { step_of_line("validate") } else { step_of_line(l) })
            .collect(),
    };
    match definition_of(&body) {
        Ok(_) if !line_errors.is_empty() => {
            errors.insert("steps", "Some steps need a correction.".into());
        }
        Ok(d) => match crate::playbooks::create(&me.ctx(&state), &d).await {
            Ok(_) => return Ok(see_other("/app/playbooks")),
            Err(crate::app::ServiceError::Conflict(m)) => drop(errors.insert("name", format!("Not saved: {m}."))),
            Err(other) => return Err(other.into()),
        },
        Err(ApiError::Validation { errors: list, .. }) => {
            for e in list {
                match e.field.as_str() {
                    "name" => drop(errors.insert("name", format!("The name {}.", e.message))),
                    "description" => drop(errors.insert("description", format!("The description {}.", e.message))),
                    "target" => drop(errors.insert("target", "Choose what the playbook acts on.".into())),
                    "steps" => drop(errors.insert("steps", format!("The steps {}.", e.message))),
                    f => {
                        let line = f
                            .strip_prefix("steps[")
                            .and_then(|r| r.split(']').next())
                            .and_then(|n| n.parse::<usize>().ok())
                            .map_or(0, |n| n + 1);
                        if !explained.contains(&line) {
                            line_errors.push(format!("Line {line}: {}", e.message));
                        }
                    }
                }
            }
            if !line_errors.is_empty() {
                errors.entry("steps").or_insert_with(|| "Some steps need a correction.".into());
            }
        }
        Err(other) => return Err(api_to_web(other)),
    }
    line_errors.sort_by_key(|l| l.trim_start_matches("Line ").split(':').next().and_then(|n| n.parse::<usize>().ok()));
    render_list(&state, &me, &form, &errors, line_errors, StatusCode::UNPROCESSABLE_ENTITY).await
}

#[derive(Template)]
#[template(path = "app/playbook.html")]
struct PlaybookPage<'a> {
    c: Chrome,
    p: PlaybookView,
    apis: Vec<api::Model>,
    form: &'a RunForm,
    errors: &'a FormErrors,
    plan: Option<RunPlan>,
    /// The choices of the target picker (keys, consumers or rotations).
    picks: Vec<super::picks::Pick>,
    /// The chosen target by name, for the dry run.
    target_name: String,
    /// The consumers of the dry run's sample, by name.
    names: super::names::Names,
}

/// What the run form sends: the one target field the playbook needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunForm {
    pub csrf: String,
    pub target_id: String,
    /// `YYYY-MM-DD HH:MM` (UTC), for an API target.
    pub created_before: String,
    /// `confirm` on the second step.
    pub step: String,
    /// Set by the picker's search button: list the matches, do nothing else.
    pub find: String,
    /// What the picker searches for.
    pub target_q: String,
}

/// The playbook page's query: a target to choose at once (from a key's or consumer's page).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PlaybookQuery {
    pub target: String,
}

/// `GET /app/playbooks/{id}`.
pub async fn playbook_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<PlaybookQuery>,
) -> Result<HttpResponse, WebError> {
    let form = RunForm { target_id: q.target.clone(), ..RunForm::default() };
    render_playbook(&state, &me, &id, &form, &FormErrors::new(), None, StatusCode::OK).await
}

async fn render_playbook(
    state: &AppState,
    me: &Signed,
    id: &str,
    form: &RunForm,
    errors: &FormErrors,
    plan: Option<RunPlan>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = me.tenant_id();
    let (pid, builtin, d, at) = find(state, &t, id).await.map_err(api_to_web)?;
    let apis = apis::list(&state.db, &t, 100, None).await?.items;
    let (q, chosen) = (form.target_q.as_str(), form.target_id.trim());
    let picks = match d.target {
        TargetKind::Key => super::picks::keys(state, &t, q, chosen).await?,
        TargetKind::Consumer => super::picks::consumers(state, &t, q, chosen).await?,
        TargetKind::Rotation => super::picks::rotations(state, &t).await?,
        TargetKind::Api => Vec::new(),
    };
    let target_name = picks
        .iter()
        .find(|p| p.value == chosen)
        .map(|p| p.label.clone())
        .or_else(|| apis.iter().find(|a| a.id == chosen).map(|a| a.name.clone()))
        .unwrap_or_else(|| chosen.to_owned());
    let sample = plan.iter().flat_map(|p| p.sample.iter().filter_map(|k| k["consumer_id"].as_str()));
    let names = super::names::Names::of(state, &t, sample.collect::<Vec<_>>()).await?;
    let p = PlaybookView::of(pid, builtin, d, at);
    let page = PlaybookPage { c: Chrome::of(me, "playbooks"), p, apis, form, errors, plan, picks, target_name, names };
    page_with(status, &page)
}

/// `POST /app/playbooks/{id}/run`: the dry run, then (`step=confirm`) the run.
pub async fn run(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RunForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let t = me.tenant_id();
    let (pid, _, d, _) = find(&state, &t, &id).await.map_err(api_to_web)?;
    let mut errors = FormErrors::new();
    if !form.find.is_empty() {
        return render_playbook(&state, &me, &id, &form, &errors, None, StatusCode::OK).await;
    }
    if form.target_id.trim().is_empty() && d.target != TargetKind::Api {
        errors.insert("target_id", format!("Choose the {} to act on.", d.target.as_str()));
        return render_playbook(&state, &me, &id, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let raw = form.target_id.trim().to_owned();
    let mut target = Target::default();
    match d.target {
        TargetKind::Key => target.key_id = Some(raw),
        TargetKind::Consumer => target.consumer_id = Some(raw),
        TargetKind::Api => target.api_id = Some(raw),
        TargetKind::Rotation => target.rotation_id = Some(raw),
    }
    let before = form.created_before.trim();
    if d.target == TargetKind::Api && !before.is_empty() {
        match NaiveDateTime::parse_from_str(before, "%Y-%m-%d %H:%M") {
            Ok(at) => target.created_before = Some(at.and_utc()),
            Err(_) => {
                drop(errors.insert("created_before", "Enter a UTC time as 2026-11-30 14:00, or leave it empty.".into()))
            }
        }
    }
    if errors.is_empty() {
        match checked_target(&state, &t, &d, &target).await {
            Ok(checked) => target = checked,
            Err(ApiError::Validation { errors: list, .. }) => {
                let what = list.first().map_or_else(String::new, |e| e.message.clone());
                errors.insert("target_id", format!("This {what}."));
            }
            Err(other) => return Err(api_to_web(other)),
        }
    }
    if !errors.is_empty() {
        return render_playbook(&state, &me, &id, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    if form.step != "confirm" {
        let plan = runs::plan(&state.db, &t, &d, &target).await?;
        return render_playbook(&state, &me, &id, &form, &errors, Some(plan), StatusCode::OK).await;
    }
    let run = runs::start(&me.ctx(&state), &pid, &d, &target, Utc::now()).await?;
    Ok(see_other(&format!("/app/playbook-runs/{}", run.id)))
}

#[derive(Template)]
#[template(path = "app/playbook_run.html")]
struct RunPage {
    c: Chrome,
    r: RunView,
    row: RunRow,
    /// Evidence of each step, as label–value rows.
    evidence: Vec<Vec<(String, String)>>,
    /// Each step's state in words.
    step_states: Vec<String>,
    can_approve: bool,
    error: Option<String>,
}

/// A run as lists and its page show it: its target and people by name, its state in words.
pub struct RunRow {
    pub target: String,
    pub target_href: Option<String>,
    pub started_by: String,
    pub approved_by: Option<String>,
    pub state: String,
    pub started: super::app::When,
    pub finished: Option<super::app::When>,
}

impl RunRow {
    fn of(r: &RunView, names: &super::names::Names, actors: &super::audit::Actors) -> Self {
        let t = &r.target;
        let (kind, id) = if let Some(k) = &t.key_id {
            ("key", k)
        } else if let Some(c) = &t.consumer_id {
            ("consumer", c)
        } else if let Some(a) = &t.api_id {
            ("every key of", a)
        } else if let Some(x) = &t.rotation_id {
            ("rotation", x)
        } else {
            ("", &String::new())
        };
        let mut target = format!("{kind} {}", names.label(id)).trim().to_owned();
        if let Some(b) = t.created_before {
            target.push_str(&format!(" issued before {}", b.format("%Y-%m-%d %H:%M UTC")));
        }
        Self {
            target,
            target_href: super::names::href(id),
            started_by: actors.label(&r.started_by),
            approved_by: r.approved_by.as_deref().map(|a| actors.label(a)),
            state: super::app::human(&r.state),
            started: super::app::When::of(r.created_at),
            finished: super::app::When::opt(r.finished_at),
        }
    }
}

/// The ids a run names, for [`super::names::Names::of`].
fn ids_of(r: &RunView) -> impl Iterator<Item = &str> {
    let t = &r.target;
    [&t.key_id, &t.consumer_id, &t.api_id].into_iter().filter_map(|x| x.as_deref())
}

/// Evidence as label–value rows: nested objects by their path, lists of values joined, lists of
/// objects one row per item field (`keys 1 · start`); at most 60 rows.
#[must_use]
pub fn evidence_rows(v: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        let label = |k: &str| {
            if prefix.is_empty() { k.replace('_', " ") } else { format!("{prefix} · {}", k.replace('_', " ")) }
        };
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    walk(&label(k), x, out);
                }
            }
            Value::Array(items) if items.iter().any(|x| x.is_object() || x.is_array()) => {
                for (i, x) in items.iter().enumerate() {
                    walk(&format!("{prefix} {}", i + 1), x, out);
                }
                if items.is_empty() {
                    out.push((prefix.to_owned(), "none".into()));
                }
            }
            Value::Array(items) => {
                let text: Vec<String> = items.iter().map(scalar).collect();
                out.push((prefix.to_owned(), if text.is_empty() { "none".into() } else { text.join(", ") }));
            }
            other => out.push((prefix.to_owned(), scalar(other))),
        }
    }
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Bool(true) => "yes".into(),
            Value::Bool(false) => "no".into(),
            Value::Null => "—".into(),
            other => other.to_string(),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    if out.len() > 60 {
        let more = out.len() - 59;
        out.truncate(59);
        out.push(("…".into(), format!("{more} more rows in the run's JSON (GET /v1/playbook-runs/{{id}})")));
    }
    out
}

/// `GET /app/playbook-runs/{id}`.
pub async fn run_page(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    render_run(&state, &me, &id, None, StatusCode::OK).await
}

async fn render_run(
    state: &AppState,
    me: &Signed,
    id: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let id = RunId::parse(id).map_err(|_| WebError::NotFound)?;
    let r = view(state, crate::store::playbooks::get_run(&state.db, &me.tenant_id(), &id).await?).await?;
    let evidence = r.steps.iter().map(|s| evidence_rows(&s.evidence)).collect::<Vec<_>>();
    let step_states = r.steps.iter().map(|s| super::app::human(&s.state)).collect();
    let can_approve =
        r.state == runs::state::AWAITING_APPROVAL && r.started_by != me.actor() && me.role.can_manage_keys();
    let names = super::names::Names::of(state, &me.tenant_id(), ids_of(&r).collect::<Vec<_>>()).await?;
    let actors = super::audit::Actors::of(state, me).await?;
    let row = RunRow::of(&r, &names, &actors);
    let p = RunPage { c: Chrome::of(me, "playbooks"), r, row, evidence, step_states, can_approve, error };
    if status == StatusCode::OK { page(&p) } else { page_with(status, &p) }
}

/// What the approval form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /app/playbook-runs/{id}/approve`.
pub async fn approve(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let run_id = RunId::parse(&id).map_err(|_| WebError::NotFound)?;
    match runs::approve(&me.ctx(&state), &run_id).await {
        Ok(_) => Ok(see_other(&format!("/app/playbook-runs/{}", run_id.as_str()))),
        Err(ApproveError::Service(e)) => Err(e.into()),
        Err(e) => render_run(&state, &me, &id, Some(e.to_string()), StatusCode::CONFLICT).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_are_explained_in_plain_words() {
        assert_eq!(line_problem("rotate 3600"), None);
        assert_eq!(line_problem("notify Please switch to the new key"), None);
        assert_eq!(line_problem("wait_for_drain 900 3600"), None);
        assert!(line_problem("rotat 3600").is_some_and(|p| p.contains("Did you mean “rotate”?")));
        assert!(line_problem("explode").is_some_and(|p| !p.contains("Did you mean")));
        assert!(line_problem("rotate soon").is_some_and(|p| p.contains("“soon” is not a whole number")));
        assert!(line_problem("revoke now").is_some_and(|p| p.contains("takes no number")));
        assert!(line_problem("wait_for_drain 1 2 3").is_some_and(|p| p.contains("2 numbers of seconds")));
    }

    #[test]
    fn evidence_reads_as_rows() {
        let v = json!({
            "new_key_id": "key_1",
            "nodes": [{"node": "a", "ok": true}, {"node": "b", "ok": false}],
            "scopes": ["a:b", "c:d"],
            "empty": [],
            "grace": null,
        });
        let rows = evidence_rows(&v);
        assert!(rows.contains(&("new key id".into(), "key_1".into())), "{rows:?}");
        assert!(rows.contains(&("nodes 2 · ok".into(), "no".into())), "{rows:?}");
        assert!(rows.contains(&("scopes".into(), "a:b, c:d".into())));
        assert!(rows.contains(&("empty".into(), "none".into())));
        assert!(rows.contains(&("grace".into(), "—".into())));
        let many = json!({ "keys": (0..100).map(|i| json!({"id": i})).collect::<Vec<_>>() });
        assert_eq!(evidence_rows(&many).len(), 60, "long evidence is cut");
    }
}

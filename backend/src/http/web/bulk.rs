//! Bulk rotation in the browser: an exact dry run, a confirmation that states the count, and a
//! job page with live progress the user may leave and come back to (it refreshes itself while
//! the job runs; no JavaScript needed).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::app::Chrome;
use super::session::{FormErrors, Signed, WebError, page, page_with, see_other};
use crate::app::rotation::bulk::{BulkFilter, BulkPlan, BulkRequest, plan};
use crate::domain::ConsumerId;
use crate::state::AppState;
use crate::store::entities::api;
use crate::store::{apis, jobs};

#[derive(Template)]
#[template(path = "app/bulk.html")]
struct BulkPage<'a> {
    c: Chrome,
    apis: Vec<api::Model>,
    form: &'a BulkForm,
    errors: &'a FormErrors,
    plan: Option<BulkPlan>,
    /// The consumer picker's choices.
    picks: Vec<super::picks::Pick>,
    /// The dry run's consumers, by name.
    names: super::names::Names,
}

/// What the bulk form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BulkForm {
    pub csrf: String,
    pub api_id: String,
    pub consumer_id: String,
    /// Hours the old versions stay valid.
    pub overlap_hours: String,
    /// `on` when the keys are compromised (no rollback).
    pub compromise: String,
    /// `confirm` on the second step.
    pub step: String,
    /// Set by the consumer picker's search button: list the matches, do nothing else.
    pub find: String,
    pub consumer_q: String,
}

/// `GET /app/bulk`.
pub async fn bulk_page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    me.require_keys()?;
    let form = BulkForm { overlap_hours: "24".into(), ..BulkForm::default() };
    render(&state, &me, &form, &FormErrors::new(), None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    me: &Signed,
    form: &BulkForm,
    errors: &FormErrors,
    plan: Option<BulkPlan>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = me.tenant_id();
    let apis = apis::list(&state.db, &t, 100, None).await?.items;
    let picks = super::picks::consumers(state, &t, &form.consumer_q, form.consumer_id.trim()).await?;
    let sample = plan.iter().flat_map(|p| p.consumers.iter().map(String::as_str));
    let names = super::names::Names::of(state, &t, sample.collect::<Vec<_>>()).await?;
    page_with(status, &BulkPage { c: Chrome::of(me, "bulk"), apis, form, errors, plan, picks, names })
}

/// `POST /app/bulk`: first the dry run, then (`step=confirm`) the job.
pub async fn bulk(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<BulkForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let t = me.tenant_id();
    let mut errors = FormErrors::new();
    if !form.find.is_empty() {
        return render(&state, &me, &form, &errors, None, StatusCode::OK).await;
    }
    let api = super::app::chosen_api(&state, &t, &form.api_id, &mut errors).await?;
    let consumer = form.consumer_id.trim();
    let known = match ConsumerId::parse(consumer) {
        Ok(id) => crate::store::consumers::get(&state.db, &t, &id).await.is_ok(),
        Err(_) => false,
    };
    if !consumer.is_empty() && !known {
        errors.insert("consumer_id", "Choose a consumer from the list, or every consumer.".into());
    }
    let overlap = form.overlap_hours.trim().parse::<i64>().ok().filter(|h| (0..=720).contains(h));
    if overlap.is_none() {
        errors.insert("overlap_hours", "Enter hours from 0 to 720.".into());
    }
    let (Some(api), Some(overlap), true) = (api, overlap, errors.is_empty()) else {
        return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let filter = BulkFilter { created_before: None, consumer_id: (!consumer.is_empty()).then(|| consumer.to_owned()) };
    if form.step != "confirm" {
        let p = plan(&state.db, &t, &api.id, &filter).await?;
        return render(&state, &me, &form, &errors, Some(p), StatusCode::OK).await;
    }
    let req = BulkRequest {
        tenant_id: t.as_str().to_owned(),
        api_id: api.id,
        filter,
        overlap_seconds: overlap * 3_600,
        compromise: form.compromise == "on",
        actor: me.actor(),
        as_of: Utc::now(),
        playbook: false,
    };
    let p = plan(&state.db, &t, &req.api_id, &req.filter).await?;
    let Some(id) = crate::app::rotation::bulk::start(&me.ctx(&state), &req, &p).await? else {
        return Err(WebError::Internal(anyhow::anyhow!("the job was not queued")));
    };
    Ok(see_other(&format!("/app/jobs/{id}")))
}

#[derive(Template)]
#[template(path = "app/job.html")]
struct JobPage {
    c: Chrome,
    id: String,
    state: String,
    done: u64,
    total: u64,
    percent: u64,
    error: Option<String>,
}

/// `GET /app/jobs/{id}`: a job's progress; refreshes itself every two seconds until it ends.
pub async fn job_page(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    let id = crate::domain::JobId::parse(&id).map_err(|_| WebError::NotFound)?;
    let j = jobs::get(&state.db, id.as_str()).await?;
    if j.tenant_id.as_deref() != Some(me.tenant.id.as_str()) {
        return Err(WebError::NotFound);
    }
    let done = j.progress["done"].as_u64().unwrap_or(0);
    let total = j.progress["total"].as_u64().unwrap_or(0);
    let percent = if j.state == "done" { 100 } else { (done * 100).checked_div(total).unwrap_or(0) };
    page(&JobPage { c: Chrome::of(&me, "bulk"), id: j.id, state: j.state, done, total, percent, error: j.last_error })
}

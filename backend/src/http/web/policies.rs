//! The rotation policies editor: every N days or a cron schedule, overlap, notices, retire mode,
//! max active versions and how consumers get the new key — with the next rotation it would
//! produce shown before and after saving.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::Chrome;
use super::session::{FormErrors, Signed, WebError, page_with, sentence};
use crate::app::{self, ServiceError};
use crate::domain::{ConsumerId, PolicyId};
use crate::http::api::policies::{PolicyBody, PolicyView};
use crate::state::AppState;
use crate::store::entities::api;
use crate::store::{StoreError, apis, consumers, policies};

const DAY: i64 = 86_400;

/// A policy as the page lists it.
pub struct PolicyRow {
    pub view: PolicyView,
    pub api_name: String,
    /// The consumer of an override, by name.
    pub consumer_name: Option<String>,
    pub schedule: String,
    pub notices: String,
    pub next: String,
}

#[derive(Template)]
#[template(path = "app/policies.html")]
struct PoliciesPage<'a> {
    c: Chrome,
    policies: Vec<PolicyRow>,
    apis: Vec<api::Model>,
    form: &'a PolicyForm,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
    /// The policy being edited, if any.
    editing: Option<String>,
    /// The consumer picker's choices (a new policy only).
    picks: Vec<super::picks::Pick>,
}

/// What the policy form sends, in the units people use.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PolicyForm {
    pub csrf: String,
    pub api_id: String,
    pub consumer_id: String,
    /// `interval` or `cron`.
    pub schedule: String,
    pub interval_days: String,
    pub cron: String,
    pub window_minutes: String,
    pub overlap_hours: String,
    /// Days before each rotation, separated by commas.
    pub notice_days: String,
    pub retire_mode: String,
    pub max_active: String,
    pub on_full: String,
    pub delivery: String,
    pub enabled: String,
    /// Set by the consumer picker's search button: list the matches, save nothing.
    pub find: String,
    pub consumer_q: String,
}

impl PolicyForm {
    fn defaults() -> Self {
        Self {
            schedule: "interval".into(),
            interval_days: "90".into(),
            window_minutes: "60".into(),
            overlap_hours: "24".into(),
            notice_days: "14, 1".into(),
            retire_mode: "at_deadline".into(),
            max_active: "2".into(),
            on_full: "end_oldest".into(),
            delivery: "pickup".into(),
            enabled: "on".into(),
            ..Self::default()
        }
    }

    fn of(v: &PolicyView) -> Self {
        Self {
            api_id: v.api_id.clone(),
            consumer_id: v.consumer_id.clone().unwrap_or_default(),
            schedule: if v.cron.is_some() { "cron".into() } else { "interval".into() },
            interval_days: v.interval_days.map(|d| d.to_string()).unwrap_or_default(),
            cron: v.cron.clone().unwrap_or_default(),
            window_minutes: (v.window_seconds / 60).to_string(),
            overlap_hours: trim_float(v.overlap_seconds as f64 / 3_600.0),
            notice_days: v
                .notice_seconds
                .iter()
                .map(|s| trim_float(*s as f64 / DAY as f64))
                .collect::<Vec<_>>()
                .join(", "),
            retire_mode: v.retire_mode.clone(),
            max_active: v.max_active.to_string(),
            on_full: v.on_full.clone(),
            delivery: v.delivery.clone(),
            enabled: if v.enabled { "on".into() } else { String::new() },
            ..Self::default()
        }
    }

    /// The API body, or the fields people typed wrong.
    #[expect(clippy::cast_possible_truncation, reason = "bounded before the cast")]
    fn body(&self, errors: &mut FormErrors) -> PolicyBody {
        let number = |v: &str| v.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e7);
        let (interval_days, cron) = if self.schedule == "cron" {
            if self.cron.trim().is_empty() {
                errors.insert("cron", "Enter a cron expression, e.g. 0 3 * * 1 (Mondays 03:00 UTC).".into());
            }
            (Some(None), Some(Some(self.cron.trim().to_owned())))
        } else {
            match self.interval_days.trim().parse::<i64>() {
                Ok(d) => (Some(Some(d)), Some(None)),
                Err(_) => {
                    errors.insert("interval_days", "Enter a whole number of days from 1 to 3650.".into());
                    (None, None)
                }
            }
        };
        let window_seconds = number(&self.window_minutes).map(|m| (m * 60.0) as i64);
        if window_seconds.is_none() {
            errors.insert("window_minutes", "Enter a number of minutes from 0 to 10080 (7 days).".into());
        }
        let overlap_seconds = number(&self.overlap_hours).map(|h| (h * 3_600.0) as i64);
        if overlap_seconds.is_none() {
            errors.insert(
                "overlap_hours",
                "Enter a number of hours: at least 0.5, shorter than the time between rotations.".into(),
            );
        }
        let mut notice_seconds = Vec::new();
        for d in self.notice_days.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
            match number(d) {
                Some(days) => notice_seconds.push((days * DAY as f64) as i64),
                None => {
                    errors.insert("notice_days", format!("“{d}” is not a number of days (e.g. 14, 1 or 0.5)."));
                }
            }
        }
        let max_active = self.max_active.trim().parse::<i32>().ok();
        if max_active.is_none() {
            errors.insert("max_active", "Enter a number from 1 to 10.".into());
        }
        PolicyBody {
            api_id: None,
            consumer_id: None,
            interval_days,
            cron,
            window_seconds,
            overlap_seconds,
            notice_seconds: Some(notice_seconds),
            retire_mode: Some(self.retire_mode.clone()),
            max_active,
            on_full: Some(self.on_full.clone()),
            delivery: Some(self.delivery.clone()),
            enabled: Some(self.enabled == "on"),
        }
    }
}

/// Seconds as hours, as a form shows them (`24`, `0.5`).
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "durations far below 2^52 seconds")]
pub fn hours(seconds: i64) -> String {
    trim_float(seconds as f64 / 3_600.0)
}

/// A policy in a few words: its schedule and overlap.
#[must_use]
pub fn describe(p: &crate::store::entities::rotation_policy::Model) -> String {
    let schedule = match (&p.cron, p.interval_days) {
        (Some(c), _) => format!("on the schedule {c} (UTC)"),
        (None, Some(1)) => "every day".to_owned(),
        (None, Some(d)) => format!("every {d} days"),
        (None, None) => "on no schedule".to_owned(),
    };
    let paused = if p.enabled { "" } else { " (paused)" };
    format!("Rotates {schedule}, old and new key valid together for {} h{paused}.", hours(p.overlap_seconds))
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The operation's field errors beside this form's fields, in the form's units; an error of a
/// field the person typed wrong already is not repeated.
fn into_form_errors(e: ServiceError, errors: &mut FormErrors) -> Result<(), WebError> {
    let ServiceError::Invalid(fields) = e else {
        return Err(e.into());
    };
    for f in fields {
        let (name, text) = match f.field.split(['[', '.']).next().unwrap_or_default() {
            "interval_days" => ("interval_days", "Enter a whole number of days from 1 to 3650.".to_owned()),
            "cron" => ("cron", sentence(&format!("the cron expression {}", f.message))),
            "window_seconds" => ("window_minutes", "Enter a number of minutes from 0 to 10080 (7 days).".to_owned()),
            "overlap_seconds" => (
                "overlap_hours",
                "Enter a number of hours: at least 0.5, shorter than the time between rotations.".to_owned(),
            ),
            "notice_seconds" => (
                "notice_days",
                "Enter at most 10 notices, each from 0.001 days (a minute) to 365 days ahead.".to_owned(),
            ),
            "max_active" => ("max_active", "Enter a number from 1 to 10.".to_owned()),
            "retire_mode" => ("retire_mode", "Choose when the old key is retired.".to_owned()),
            "on_full" => ("on_full", "Choose what happens when the lineage is full.".to_owned()),
            "delivery" => ("delivery", sentence(&f.message)),
            "api_id" => ("api_id", sentence(&format!("the API {}", f.message))),
            _ => ("schedule", sentence(&format!("{} {}", f.field.replace('_', " "), f.message))),
        };
        errors.entry(name).or_insert(text);
    }
    Ok(())
}

/// Every error of the form at once: the operation's own checks run on what could be read, on a
/// copy (`base`), before anything is saved.
fn check_all(
    state: &AppState,
    base: &mut crate::store::entities::rotation_policy::Model,
    body: &PolicyBody,
    errors: &mut FormErrors,
) -> Result<(), WebError> {
    match app::policies::apply(base, body, state.master_key.is_some()) {
        Ok(()) => Ok(()),
        Err(e) => into_form_errors(e, errors),
    }
}

/// `GET /app/policies`.
pub async fn policies_page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    render(&state, &me, &PolicyForm::defaults(), &FormErrors::new(), None, None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    me: &Signed,
    form: &PolicyForm,
    errors: &FormErrors,
    notice: Option<&str>,
    editing: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = me.tenant_id();
    let apis = apis::list(&state.db, &t, 100, None).await?.items;
    let all = policies::list(&state.db, &t, 100, None).await?.items;
    let names =
        super::names::Names::of(state, &t, all.iter().filter_map(|p| p.consumer_id.as_deref()).collect::<Vec<_>>())
            .await?;
    let picks = if editing.is_none() {
        super::picks::consumers(state, &t, &form.consumer_q, form.consumer_id.trim()).await?
    } else {
        Vec::new()
    };
    let rows = all
        .into_iter()
        .map(|p| {
            let view = PolicyView::from(p);
            PolicyRow {
                consumer_name: view.consumer_id.as_deref().map(|c| names.label(c)),
                api_name: apis.iter().find(|a| a.id == view.api_id).map(|a| a.name.clone()).unwrap_or_default(),
                schedule: match (&view.cron, view.interval_days) {
                    (Some(c), _) => format!("cron {c} (window {} min)", view.window_seconds / 60),
                    (None, Some(d)) => format!("every {d} days"),
                    (None, None) => "no schedule".into(),
                },
                notices: view
                    .notice_seconds
                    .iter()
                    .map(|s| trim_float(*s as f64 / DAY as f64))
                    .collect::<Vec<_>>()
                    .join(", "),
                next: view
                    .next_rotation_preview
                    .map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
                view,
            }
        })
        .collect();
    page_with(
        status,
        &PoliciesPage { c: Chrome::of(me, "policies"), policies: rows, apis, form, errors, notice, editing, picks },
    )
}

/// `POST /app/policies`: a new policy (owners and admins).
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<PolicyForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let t = me.tenant_id();
    let mut errors = FormErrors::new();
    if !form.find.is_empty() {
        return render(&state, &me, &form, &errors, None, None, StatusCode::OK).await;
    }
    let api = super::app::chosen_api(&state, &t, &form.api_id, &mut errors).await?;
    let consumer = form.consumer_id.trim();
    let consumer_id = if consumer.is_empty() {
        None
    } else {
        match ConsumerId::parse(consumer) {
            Ok(cid) => match consumers::get(&state.db, &t, &cid).await {
                Ok(c) => Some(c.id),
                Err(StoreError::NotFound) => {
                    errors.insert("consumer_id", "That consumer no longer exists: choose another.".into());
                    None
                }
                Err(e) => return Err(e.into()),
            },
            Err(_) => {
                errors.insert("consumer_id", "Choose a consumer from the list, or none.".into());
                None
            }
        }
    };
    let mut body = form.body(&mut errors);
    let mut scratch = app::policies::new_policy(&t, String::new(), None);
    check_all(&state, &mut scratch, &body, &mut errors)?;
    let Some(api) = api.filter(|_| errors.is_empty()) else {
        return render(&state, &me, &form, &errors, None, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    body.api_id = Some(api.id);
    body.consumer_id = consumer_id;
    match app::policies::create(&me.ctx(&state), &body).await {
        Ok(_) => {
            render(
                &state,
                &me,
                &PolicyForm::defaults(),
                &FormErrors::new(),
                Some("Policy saved."),
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(ServiceError::Conflict(m)) => {
            errors.insert("api_id", sentence(&m));
            render(&state, &me, &form, &errors, None, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e @ ServiceError::Invalid(_)) => {
            into_form_errors(e, &mut errors)?;
            render(&state, &me, &form, &errors, None, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

fn policy_id(s: &str) -> Result<PolicyId, WebError> {
    PolicyId::parse(s).map_err(|_| WebError::NotFound)
}

/// `GET /app/policies/{id}`: the editor, filled in.
pub async fn edit_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let p = policies::get(&state.db, &me.tenant_id(), &policy_id(&id)?).await?;
    let form = PolicyForm::of(&PolicyView::from(p));
    render(&state, &me, &form, &FormErrors::new(), None, Some(id.into_inner()), StatusCode::OK).await
}

/// `POST /app/policies/{id}`: saves changes (its API and consumer stay); `delete=1` deletes it.
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<PolicyForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let t = me.tenant_id();
    let mut scratch = policies::get(&state.db, &t, &policy_id(&id)?).await?;
    let mut errors = FormErrors::new();
    let body = form.body(&mut errors);
    check_all(&state, &mut scratch, &body, &mut errors)?;
    if errors.is_empty()
        && let Err(e) = app::policies::update(&me.ctx(&state), &id, &body).await
    {
        into_form_errors(e, &mut errors)?;
    }
    if !errors.is_empty() {
        return render(&state, &me, &form, &errors, None, Some(id.into_inner()), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    render(&state, &me, &PolicyForm::defaults(), &FormErrors::new(), Some("Policy saved."), None, StatusCode::OK).await
}

/// `POST /app/policies/{id}/delete`.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<super::account::CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    app::policies::delete(&me.ctx(&state), &id).await?;
    render(
        &state,
        &me,
        &PolicyForm::defaults(),
        &FormErrors::new(),
        Some("Policy deleted: its keys are no longer rotated on a schedule."),
        None,
        StatusCode::OK,
    )
    .await
}

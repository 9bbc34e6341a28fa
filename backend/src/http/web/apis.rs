//! The APIs page: the tenant's keyspaces, creating one, and each one's leak policy.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, ListQuery, cursor, tenant};
use super::session::{FormErrors, Signed, WebError, form_errors, page_with, see_other, sentence};
use crate::app::{self, ServiceError};
use crate::domain::input::LeakPolicy;
use crate::state::AppState;
use crate::store::apis;
use crate::store::entities::api;

#[derive(Template)]
#[template(path = "app/apis.html")]
struct ApisPage<'a> {
    c: Chrome,
    apis: Vec<api::Model>,
    next: Option<String>,
    form: &'a ApiForm,
    errors: &'a FormErrors,
    /// The API whose leak policy form has an error.
    leak_error_for: Option<String>,
    notice: Option<&'a str>,
}

/// What the new-API form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ApiForm {
    pub csrf: String,
    pub name: String,
    pub key_prefix: String,
    pub environment: String,
}

pub async fn apis_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_apis(&state, &me, &q, &ApiForm::default(), &FormErrors::new(), StatusCode::OK).await
}

/// The leak policy form of one API.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LeakForm {
    pub csrf: String,
    pub action: String,
    pub minutes: String,
}

/// `POST /app/apis/{id}/leak-policy` (owners and admins).
pub async fn set_leak_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<LeakForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    // The form counts whole minutes; the rule (and its bound) is in seconds.
    let max_minutes = LeakPolicy::MAX_GRACE_SECONDS / 60;
    let minutes = match form.action.as_str() {
        "rotate" => form.minutes.trim().parse::<i64>().ok().filter(|m| (0..=max_minutes).contains(m)),
        _ => Some(0),
    };
    let changes = minutes.map(|m| app::apis::ApiChanges {
        leak_policy: Some(app::apis::LeakPolicyInput { action: form.action.clone(), grace_seconds: Some(m * 60) }),
        ..app::apis::ApiChanges::default()
    });
    let refused = match changes {
        Some(changes) => match app::apis::update(&me.ctx(&state), &id, changes).await {
            Ok(_) => None,
            Err(ServiceError::Invalid(errs)) if errs.iter().any(|e| e.field == "leak_policy.action") => {
                return Err(WebError::NotFound);
            }
            Err(ServiceError::Invalid(_)) => Some(()),
            Err(e) => return Err(e.into()),
        },
        None => Some(()),
    };
    if refused.is_some() {
        let mut errors = FormErrors::new();
        errors.insert("minutes", format!("Between 0 and {max_minutes} minutes."));
        let shown = ApisShown { errors: &errors, leak_error_for: Some(id.into_inner()), notice: None };
        return render_apis_with(
            &state,
            &me,
            &ListQuery::default(),
            &ApiForm::default(),
            shown,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let shown = ApisShown { errors: &FormErrors::new(), leak_error_for: None, notice: Some("Leak policy saved.") };
    render_apis_with(&state, &me, &ListQuery::default(), &ApiForm::default(), shown, StatusCode::OK).await
}

async fn render_apis(
    state: &AppState,
    me: &Signed,
    q: &ListQuery,
    form: &ApiForm,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    render_apis_with(state, me, q, form, ApisShown { errors, leak_error_for: None, notice: None }, status).await
}

/// What the APIs page shows besides the list.
struct ApisShown<'a> {
    errors: &'a FormErrors,
    leak_error_for: Option<String>,
    notice: Option<&'a str>,
}

async fn render_apis_with(
    state: &AppState,
    me: &Signed,
    q: &ListQuery,
    form: &ApiForm,
    shown: ApisShown<'_>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let list = apis::list(&state.db, &tenant(me), 50, cursor(q).as_ref()).await?;
    page_with(
        status,
        &ApisPage {
            c: Chrome::of(me, "apis"),
            apis: list.items,
            next: list.next_cursor,
            form,
            errors: shown.errors,
            leak_error_for: shown.leak_error_for,
            notice: shown.notice,
        },
    )
}

/// `POST /app/apis` (owners and admins).
pub async fn create_api(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<ApiForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let input = app::apis::NewApiInput {
        name: form.name.clone(),
        key_prefix: form.key_prefix.clone(),
        environment: form.environment.clone(),
        scope_catalogue: Vec::new(),
    };
    match app::apis::create(&me.ctx(&state), input).await {
        Ok(_) => Ok(see_other("/app/apis")),
        Err(ServiceError::Invalid(errs)) => {
            let fields = [
                ("name", "name", ""),
                ("key_prefix", "key_prefix", ""),
                ("environment", "environment", "Choose live or test."),
            ];
            let errors = form_errors(&errs, &fields, "name");
            render_apis(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::Conflict(m)) => {
            let mut errors = FormErrors::new();
            errors.insert("key_prefix", sentence(&m));
            render_apis(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A straggler as listed.
pub struct StragglerRow {
    pub s: crate::app::rotation::migration::Straggler,
    pub deadline: super::app::When,
    pub last_old: Option<super::app::When>,
}

#[derive(Template)]
#[template(path = "app/api.html")]
struct ApiPage {
    c: Chrome,
    api: api::Model,
    usage: super::charts::Chart,
    range: &'static str,
    base: String,
    /// Old versus new traffic across the rotations in progress, since the oldest started.
    migration: Option<super::charts::Chart>,
    in_progress: usize,
    new_percent: Option<u32>,
    stragglers: Vec<StragglerRow>,
}

/// `GET /app/apis/{id}`: an API's traffic, its rotations' migration, and the stragglers.
pub async fn api_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    use chrono::{TimeDelta, Utc};

    use crate::app::rotation::migration;
    let api_id = crate::domain::ApiId::parse(&id).map_err(|_| WebError::NotFound)?;
    let t = tenant(&me);
    let a = apis::get(&state.db, &t, &api_id).await?;
    let (usage, range) =
        super::charts::usage_chart(&state.db, &t, crate::store::usage::Scope::Api(&a.id), &q.range).await?;
    let now = Utc::now();
    let open: Vec<_> = migration::rotations_of_api(&state.db, &t, &a.id, now)
        .await?
        .into_iter()
        .filter(|r| crate::app::rotation::effective_state(r, now) == crate::domain::rotation::RotationState::InProgress)
        .collect();
    let (mut chart, mut new_percent) = (None, None);
    if let Some(since) = open.iter().map(|r| r.started_at).min() {
        let window = migration::Window::since(since, now);
        let old: Vec<String> = open.iter().map(|r| r.from_key_id.clone()).collect();
        let new: Vec<String> = open.iter().map(|r| r.to_key_id.clone()).collect();
        let points = migration::series(&state.db, &t, &old, &new, window).await?;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a percentage for display")]
        {
            new_percent = migration::new_share(&points).map(|s| (s * 100.0).round() as u32);
        }
        chart = Some(super::charts::migration_chart(&points, window.step));
    }
    let stragglers = migration::stragglers(&state.db, &t, &open, now, TimeDelta::hours(24), &state.settings.rotation)
        .await?
        .into_iter()
        .map(|s| StragglerRow {
            deadline: super::app::When::of(s.grace_ends_at),
            last_old: super::app::When::opt(s.old_last_used_at),
            s,
        })
        .collect();
    page_with(
        StatusCode::OK,
        &ApiPage {
            c: Chrome::of(&me, "apis"),
            base: format!("/app/apis/{}", a.id),
            api: a,
            usage,
            range,
            migration: chart,
            in_progress: open.len(),
            new_percent,
            stragglers,
        },
    )
}

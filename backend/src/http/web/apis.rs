//! The APIs page: the tenant's keyspaces, creating one, and each one's leak policy.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, ListQuery, cursor, tenant};
use super::session::{FormErrors, Signed, WebError, form_errors, page_with, see_other, sentence};
use crate::app::policies::DefaultPolicy;
use crate::app::{self, ServiceError};
use crate::domain::input::{LeakPolicy, RateLimit};
use crate::state::AppState;
use crate::store::entities::api;
use crate::store::keys::KeyFilter;
use crate::store::{apis, keys, policies};

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
struct ApiPage<'a> {
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
    /// A page of the API's keys, as filtered.
    keys: Vec<super::app::KeyRow>,
    /// The consumer of each listed key, by key id.
    owners: std::collections::HashMap<String, (String, String)>,
    next: Option<String>,
    q: &'a str,
    state: &'a str,
    settings: &'a ApiSettingsForm,
    /// The API's own rotation policy, described, with a link to its editor.
    policy: Option<(String, String)>,
    /// The API's own policy runs on a cron schedule (edited on the policies page only).
    policy_cron: bool,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
}

/// What the settings form of an API sends.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettingsForm {
    pub csrf: String,
    pub name: String,
    /// Scopes separated by commas, spaces or lines; empty for any scope.
    pub scope_catalogue: String,
    pub rl_limit: String,
    pub rl_per: String,
    pub rl_unit: String,
    /// `notify`, `rotate` or `revoke`.
    pub leak_action: String,
    pub leak_minutes: String,
    /// `keep` (a cron policy stays), `none` or `every`.
    pub policy: String,
    pub policy_days: String,
    pub policy_overlap_hours: String,
    /// The meter event of the team's own Stripe account; empty for none.
    pub stripe_meter_event: String,
    /// The header that carries the key at the gateway endpoint.
    pub gateway_header: String,
    /// Route rules, one per line: `GET /orders orders:read`.
    pub gateway_routes: String,
    /// `on`: keys of a foreign format imported into this API verify.
    pub legacy_key_formats: String,
}

impl ApiSettingsForm {
    fn of(a: &api::Model, policy: Option<&crate::store::entities::rotation_policy::Model>) -> Self {
        let rl = a.default_ratelimit.clone().and_then(|v| serde_json::from_value::<RateLimit>(v).ok());
        let mut f = Self {
            name: a.name.clone(),
            scope_catalogue: app::keys::catalogue_of(a).to_strings().join(", "),
            leak_action: a.leak_action.clone(),
            leak_minutes: (a.leak_grace_seconds / 60).to_string(),
            policy: "none".into(),
            policy_days: "90".into(),
            policy_overlap_hours: "24".into(),
            stripe_meter_event: a.stripe_meter_event.clone().unwrap_or_default(),
            legacy_key_formats: if a.legacy_key_formats { "on".into() } else { String::new() },
            ..Self::default()
        };
        let rules = a.gateway.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
        (f.gateway_header, f.gateway_routes) = super::gateway_fields::text_of(&rules);
        if let Some(r) = rl {
            let filled = super::key_fields::KeyFields::of_ratelimit(r);
            (f.rl_limit, f.rl_per, f.rl_unit) = filled;
        }
        if let Some(p) = policy {
            f.policy = if p.cron.is_some() { "keep".into() } else { "every".into() };
            if let Some(d) = p.interval_days {
                f.policy_days = d.to_string();
            }
            f.policy_overlap_hours = super::policies::hours(p.overlap_seconds);
        }
        f
    }

    /// The changes and the policy plan, as far as they could be read; errors beside the fields.
    fn read(&self, errors: &mut FormErrors) -> (app::apis::ApiChanges, DefaultPolicy) {
        let ratelimit = super::key_fields::read_ratelimit(&self.rl_limit, &self.rl_per, &self.rl_unit, errors);
        let max_minutes = LeakPolicy::MAX_GRACE_SECONDS / 60;
        let minutes = if self.leak_action == "rotate" {
            match super::key_fields::whole(&self.leak_minutes).and_then(|m| i64::try_from(m).ok()) {
                Some(m) if m <= max_minutes => Some(m),
                _ => {
                    errors.insert("leak_minutes", format!("Enter a whole number of minutes from 0 to {max_minutes}."));
                    None
                }
            }
        } else {
            Some(0)
        };
        let policy = match self.policy.as_str() {
            "every" => {
                let days = super::key_fields::whole(&self.policy_days)
                    .filter(|d| (1..=3650).contains(d))
                    .and_then(|d| i64::try_from(d).ok());
                if days.is_none() {
                    errors.insert("policy_days", "Enter a whole number of days from 1 to 3650.".into());
                }
                let overlap = self.policy_overlap_hours.trim().replace(',', ".").parse::<f64>().ok();
                let overlap = overlap.filter(|h| h.is_finite() && (0.5..=87_600.0).contains(h));
                if overlap.is_none() {
                    errors.insert(
                        "policy_overlap_hours",
                        "Enter an overlap of at least 0.5 hours, shorter than the time between rotations.".into(),
                    );
                }
                match (days, overlap) {
                    #[expect(clippy::cast_possible_truncation, reason = "bounded to 87 600 hours above")]
                    (Some(days), Some(h)) => {
                        DefaultPolicy::Every { days, overlap_seconds: (h * 3_600.0).round() as i64 }
                    }
                    _ => DefaultPolicy::Keep,
                }
            }
            "none" => DefaultPolicy::Remove,
            _ => DefaultPolicy::Keep,
        };
        let changes = app::apis::ApiChanges {
            name: Some(self.name.clone()),
            scope_catalogue: Some(super::keys::split_list(&self.scope_catalogue)),
            default_ratelimit: ratelimit,
            leak_policy: minutes
                .map(|m| app::apis::LeakPolicyInput { action: self.leak_action.clone(), grace_seconds: Some(m * 60) }),
            token_ttl_seconds: None,
            stripe_meter_event: Some(Some(self.stripe_meter_event.trim()).filter(|s| !s.is_empty()).map(str::to_owned)),
            gateway: super::gateway_fields::read(&self.gateway_header, &self.gateway_routes, errors),
            legacy_key_formats: Some(self.legacy_key_formats == "on"),
        };
        (changes, policy)
    }
}

/// Where the errors of the settings go.
const SETTINGS_FIELDS: &[(&str, &str, &str)] = &[
    ("name", "name", ""),
    ("scope_catalogue", "scope_catalogue", ""),
    ("default_ratelimit", "rl_limit", ""),
    ("leak_policy", "leak_action", "Choose what a reported leak does."),
    ("policy", "policy_days", ""),
    (
        "stripe_meter_event",
        "stripe_meter_event",
        "Enter a meter event name (letters, digits, - and _), or leave it empty.",
    ),
    ("gateway", "gateway_routes", ""),
];

/// The policy's errors, in the form's units.
fn policy_errors(errs: &[crate::app::FieldError], errors: &mut FormErrors) {
    for e in errs {
        let (field, text) = match e.field.as_str() {
            "policy.overlap_seconds" => (
                "policy_overlap_hours",
                "Enter an overlap of at least 0.5 hours, shorter than the time between rotations.".to_owned(),
            ),
            "policy.interval_days" => ("policy_days", sentence(&format!("the interval {}", e.message))),
            "policy.delivery" => ("policy", sentence(&format!("scheduled rotation {}", e.message))),
            _ => continue,
        };
        errors.entry(field).or_insert(text);
    }
}

/// `GET /app/apis/{id}?q=&state=&cursor=&range=`: the hub of one API: its traffic, its keys, its
/// rotations' migration with the stragglers, and its settings.
pub async fn api_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_api(&state, &me, &id, &q, None, &FormErrors::new(), None, StatusCode::OK).await
}

/// `POST /app/apis/{id}`: saves the settings (owners and admins); nothing changes unless every
/// field is right.
pub async fn save_settings(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<ApiSettingsForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let mut errors = FormErrors::new();
    let (changes, policy) = form.read(&mut errors);
    let ctx = me.ctx(&state);
    let refused = if errors.is_empty() {
        match app::apis::save_settings(&ctx, &id, changes, policy).await {
            Ok(_) => return Ok(see_other(&format!("/app/apis/{id}?saved=1#settings"))),
            Err(ServiceError::Invalid(errs)) => errs,
            Err(e) => return Err(e.into()),
        }
    } else {
        app::apis::check_settings(&ctx, &id, &changes, policy).await?
    };
    policy_errors(&refused, &mut errors);
    let rest: Vec<_> = refused.into_iter().filter(|e| !e.field.starts_with("policy.")).collect();
    for (k, v) in form_errors(&rest, SETTINGS_FIELDS, "name") {
        errors.entry(k).or_insert(v);
    }
    let q = ListQuery::default();
    render_api(&state, &me, &id, &q, Some(&form), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
}

#[expect(clippy::too_many_arguments, reason = "one page, many ways in")]
async fn render_api(
    state: &AppState,
    me: &Signed,
    id: &str,
    q: &ListQuery,
    typed: Option<&ApiSettingsForm>,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    use chrono::{TimeDelta, Utc};

    use crate::app::rotation::migration;
    let api_id = crate::domain::ApiId::parse(id).map_err(|_| WebError::NotFound)?;
    let t = tenant(me);
    let a = apis::get(&state.db, &t, &api_id).await?;
    if a.is_system {
        return Err(WebError::NotFound);
    }
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
    let key_state = crate::domain::key_state::KeyState::parse(&q.state);
    let filter =
        KeyFilter { api_id: Some(api_id.clone()), state: key_state, search: Some(q.q.clone()), ..KeyFilter::default() };
    let list = keys::list(&state.db, &t, &filter, 25, cursor(q).as_ref()).await?;
    let owners = super::app::owners_of(state, &t, &list.items).await?;
    let own_policy = policies::of_api(&state.db, &t, &a.id).await?;
    let policy = own_policy.as_ref().map(|p| (super::policies::describe(p), format!("/app/policies/{}", p.id)));
    let filled;
    let settings = match typed {
        Some(f) => f,
        None => {
            filled = ApiSettingsForm::of(&a, own_policy.as_ref());
            &filled
        }
    };
    page_with(
        status,
        &ApiPage {
            c: Chrome::of(me, "apis"),
            base: format!("/app/apis/{}", a.id),
            api: a,
            usage,
            range,
            migration: chart,
            in_progress: open.len(),
            new_percent,
            stragglers,
            keys: list.items.iter().map(super::app::KeyRow::of).collect(),
            owners,
            next: list.next_cursor,
            q: &q.q,
            state: key_state.map_or("", |s| s.as_str()),
            settings,
            policy_cron: own_policy.as_ref().is_some_and(|p| p.cron.is_some()),
            policy,
            errors,
            notice: notice.or_else(|| (!q.saved.is_empty()).then_some("Settings saved.")),
        },
    )
}

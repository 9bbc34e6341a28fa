//! The alerts page: live and past alerts with what raised them, acknowledge and resolve, and the
//! team's thresholds.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, When, tenant};
use super::session::{FormErrors, Signed, WebError, page_with, see_other};
use crate::alerts::AlertView;
use crate::app::{self, ServiceError, alerts::AlertChange};
use crate::domain::anomaly::Thresholds;
use crate::state::AppState;
use crate::store::alerts::Filter;

/// One threshold on the form.
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

/// An alert as listed.
pub struct Row {
    pub a: AlertView,
    pub first: When,
    pub last: When,
    /// `key_…` subjects link to their key page, `api_…` to their API page.
    pub href: String,
    /// The subject by name (the key's start and name, the API's name).
    pub subject: String,
    /// The state in words (`Open`, `Acknowledged`, `Resolved`).
    pub state: String,
    pub evidence: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "app/alerts.html")]
struct AlertsPage<'a> {
    c: Chrome,
    state: &'a str,
    rows: Vec<Row>,
    next: Option<String>,
    fields: Vec<Field>,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
}

/// Which alerts: `live` (default), `resolved` or `all`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AlertsQuery {
    pub state: String,
    pub cursor: String,
}

const LABELS: [(&str, &str); 11] = [
    ("rate_factor", "Rate spike: a minute above this many times the key's usual busy minute"),
    ("rate_min", "… and above this many verifications"),
    ("failure_delta", "Failure spike: failure share above the key's usual share by (0.05–1)"),
    ("failure_min", "… with at least this many failures in the minute"),
    ("presented_min", "A revoked or expired key presented this many times in a minute"),
    ("silence_minutes", "An old version silent this many minutes, then used from a new address"),
    ("not_found_min", "Unknown keys of one API in a minute, after a rotation"),
    ("not_found_factor", "… and above this many times the API's usual unknown keys"),
    ("after_rotation_minutes", "… within this many minutes of the rotation"),
    ("warmup_minutes", "Active minutes a key needs before its spikes count"),
    ("half_life_minutes", "Active minutes after which a minute weighs half in a baseline"),
];

fn fields_of(t: &Thresholds, typed: Option<&ThresholdForm>) -> Vec<Field> {
    let saved = serde_json::to_value(t).unwrap_or_default();
    LABELS
        .iter()
        .map(|(name, label)| Field {
            name,
            label,
            value: typed
                .and_then(|f| f.get(name))
                .map_or_else(|| saved.get(*name).map(ToString::to_string).unwrap_or_default(), str::to_owned),
        })
        .collect()
}

fn row(a: &crate::store::entities::alert::Model, actors: &super::audit::Actors, names: &super::names::Names) -> Row {
    let href = if a.subject_id.starts_with("api_") {
        format!("/app/apis/{}", a.subject_id)
    } else {
        format!("/app/keys/{}", a.subject_id)
    };
    let evidence = a
        .evidence
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.replace('_', " "), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    // Who acknowledged or resolved it, in words, as the audit log says it.
    let mut view = AlertView::of(a);
    view.acknowledged_by = view.acknowledged_by.map(|by| actors.label(&by));
    view.resolved_by = view.resolved_by.map(|by| actors.label(&by));
    Row {
        subject: names.label(&a.subject_id),
        state: super::app::human(&a.state),
        a: view,
        first: When::of(a.first_seen_at),
        last: When::of(a.last_seen_at),
        href,
        evidence,
    }
}

/// `GET /app/alerts`.
pub async fn alerts_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<AlertsQuery>,
) -> Result<HttpResponse, WebError> {
    render(&state, &me, &q, None, &FormErrors::new(), None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    me: &Signed,
    q: &AlertsQuery,
    typed: Option<&ThresholdForm>,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let shown = match q.state.as_str() {
        "resolved" => "resolved",
        "all" => "all",
        _ => "live",
    };
    let f = Filter {
        state: (shown == "resolved").then(|| "resolved".to_owned()),
        live: shown == "live",
        ..Filter::default()
    };
    let cursor = (!q.cursor.is_empty()).then(|| crate::store::Cursor::decode(&q.cursor).ok()).flatten();
    let page = crate::store::alerts::list(&state.db, &tenant(me), &f, 50, cursor.as_ref()).await?;
    let t = Thresholds::from_settings(&me.tenant.settings);
    let actors = super::audit::Actors::of(state, me).await?;
    let names = super::names::Names::of(state, &tenant(me), page.items.iter().map(|a| a.subject_id.as_str())).await?;
    page_with(
        status,
        &AlertsPage {
            c: Chrome::of(me, "alerts"),
            state: shown,
            rows: page.items.iter().map(|a| row(a, &actors, &names)).collect(),
            next: page.next_cursor,
            fields: fields_of(&t, typed),
            errors,
            notice,
        },
    )
}

/// The acknowledge and resolve buttons.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub csrf: String,
}

/// `POST /app/alerts/{id}/{acknowledge|resolve}`.
pub async fn action(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let (id, what) = path.into_inner();
    let what = match what.as_str() {
        "acknowledge" => AlertChange::Acknowledge,
        "resolve" => AlertChange::Resolve,
        _ => return Err(WebError::NotFound),
    };
    match app::alerts::change(&me.ctx(&state), &id, what).await {
        Ok(_) => Ok(see_other("/app/alerts")),
        Err(ServiceError::Conflict(m)) => {
            let mut errors = FormErrors::new();
            errors.insert("alert", format!("{m}."));
            render(&state, &me, &AlertsQuery::default(), None, &errors, None, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The thresholds form: every field as typed.
#[derive(Debug, Default, Deserialize)]
pub struct ThresholdForm {
    #[serde(flatten)]
    pub fields: std::collections::HashMap<String, String>,
}

impl ThresholdForm {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// `POST /app/alerts/thresholds` (owners and admins).
pub async fn set_thresholds(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<ThresholdForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, form.get("csrf").unwrap_or_default())?;
    me.require_admin()?;
    let mut errors = FormErrors::new();
    let mut body = serde_json::Map::new();
    for (name, _) in LABELS {
        let typed = form.get(name).unwrap_or_default().trim();
        match typed.parse::<f64>() {
            Ok(v) if v.fract() == 0.0 && !typed.contains('.') => {
                body.insert(name.to_owned(), serde_json::json!(v as i64));
            }
            Ok(v) => {
                body.insert(name.to_owned(), serde_json::json!(v));
            }
            Err(_) => {
                errors.insert(name, "Enter a number.".into());
            }
        }
    }
    if errors.is_empty() {
        let t = tenant(&me);
        match app::alerts::save_thresholds(&me.ctx(&state), &body.into()).await {
            Ok(_) => {
                let me = Signed { tenant: crate::store::tenants::get(&state.db, &t).await?, ..me };
                return render(
                    &state,
                    &me,
                    &AlertsQuery::default(),
                    None,
                    &errors,
                    Some("Thresholds saved."),
                    StatusCode::OK,
                )
                .await;
            }
            Err(ServiceError::Invalid(fields)) => {
                for f in fields {
                    if let Some((name, _)) = LABELS.iter().find(|(n, _)| *n == f.field) {
                        errors.insert(name, format!("This {}.", f.message));
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    render(&state, &me, &AlertsQuery::default(), Some(&form), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
}

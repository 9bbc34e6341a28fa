//! The audit log page: filters, a detail view of each entry, exports, the chain's badge, and
//! the team's retention setting.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, TimeDelta, Utc};
use serde::Deserialize;

use super::app::{Chrome, When};
use super::session::{FormErrors, Role, Signed, WebError, page_with};
use crate::audit::export::{self, Format};
use crate::audit::{ChainReport, Filter};
use crate::state::AppState;
use crate::store::entities::{audit_event, membership, user};

/// Who did it, in words: members by name, root keys by id, the rest by kind.
pub struct Actors(Vec<(membership::Model, user::Model)>);

impl Actors {
    pub(crate) async fn of(state: &AppState, me: &Signed) -> Result<Self, WebError> {
        Ok(Self(crate::store::accounts::members(&state.db, &me.tenant_id()).await?))
    }

    pub(crate) fn label(&self, actor: &str) -> String {
        match actor.split_once(':') {
            Some(("user", id)) => self.0.iter().find(|(_, u)| u.id == id).map_or_else(
                || "a former member".to_owned(),
                |(_, u)| u.name.clone().unwrap_or_else(|| u.email.clone()),
            ),
            Some(("root_key", id)) => format!("root key {id}"),
            Some(("policy", _)) => "a rotation policy".to_owned(),
            Some(("consumer", _)) => "the consumer".to_owned(),
            _ if actor == "cli" => "the command line".to_owned(),
            _ if actor == crate::audit::SYSTEM => "Keyroll (automatic)".to_owned(),
            _ => actor.to_owned(),
        }
    }
}

/// The filters, as typed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditForm {
    pub action: String,
    pub actor: String,
    /// `YYYY-MM-DD`, the first day shown.
    pub from: String,
    /// `YYYY-MM-DD`, the last day shown.
    pub to: String,
    pub target: String,
    pub cursor: String,
    /// `1` checks the whole chain now instead of using a recent check.
    pub check: String,
    pub format: String,
}

impl AuditForm {
    fn filter(&self, errors: &mut FormErrors) -> Filter {
        let day = |field: &'static str, s: &str, errors: &mut FormErrors| {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| errors.insert(field, "Enter a date like 2026-11-30.".into()))
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        };
        let from = day("from", &self.from, errors);
        let to = day("to", &self.to, errors).map(|t| t + TimeDelta::days(1));
        if let (Some(a), Some(b)) = (from, to)
            && a >= b
        {
            errors.insert("to", "The last day must not be before the first.".into());
        }
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty() && s.len() <= 100);
        Filter { from, to, actor: text(&self.actor), action: text(&self.action), target_id: text(&self.target) }
    }

    /// The query string of these filters (for links that keep them).
    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("action", &self.action)
            .append_pair("actor", &self.actor)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .append_pair("target", &self.target)
            .finish()
    }

    fn is_filtered(&self) -> bool {
        [&self.action, &self.actor, &self.from, &self.to, &self.target].iter().any(|s| !s.trim().is_empty())
    }
}

/// The actions a filter offers: every action, and every resource's actions together.
const ACTIONS: &[(&str, &str)] = &[
    ("key.", "Keys: every action"),
    ("key.created", "Key created"),
    ("key.updated", "Key changed, disabled or enabled"),
    ("key.rotated", "Key rotated"),
    ("key.revoked", "Key revoked"),
    ("key.secret_picked_up", "New key picked up by the consumer"),
    ("rotation.", "Rotations: every action"),
    ("rotation.completed", "Rotation completed"),
    ("rotation.rolled_back", "Rotation rolled back"),
    ("rotation.extended", "Rotation extended"),
    ("rotation.bulk_started", "Bulk rotation started"),
    ("rotation.cancelled", "Rotation cancelled (a version was revoked)"),
    ("root_key.", "Root keys: every action"),
    ("api.", "APIs: every action"),
    ("consumer.", "Consumers: every action"),
    ("policy.", "Rotation policies: every action"),
    ("webhook_endpoint.", "Webhook endpoints: every action"),
    ("member.", "Team members: every action"),
    ("user.", "Sign-ins and account security"),
    ("settings.updated", "Team settings changed"),
    ("tenant.created", "Team created"),
    ("audit.pruned", "Old entries removed (retention)"),
];

/// One entry as the page shows it.
pub struct Row {
    pub seq: i64,
    pub when: When,
    pub actor: String,
    pub actor_id: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub target_link: Option<String>,
    /// The target by name (a key's start and name, a consumer's or API's name), else its id.
    pub target_name: String,
    pub summary: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub details: Option<String>,
    pub hash: String,
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

impl Row {
    fn of(e: audit_event::Model, actors: &Actors, names: &super::names::Names) -> Self {
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
        let (before, after) = (data.get("before").map(pretty), data.get("after").map(pretty));
        let details = data.as_object().filter(|o| !o.is_empty()).and_then(|o| {
            let rest: serde_json::Map<_, _> = o
                .iter()
                .filter(|(k, _)| *k != "before" && *k != "after")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!rest.is_empty()).then(|| pretty(&serde_json::Value::Object(rest)))
        });
        // Root keys have no page but the list; the rest link to their own.
        let target_link = e.target_id.as_ref().and_then(|id| match e.target_type.as_str() {
            "root_key" => Some("/app/root-keys".to_owned()),
            _ => super::names::href(id),
        });
        let target_name = e.target_id.as_deref().map(|id| names.label(id)).unwrap_or_default();
        let actor = match e.actor.split_once(':') {
            Some(("root_key", id)) if names.knows(id) => format!("root key {}", names.label(id)),
            _ => actors.label(&e.actor),
        };
        Self {
            seq: e.seq,
            when: When::of(e.occurred_at),
            actor,
            target_name,
            actor_id: e.actor,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            target_link,
            summary: e.summary,
            request_id: e.request_id,
            ip: e.ip,
            before,
            after,
            details,
            hash: e.hash,
        }
    }
}

#[derive(Template)]
#[template(path = "app/audit.html")]
struct AuditPage<'a> {
    c: Chrome,
    form: &'a AuditForm,
    errors: &'a FormErrors,
    rows: Vec<Row>,
    next: Option<String>,
    filtered: bool,
    query: String,
    actions: &'static [(&'static str, &'static str)],
    actors: Vec<(String, String)>,
    report: ChainReport,
    checked: When,
    retention_days: u32,
    can_set_retention: bool,
    notice: Option<&'a str>,
}

/// The last chain check per tenant on this node, and when the whole chain was last read. A
/// page view reads only the entries written since an intact check (a long chain is not read on
/// every view); "Check again now" and `keyroll audit verify` read all of it.
#[derive(Clone)]
struct Check {
    report: ChainReport,
    full_at: chrono::DateTime<Utc>,
}

fn checks() -> &'static moka::sync::Cache<String, Check> {
    static CHECKS: std::sync::OnceLock<moka::sync::Cache<String, Check>> = std::sync::OnceLock::new();
    CHECKS.get_or_init(|| {
        moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(Duration::from_secs(3_600)).build()
    })
}

async fn chain_report(state: &AppState, me: &Signed, full: bool) -> Result<(ChainReport, When), WebError> {
    let key = me.tenant.id.clone();
    let earlier = if full { None } else { checks().get(&key) };
    let report =
        crate::audit::chain::verify_from(&state.db, &me.tenant_id(), earlier.as_ref().map(|c| &c.report)).await?;
    let full_at = match earlier {
        Some(c) if report.intact => c.full_at,
        _ => Utc::now(),
    };
    checks().insert(key, Check { report: report.clone(), full_at });
    Ok((report, When::of(full_at)))
}

/// `GET /app/audit`.
pub async fn audit_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<AuditForm>,
) -> Result<HttpResponse, WebError> {
    render(&state, &me, &q, None, FormErrors::new()).await
}

/// The page; `errors` from a form are shown next to their field (and the answer is a 422).
async fn render(
    state: &AppState,
    me: &Signed,
    form: &AuditForm,
    notice: Option<&str>,
    mut errors: FormErrors,
) -> Result<HttpResponse, WebError> {
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let mut filter_errors = FormErrors::new();
    let filter = form.filter(&mut filter_errors);
    let filter_ok = filter_errors.is_empty();
    errors.extend(filter_errors);
    let before = crate::store::Cursor::decode(&form.cursor).ok().and_then(|c| c.after_id.parse::<i64>().ok());
    let actors = Actors::of(state, me).await?;
    let (rows, next) = if filter_ok {
        let page = export::list(&state.db, &me.tenant_id(), &filter, 50, before).await?;
        let ids = page.items.iter().flat_map(|e| {
            let root = e.actor.strip_prefix("root_key:");
            e.target_id.as_deref().into_iter().chain(root)
        });
        let names = super::names::Names::of(state, &me.tenant_id(), ids.collect::<Vec<_>>()).await?;
        (page.items.into_iter().map(|e| Row::of(e, &actors, &names)).collect(), page.next_cursor)
    } else {
        (Vec::new(), None)
    };
    let known = export::actors(&state.db, &me.tenant_id()).await?;
    let (report, checked) = chain_report(state, me, form.check == "1").await?;
    page_with(
        if errors.is_empty() { status } else { StatusCode::UNPROCESSABLE_ENTITY },
        &AuditPage {
            c: Chrome::of(me, "audit"),
            form,
            errors: &errors,
            rows,
            next,
            filtered: form.is_filtered(),
            query: form.query(),
            actions: ACTIONS,
            actors: known.into_iter().map(|a| (actors.label(&a), a)).collect(),
            report,
            checked,
            retention_days: crate::audit::retention_days(&me.tenant.settings, state.settings.audit.retention_days),
            can_set_retention: me.role == Role::Owner,
            notice,
        },
    )
}

/// `GET /app/audit/export?format=csv|jsonl&…`: the filtered log as a file.
pub async fn export_file(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<AuditForm>,
) -> Result<HttpResponse, WebError> {
    let mut errors = FormErrors::new();
    let filter = q.filter(&mut errors);
    let Some(format) = Format::parse(&q.format).filter(|_| errors.is_empty()) else {
        let mut errors = FormErrors::new();
        q.filter(&mut errors);
        if errors.is_empty() {
            errors.insert("format", "Choose CSV or JSON Lines.".into());
        }
        return render(&state, &me, &q, None, errors).await;
    };
    Ok(crate::http::api::audit::download(&state, &me.tenant_id(), filter, format))
}

/// The retention form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RetentionForm {
    pub csrf: String,
    pub days: String,
}

/// `POST /app/audit/retention`: owners choose how long entries are kept (30 to 3650 days).
pub async fn set_retention(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<RetentionForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    if me.role != Role::Owner {
        return Err(WebError::Forbidden("Only owners can change how long the audit log is kept."));
    }
    let Some(days) = form.days.trim().parse::<u32>().ok().filter(|d| (30..=3_650).contains(d)) else {
        let mut errors = FormErrors::new();
        errors.insert("days", "Keep entries 30 to 3650 days.".into());
        return render(&state, &me, &AuditForm::default(), None, errors).await;
    };
    let before = crate::audit::retention_days(&me.tenant.settings, state.settings.audit.retention_days);
    let tenant = match crate::app::tenants::set_audit_retention(&me.ctx(&state), days, before).await {
        Ok(t) => t,
        Err(e @ crate::app::ServiceError::PlanLimit { .. }) => {
            // Beside the field, with the days typed kept; the page says 402 like the API.
            let mut errors = FormErrors::new();
            errors.insert("days", super::session::sentence(&e.to_string()));
            let mut page = render(&state, &me, &AuditForm::default(), None, errors).await?;
            *page.status_mut() = actix_web::http::StatusCode::PAYMENT_REQUIRED;
            return Ok(page);
        }
        Err(e) => return Err(e.into()),
    };
    let me = Signed { tenant, ..me };
    render(&state, &me, &AuditForm::default(), Some("Saved."), FormErrors::new()).await
}

//! The signed-in dashboard: the page frame, overview, consumers and a consumer's lineages (APIs
//! are in `apis`, keys in `keys`). Every state-changing form checks the CSRF token and the role on the
//! server.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::session::{FormErrors, Signed, WebError, form_errors, page, page_with, see_other, sentence};
use crate::app::rotation;
use crate::app::{self, ServiceError};
use crate::domain::key_state::KeyState;
use crate::domain::{ApiId, ConsumerId, TenantId};
use crate::state::AppState;
use crate::store::entities::{api, consumer, key, rotation as rotation_entity};
use crate::store::keys::KeyFilter;
use crate::store::{Cursor, StoreError, apis, consumers, keys, rotations};

/// What the page frame shows: who is signed in, where, and what they may do.
pub struct Chrome {
    pub user: String,
    pub tenant_name: String,
    pub tenant_id: String,
    pub role: &'static str,
    pub can_keys: bool,
    pub can_admin: bool,
    /// The billing page is in the menu (billing on, an owner).
    pub can_bill: bool,
    pub csrf: String,
    pub tenants: Vec<(String, String)>,
    pub nav: &'static str,
}

impl Chrome {
    pub(crate) fn of(me: &Signed, nav: &'static str) -> Self {
        Self {
            user: me.user.name.clone().unwrap_or_else(|| me.user.email.clone()),
            tenant_name: me.tenant.name.clone(),
            tenant_id: me.tenant.id.clone(),
            role: me.role.as_str(),
            can_keys: me.role.can_manage_keys(),
            can_admin: me.role.can_administer(),
            can_bill: me.billing && me.role == crate::app::Role::Owner,
            csrf: me.session.csrf.clone(),
            tenants: me.tenants.iter().map(|(_, t)| (t.id.clone(), t.name.clone())).collect(),
            nav,
        }
    }
}

/// A moment, exact (UTC) and relative to now.
pub struct When {
    pub exact: String,
    pub relative: String,
}

impl When {
    pub(crate) fn of(t: DateTime<Utc>) -> Self {
        Self { exact: t.format("%Y-%m-%d %H:%M UTC").to_string(), relative: relative(t, Utc::now()) }
    }

    pub(crate) fn opt(t: Option<DateTime<Utc>>) -> Option<Self> {
        t.map(Self::of)
    }
}

fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now.signed_duration_since(t);
    let (n, future) = if d.num_seconds() >= 0 { (d, false) } else { (-d, true) };
    let text = if n.num_seconds() < 60 {
        return if future { "in under a minute".into() } else { "just now".into() };
    } else if n.num_minutes() < 60 {
        format!("{} min", n.num_minutes())
    } else if n.num_hours() < 48 {
        format!("{} h", n.num_hours())
    } else {
        format!("{} d", n.num_days())
    };
    if future { format!("in {text}") } else { format!("{text} ago") }
}

/// A state as words: `in_progress` → `In progress`.
#[must_use]
pub fn human(state: &str) -> String {
    let spaced = state.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map_or_else(String::new, |f| f.to_uppercase().chain(chars).collect())
}

/// One version of a key, as the pages show it.
pub struct KeyRow {
    pub id: String,
    pub lineage_id: String,
    pub name: String,
    pub start: String,
    pub version: i32,
    /// `valid`, `superseded`, `expired`, `disabled`, `revoked`.
    pub state: &'static str,
    pub badge: &'static str,
    pub hint: &'static str,
    pub scopes: String,
    pub created: When,
    pub created_by: String,
    pub expires: Option<When>,
    pub grace_ends: Option<When>,
    pub superseded: Option<When>,
    pub revoked: Option<When>,
    pub revoked_reason: String,
    pub last_used: Option<When>,
}

impl KeyRow {
    pub(crate) fn of(k: &key::Model) -> Self {
        let now = Utc::now();
        let state = KeyState::derive(&rotation::times(k), now);
        let soon = k.expires_at.is_some_and(|e| e > now && e - now < TimeDelta::hours(24));
        let (badge, hint) = match state {
            KeyState::Revoked => ("Revoked", "Revoked for good. Create a new key if the consumer still needs access."),
            KeyState::Disabled => ("Disabled", "Turned off for now; enable it again through the API."),
            KeyState::Expired => ("Expired", "No longer accepted."),
            KeyState::Superseded => ("In grace", "Rotated: accepted until its grace period ends."),
            KeyState::Valid if soon => ("Expires soon", "Rotate it before it expires."),
            KeyState::Valid => ("Active", "Accepted."),
        };
        let scopes: Vec<String> = serde_json::from_value(k.scopes.clone()).unwrap_or_default();
        Self {
            id: k.id.clone(),
            lineage_id: k.lineage_id.clone(),
            name: k.name.clone().unwrap_or_default(),
            start: k.start.clone(),
            version: k.version,
            state: state.as_str(),
            badge,
            hint,
            scopes: if scopes.is_empty() { "none".into() } else { scopes.join(", ") },
            created: When::of(k.created_at),
            created_by: k.created_by.clone().unwrap_or_default(),
            expires: When::opt(k.expires_at),
            grace_ends: When::opt(k.grace_ends_at),
            superseded: When::opt(k.superseded_at),
            revoked: When::opt(k.revoked_at),
            revoked_reason: k.revoked_reason.clone().unwrap_or_default(),
            last_used: When::opt(k.last_used_at),
        }
    }
}

/// The consumer (id, name) of each key that has one, by key id.
///
/// # Errors
/// Database errors.
pub(crate) async fn owners_of(
    state: &AppState,
    tenant: &TenantId,
    keys: &[key::Model],
) -> Result<std::collections::HashMap<String, (String, String)>, WebError> {
    let ids: Vec<&str> = keys.iter().filter_map(|k| k.consumer_id.as_deref()).collect();
    let names = consumers::names(&state.db, tenant, &ids).await?;
    Ok(keys
        .iter()
        .filter_map(|k| {
            let c = k.consumer_id.as_ref()?;
            Some((k.id.clone(), (c.clone(), names.get(c).cloned().unwrap_or_else(|| c.clone()))))
        })
        .collect())
}

pub(crate) fn tenant(me: &Signed) -> TenantId {
    me.tenant_id()
}

/// The tenant's (non-system) API a form chose, or an error next to its `api_id` field.
///
/// # Errors
/// Database errors.
pub(crate) async fn chosen_api(
    state: &AppState,
    tenant: &TenantId,
    raw: &str,
    errors: &mut FormErrors,
) -> Result<Option<api::Model>, WebError> {
    let found = match ApiId::parse(raw) {
        Ok(id) => match apis::get(&state.db, tenant, &id).await {
            Ok(a) if !a.is_system => Some(a),
            Ok(_) | Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    if found.is_none() {
        errors.insert("api_id", "Choose an API.".into());
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// Overview

#[derive(Template)]
#[template(path = "app/overview.html")]
struct Overview {
    c: Chrome,
    apis: usize,
    active: Vec<KeyRow>,
    active_more: bool,
    rotations: Vec<RotationRow>,
    expiring: Vec<KeyRow>,
    /// Rejected verifications in the last 24 hours, by code.
    failures: Vec<(String, i64)>,
    /// Alerts not yet acknowledged.
    open_alerts: u64,
    /// The keys of the rotations, by name.
    names: super::names::Names,
}

/// A rotation in a list.
pub struct RotationRow {
    pub id: String,
    pub lineage_id: String,
    pub from_key_id: String,
    pub state: String,
    pub trigger: String,
    pub started: When,
    pub grace_ends: When,
}

impl RotationRow {
    pub(crate) fn of(r: &rotation_entity::Model) -> Self {
        Self {
            id: r.id.clone(),
            lineage_id: r.lineage_id.clone(),
            from_key_id: r.from_key_id.clone(),
            state: human(rotation::effective_state(r, Utc::now()).as_str()),
            trigger: match r.trigger.as_str() {
                "api" => "API".to_owned(),
                "manual" => "dashboard".to_owned(),
                "self_service" => "consumer".to_owned(),
                other => other.to_owned(),
            },
            started: When::of(r.started_at),
            grace_ends: When::of(r.grace_ends_at),
        }
    }
}

/// `GET /app`.
pub async fn overview(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    let t = tenant(&me);
    let api_count = apis::list(&state.db, &t, 100, None).await?.items.len();
    let valid = KeyFilter { state: Some(KeyState::Valid), ..KeyFilter::default() };
    let active = keys::list(&state.db, &t, &valid, 10, None).await?;
    let in_progress =
        rotations::list(&state.db, &t, Some(crate::domain::rotation::RotationState::InProgress), 10, None).await?;
    let soon = Utc::now() + TimeDelta::days(7);
    let expiring = keys::list(&state.db, &t, &valid, 200, None)
        .await?
        .items
        .iter()
        .filter(|k| k.expires_at.is_some_and(|e| e < soon))
        .map(KeyRow::of)
        .collect();
    let failures = crate::store::usage::rejections_since(&state.db, &t, Utc::now() - TimeDelta::hours(24)).await?;
    let open_alerts = crate::store::alerts::open_count(&state.db, &t).await?;
    let names = super::names::Names::of(
        &state,
        &t,
        in_progress.items.iter().map(|r| r.from_key_id.as_str()).collect::<Vec<_>>(),
    )
    .await?;
    page(&Overview {
        names,
        c: Chrome::of(&me, "overview"),
        failures,
        open_alerts,
        apis: api_count,
        active_more: active.next_cursor.is_some(),
        active: active.items.iter().map(KeyRow::of).collect(),
        rotations: in_progress.items.iter().map(RotationRow::of).collect(),
        expiring,
    })
}

/// A list's position.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub cursor: String,
    pub q: String,
    /// A usage chart's preset (`1h`, `24h`, `7d`, `30d`).
    pub range: String,
    /// A key list's state filter (`valid`, `superseded`, `expired`, `disabled`, `revoked`).
    pub state: String,
    /// Set after a form was saved (the page says so).
    pub saved: String,
}

pub(crate) fn cursor(q: &ListQuery) -> Option<Cursor> {
    (!q.cursor.is_empty()).then(|| Cursor::decode(&q.cursor).ok()).flatten()
}

/// `GET /app/apis`.
// ---------------------------------------------------------------------------------------------
// Consumers

#[derive(Template)]
#[template(path = "app/consumers.html")]
struct ConsumersPage<'a> {
    c: Chrome,
    consumers: Vec<consumer::Model>,
    q: &'a str,
    next: Option<String>,
    form: &'a ConsumerForm,
    errors: &'a FormErrors,
}

/// What the new-consumer form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConsumerForm {
    pub csrf: String,
    pub name: String,
    pub external_id: String,
    pub email: String,
}

/// `GET /app/consumers?q=…`.
pub async fn consumers_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_consumers(&state, &me, &q, &ConsumerForm::default(), &FormErrors::new(), StatusCode::OK).await
}

async fn render_consumers(
    state: &AppState,
    me: &Signed,
    q: &ListQuery,
    form: &ConsumerForm,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let list = consumers::search(&state.db, &tenant(me), &q.q, 50, cursor(q).as_ref()).await?;
    page_with(
        status,
        &ConsumersPage {
            c: Chrome::of(me, "consumers"),
            consumers: list.items,
            q: &q.q,
            next: list.next_cursor,
            form,
            errors,
        },
    )
}

/// `POST /app/consumers`.
pub async fn create_consumer(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<ConsumerForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let input = app::consumers::NewConsumerInput {
        external_id: form.external_id.clone(),
        name: form.name.clone(),
        email: Some(form.email.trim()).filter(|e| !e.is_empty()).map(str::to_owned),
        meta: None,
        stripe_customer_id: None,
    };
    match app::consumers::create(&me.ctx(&state), input).await {
        Ok(c) => Ok(see_other(&format!("/app/consumers/{}", c.id))),
        Err(ServiceError::Invalid(errs)) => {
            let fields = [
                ("name", "name", ""),
                ("external_id", "external_id", ""),
                ("email", "email", "Enter an email address, or leave it empty."),
            ];
            let errors = form_errors(&errs, &fields, "name");
            render_consumers(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::Conflict(m)) => {
            let mut errors = FormErrors::new();
            errors.insert("external_id", sentence(&m));
            render_consumers(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// One lineage of a consumer: its versions, newest first.
pub struct Lineage {
    pub id: String,
    pub name: String,
    pub current: KeyRow,
    pub versions: Vec<KeyRow>,
}

#[derive(Template)]
#[template(path = "app/consumer.html")]
struct ConsumerPage<'a> {
    c: Chrome,
    consumer: consumer::Model,
    lineages: Vec<Lineage>,
    next: Option<String>,
    /// Live keys the consumer has (revoked with it).
    live: usize,
    errors: &'a FormErrors,
    usage: super::charts::Chart,
    range: &'static str,
    /// Where the chart's presets link to.
    base: String,
    /// The settings form: as typed, or filled from the consumer.
    edit: EditConsumerForm,
}

pub(crate) fn consumer_id(s: &str) -> Result<ConsumerId, WebError> {
    ConsumerId::parse(s).map_err(|_| WebError::NotFound)
}

/// `GET /app/consumers/{id}`: every lineage of the consumer with its version timeline.
pub async fn consumer_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_consumer(&state, &me, &id, &q, &FormErrors::new(), None, StatusCode::OK).await
}

/// What a consumer's settings form sends.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EditConsumerForm {
    pub csrf: String,
    pub name: String,
    pub external_id: String,
    pub email: String,
    /// A JSON object; empty for `{}`.
    pub meta: String,
    /// The team's own Stripe customer; empty for none.
    pub stripe_customer_id: String,
}

impl EditConsumerForm {
    fn of(c: &consumer::Model) -> Self {
        let meta = if c.meta.as_object().is_some_and(|m| !m.is_empty()) {
            serde_json::to_string_pretty(&c.meta).unwrap_or_default()
        } else {
            String::new()
        };
        Self {
            csrf: String::new(),
            name: c.name.clone(),
            external_id: c.external_id.clone(),
            email: c.email.clone().unwrap_or_default(),
            meta,
            stripe_customer_id: c.stripe_customer_id.clone().unwrap_or_default(),
        }
    }
}

/// `POST /app/consumers/{id}`: changes a consumer's name, external id, email and metadata.
pub async fn edit_consumer(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EditConsumerForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let cid = consumer_id(&id)?;
    // Unreadable metadata is passed on as it is: the operation refuses it with every other
    // error of the form, and changes nothing.
    let meta = match form.meta.trim() {
        "" => serde_json::json!({}),
        raw => serde_json::from_str::<serde_json::Value>(raw).unwrap_or_else(|_| raw.into()),
    };
    let changes = app::consumers::ConsumerChanges {
        external_id: Some(form.external_id.clone()),
        name: Some(form.name.clone()),
        email: Some(Some(form.email.trim()).filter(|e| !e.is_empty()).map(str::to_owned)),
        meta: Some(meta),
        stripe_customer_id: Some(Some(form.stripe_customer_id.trim()).filter(|s| !s.is_empty()).map(str::to_owned)),
    };
    let fields = [
        ("name", "name", ""),
        ("external_id", "external_id", ""),
        ("email", "email", "Enter an email address, or leave it empty."),
        ("meta", "meta", "Enter a JSON object of at most 16 KiB, such as {\"tier\": \"gold\"}, or leave it empty."),
        ("stripe_customer_id", "stripe_customer_id", "Enter a Stripe customer id (cus_…), or leave it empty."),
    ];
    let errors = match app::consumers::update(&me.ctx(&state), cid.as_str(), changes).await {
        Ok(_) => return Ok(see_other(&format!("/app/consumers/{}#settings", cid.as_str()))),
        Err(ServiceError::Invalid(errs)) => form_errors(&errs, &fields, "name"),
        Err(ServiceError::Conflict(m)) => FormErrors::from([("external_id", sentence(&m))]),
        Err(e) => return Err(e.into()),
    };
    let q = ListQuery::default();
    render_consumer(&state, &me, &id, &q, &errors, Some(form.into_inner()), StatusCode::UNPROCESSABLE_ENTITY).await
}

async fn render_consumer(
    state: &AppState,
    me: &Signed,
    id: &str,
    q: &ListQuery,
    errors: &FormErrors,
    edit: Option<EditConsumerForm>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = tenant(me);
    let c = consumers::get(&state.db, &t, &consumer_id(id)?).await?;
    let edit = edit.unwrap_or_else(|| EditConsumerForm::of(&c));
    let filter = KeyFilter { consumer_id: Some(ConsumerId::from_trusted(c.id.clone())), ..KeyFilter::default() };
    let list = keys::list(&state.db, &t, &filter, 100, cursor(q).as_ref()).await?;
    let mut lineages: Vec<Lineage> = Vec::new();
    for k in &list.items {
        let row = KeyRow::of(k);
        match lineages.iter_mut().find(|l| l.id == k.lineage_id) {
            Some(l) => l.versions.push(row),
            None => lineages.push(Lineage {
                id: k.lineage_id.clone(),
                name: k.name.clone().unwrap_or_default(),
                current: KeyRow::of(k),
                versions: vec![row],
            }),
        }
    }
    let live = list.items.iter().filter(|k| k.revoked_at.is_none()).count();
    let (usage, range) =
        super::charts::usage_chart(&state.db, &t, crate::store::usage::Scope::Consumer(&c.id), &q.range).await?;
    page_with(
        status,
        &ConsumerPage {
            c: Chrome::of(me, "consumers"),
            base: format!("/app/consumers/{}", c.id),
            consumer: c,
            lineages,
            next: list.next_cursor,
            live,
            errors,
            usage,
            range,
            edit,
        },
    )
}

/// What the delete-consumer form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteConsumerForm {
    pub csrf: String,
    /// Must repeat the consumer's name.
    pub confirm: String,
}

/// `POST /app/consumers/{id}/delete`: deletes the consumer and revokes its keys.
pub async fn delete_consumer(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<DeleteConsumerForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let cid = consumer_id(&id)?;
    let c = consumers::get(&state.db, &tenant(&me), &cid).await?;
    if form.confirm.trim() != c.name {
        let mut errors = FormErrors::new();
        errors.insert("confirm", format!("Type {} to confirm.", c.name));
        return render_consumer(
            &state,
            &me,
            &id,
            &ListQuery::default(),
            &errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    app::consumers::delete(&me.ctx(&state), cid.as_str()).await?;
    Ok(see_other("/app/consumers"))
}

//! The signed-in dashboard: overview, APIs, consumers, a consumer's lineages, creating a key
//! (the secret shown once), a lineage's timeline with rotate / complete / roll back / extend /
//! revoke. Every state-changing form checks the CSRF token and the role on the server.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::json;

use super::session::{FormErrors, Signed, WebError, page, page_with, see_other};
use crate::domain::input::{Email, ExternalId, Name};
use crate::domain::key_state::KeyState;
use crate::domain::rotation::{RetireMode, Trigger};
use crate::domain::{ApiId, ConsumerId, Environment, KeyHead, KeyId, KeyPrefix, RotationId, ScopeSet, TenantId};
use crate::rotation::{self, RotateError, RotateRequest};
use crate::state::AppState;
use crate::store::entities::{api, consumer, key, rotation as rotation_entity};
use crate::store::keys::{KeyFilter, NewKey};
use crate::store::{Cursor, StoreError, apis, consumers, keys, rotations};

/// What the page frame shows: who is signed in, where, and what they may do.
pub struct Chrome {
    pub user: String,
    pub tenant_name: String,
    pub tenant_id: String,
    pub role: &'static str,
    pub can_keys: bool,
    pub can_admin: bool,
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

    fn opt(t: Option<DateTime<Utc>>) -> Option<Self> {
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

fn tenant(me: &Signed) -> TenantId {
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
    fn of(r: &rotation_entity::Model) -> Self {
        Self {
            id: r.id.clone(),
            lineage_id: r.lineage_id.clone(),
            from_key_id: r.from_key_id.clone(),
            state: rotation::effective_state(r, Utc::now()).as_str().to_owned(),
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
    page(&Overview {
        c: Chrome::of(&me, "overview"),
        failures,
        apis: api_count,
        active_more: active.next_cursor.is_some(),
        active: active.items.iter().map(KeyRow::of).collect(),
        rotations: in_progress.items.iter().map(RotationRow::of).collect(),
        expiring,
    })
}

// ---------------------------------------------------------------------------------------------
// APIs

#[derive(Template)]
#[template(path = "app/apis.html")]
struct ApisPage<'a> {
    c: Chrome,
    apis: Vec<api::Model>,
    next: Option<String>,
    form: &'a ApiForm,
    errors: &'a FormErrors,
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

/// A list's position.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub cursor: String,
    pub q: String,
}

fn cursor(q: &ListQuery) -> Option<Cursor> {
    (!q.cursor.is_empty()).then(|| Cursor::decode(&q.cursor).ok()).flatten()
}

/// `GET /app/apis`.
pub async fn apis_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_apis(&state, &me, &q, &ApiForm::default(), &FormErrors::new(), StatusCode::OK).await
}

async fn render_apis(
    state: &AppState,
    me: &Signed,
    q: &ListQuery,
    form: &ApiForm,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let list = apis::list(&state.db, &tenant(me), 50, cursor(q).as_ref()).await?;
    page_with(status, &ApisPage { c: Chrome::of(me, "apis"), apis: list.items, next: list.next_cursor, form, errors })
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
    let mut errors = FormErrors::new();
    let name = Name::parse(&form.name).map_err(|e| errors.insert("name", format!("Name {e}."))).ok();
    let prefix =
        KeyPrefix::parse(form.key_prefix.trim()).map_err(|e| errors.insert("key_prefix", format!("Prefix {e}."))).ok();
    let env = Environment::parse(&form.environment);
    if env.is_none() {
        errors.insert("environment", "Choose live or test.".into());
    }
    let (Some(name), Some(prefix), Some(env)) = (name, prefix, env) else {
        return render_apis(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let created = apis::create(&state.db, &tenant(&me), name.into_string(), &prefix, env, Vec::new()).await;
    match created {
        Ok(_) => Ok(see_other("/app/apis")),
        Err(StoreError::Conflict(m)) => {
            errors.insert("key_prefix", format!("{m}."));
            render_apis(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

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
    let mut errors = FormErrors::new();
    let name = Name::parse(&form.name).map_err(|e| errors.insert("name", format!("Name {e}."))).ok();
    let external = ExternalId::parse(&form.external_id)
        .map_err(|e| errors.insert("external_id", format!("External id {e}.")))
        .ok();
    let email = if form.email.trim().is_empty() {
        Some(None)
    } else {
        Email::parse(&form.email)
            .map(Some)
            .map_err(|_| errors.insert("email", "Enter an email address, or leave it empty.".into()))
            .ok()
    };
    let (Some(name), Some(external), Some(email)) = (name, external, email) else {
        return render_consumers(&state, &me, &ListQuery::default(), &form, &errors, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    };
    let created = consumers::create(
        &state.db,
        &tenant(&me),
        consumers::NewConsumer {
            external_id: external.into_string(),
            name: name.into_string(),
            email: email.map(Email::into_string),
            meta: json!({}),
        },
    )
    .await;
    match created {
        Ok(c) => Ok(see_other(&format!("/app/consumers/{}", c.id))),
        Err(StoreError::Conflict(m)) => {
            errors.insert("external_id", format!("{m}."));
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
}

fn consumer_id(s: &str) -> Result<ConsumerId, WebError> {
    ConsumerId::parse(s).map_err(|_| WebError::NotFound)
}

/// `GET /app/consumers/{id}`: every lineage of the consumer with its version timeline.
pub async fn consumer_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    render_consumer(&state, &me, &id, &q, &FormErrors::new(), StatusCode::OK).await
}

async fn render_consumer(
    state: &AppState,
    me: &Signed,
    id: &str,
    q: &ListQuery,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = tenant(me);
    let c = consumers::get(&state.db, &t, &consumer_id(id)?).await?;
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
    page_with(
        status,
        &ConsumerPage { c: Chrome::of(me, "consumers"), consumer: c, lineages, next: list.next_cursor, live, errors },
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
        return render_consumer(&state, &me, &id, &ListQuery::default(), &errors, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    crate::http::api::consumers::delete_consumer(&state, &tenant(&me), &me.actor(), &cid).await?;
    Ok(see_other("/app/consumers"))
}

// ---------------------------------------------------------------------------------------------
// Keys

#[derive(Template)]
#[template(path = "app/key_new.html")]
struct NewKeyPage<'a> {
    c: Chrome,
    consumer: consumer::Model,
    apis: Vec<api::Model>,
    form: &'a KeyForm,
    errors: &'a FormErrors,
}

/// What the new-key form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyForm {
    pub csrf: String,
    pub consumer_id: String,
    pub api_id: String,
    pub name: String,
    /// Comma- or space-separated.
    pub scopes: String,
    /// Days until it expires; empty for never.
    pub expires_days: String,
}

/// Query of the new-key page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewKeyQuery {
    pub consumer: String,
}

/// `GET /app/keys/new?consumer=…`.
pub async fn new_key_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<NewKeyQuery>,
) -> Result<HttpResponse, WebError> {
    me.require_keys()?;
    let form = KeyForm { consumer_id: q.consumer.clone(), ..KeyForm::default() };
    render_new_key(&state, &me, &form, &FormErrors::new(), StatusCode::OK).await
}

async fn render_new_key(
    state: &AppState,
    me: &Signed,
    form: &KeyForm,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = tenant(me);
    let consumer = consumers::get(&state.db, &t, &consumer_id(&form.consumer_id)?).await?;
    let apis = apis::list(&state.db, &t, 100, None).await?.items;
    page_with(status, &NewKeyPage { c: Chrome::of(me, "consumers"), consumer, apis, form, errors })
}

#[derive(Template)]
#[template(path = "app/key_created.html")]
struct KeyCreatedPage {
    c: Chrome,
    key: KeyRow,
    secret: String,
    consumer_id: String,
    heading: &'static str,
    /// Where "Done" leads.
    done: String,
}

/// `POST /app/keys`: the secret is on this answer only.
pub async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let t = tenant(&me);
    let consumer = consumers::get(&state.db, &t, &consumer_id(&form.consumer_id)?).await?;
    let mut errors = FormErrors::new();
    let api = chosen_api(&state, &t, &form.api_id, &mut errors).await?;
    let name = if form.name.trim().is_empty() {
        Some(None)
    } else {
        Name::parse(&form.name)
            .map(|n| Some(n.into_string()))
            .map_err(|e| errors.insert("name", format!("Name {e}.")))
            .ok()
    };
    let items: Vec<&str> = form.scopes.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect();
    let scopes = match ScopeSet::parse_all(&items) {
        Ok(s) => Some(s),
        Err((i, e)) => {
            errors.insert("scopes", format!("Scope “{}” {e}.", items.get(i).copied().unwrap_or_default()));
            None
        }
    };
    let expires_at = match form.expires_days.trim() {
        "" => Some(None),
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(Some(Utc::now() + TimeDelta::days(n))),
            _ => {
                errors.insert("expires_days", "Enter a number of days from 1 to 3650, or leave it empty.".into());
                None
            }
        },
    };
    let (Some(api), Some(name), Some(scopes), Some(expires_at)) = (api, name, scopes, expires_at) else {
        return render_new_key(&state, &me, &form, &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let head = KeyHead::Api {
        prefix: KeyPrefix::parse(&api.key_prefix).map_err(|e| WebError::Internal(anyhow::anyhow!("{e}")))?,
        env: Environment::parse(&api.environment).unwrap_or(Environment::Live),
    };
    let new = NewKey {
        tenant_id: t.clone(),
        api_id: ApiId::from_trusted(api.id.clone()),
        consumer_id: Some(ConsumerId::from_trusted(consumer.id.clone())),
        is_root: false,
        lineage: None,
        name,
        scopes,
        meta: json!({}),
        enabled: true,
        expires_at,
        ratelimit: None,
        credits: None,
        ip_allowlist: None,
        created_by: Some(me.actor()),
    };
    let (model, secret) = keys::insert(&state.db, new, &head).await?;
    state.cache.announce_created(&[secret.hash()]).await;
    page(&KeyCreatedPage {
        c: Chrome::of(&me, "consumers"),
        key: KeyRow::of(&model),
        secret: secret.expose().to_owned(),
        consumer_id: consumer.id,
        heading: "Key created",
        done: format!("/app/keys/{}", model.id),
    })
}

#[derive(Template)]
#[template(path = "app/key.html")]
struct KeyPage<'a> {
    c: Chrome,
    key: KeyRow,
    consumer: Option<consumer::Model>,
    api_name: String,
    versions: Vec<KeyRow>,
    /// Versions not shown (the newest `SHOWN` are).
    older: usize,
    open: Option<OpenRotation>,
    rotations: Vec<RotationRow>,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
    /// What was typed into the revoke form, shown again next to its errors.
    reason: &'a str,
}

/// The rotation in progress on a lineage, with its migration progress.
pub struct OpenRotation {
    pub row: RotationRow,
    pub compromise: bool,
    pub old_version: i32,
    pub new_version: i32,
    pub old_uses: i64,
    pub new_uses: i64,
    pub old_last: Option<When>,
    pub new_last: Option<When>,
    /// 0–100, when there was any traffic.
    pub new_percent: Option<u32>,
    pub verdict: String,
}

/// Versions and rotations listed on a lineage's page.
const SHOWN: usize = 20;

fn key_id(s: &str) -> Result<KeyId, WebError> {
    KeyId::parse(s).map_err(|_| WebError::NotFound)
}

/// `GET /app/keys/{id}`: the lineage of a key version, its open rotation and actions.
pub async fn key_page(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    render_key(&state, &me, &key_id(&id)?, &FormErrors::new(), None, StatusCode::OK).await
}

async fn render_key(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    render_key_typed(state, me, id, errors, notice, "", status).await
}

async fn render_key_typed(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    errors: &FormErrors,
    notice: Option<&str>,
    reason: &str,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = tenant(me);
    let k = keys::get(&state.db, &t, id, false).await?;
    let lineage = rotations::lineage(&state.db, &t, &k.lineage_id).await?;
    let mut versions: Vec<&key::Model> = lineage.iter().collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let consumer = match &k.consumer_id {
        Some(c) => consumers::get(&state.db, &t, &ConsumerId::from_trusted(c.clone())).await.ok(),
        None => None,
    };
    let api_name =
        apis::get(&state.db, &t, &ApiId::from_trusted(k.api_id.clone())).await.map(|a| a.name).unwrap_or_default();
    let all = rotations::of_lineage(&state.db, &t, &k.lineage_id).await?;
    let now = Utc::now();
    let mut open = None;
    if let Some(r) =
        all.iter().find(|r| rotation::effective_state(r, now) == crate::domain::rotation::RotationState::InProgress)
        && let (Some(from), Some(to)) =
            (lineage.iter().find(|v| v.id == r.from_key_id), lineage.iter().find(|v| v.id == r.to_key_id))
    {
        let p = crate::rotation::progress::progress(&state.db, r, from, to).await?;
        open = Some(OpenRotation {
            row: RotationRow::of(r),
            compromise: r.compromise,
            old_version: from.version,
            new_version: to.version,
            old_uses: p.old.uses_since_start,
            new_uses: p.new.uses_since_start,
            old_last: When::opt(p.old.last_used_at),
            new_last: When::opt(p.new.last_used_at),
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a percentage for display")]
            new_percent: p.new_share.map(|s| (s * 100.0).round() as u32),
            verdict: p.verdict,
        });
    }
    // Who did it, in words: members by name, the rest by kind.
    let members = crate::store::accounts::members(&state.db, &t).await?;
    let label = |actor: &str| -> String {
        match actor.split_once(':') {
            Some(("user", id)) => members.iter().find(|(_, u)| u.id == id).map_or_else(
                || "a former member".to_owned(),
                |(_, u)| u.name.clone().unwrap_or_else(|| u.email.clone()),
            ),
            Some(("root_key", id)) => format!("root key {id}"),
            Some(("policy", _)) => "a rotation policy".to_owned(),
            Some(("consumer", _)) => "the consumer".to_owned(),
            _ if actor == "cli" => "the command line".to_owned(),
            _ => actor.to_owned(),
        }
    };
    // The page is about the lineage's newest version; older ones are on the consumer's page.
    let current = versions.first().map_or_else(|| KeyRow::of(&k), |v| KeyRow::of(v));
    let older = versions.len().saturating_sub(SHOWN);
    versions.truncate(SHOWN);
    page_with(
        status,
        &KeyPage {
            c: Chrome::of(me, "consumers"),
            key: current,
            consumer,
            api_name,
            versions: versions
                .into_iter()
                .map(|v| {
                    let mut row = KeyRow::of(v);
                    row.created_by = label(&row.created_by);
                    row
                })
                .collect(),
            open,
            rotations: all.iter().take(SHOWN).map(RotationRow::of).collect(),
            older,
            errors,
            notice,
            reason,
        },
    )
}

/// What the rotate form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotateForm {
    pub csrf: String,
    /// Seconds, from the presets, or `custom`.
    pub overlap: String,
    /// Hours, when `overlap` is `custom`.
    pub custom_hours: String,
    pub retire_mode: String,
}

/// `POST /app/keys/{id}/rotate`: the new secret is on this answer only.
pub async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RotateForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let t = tenant(&me);
    let mut errors = FormErrors::new();
    let overlap = if form.overlap == "custom" {
        match form.custom_hours.trim().parse::<f64>() {
            #[expect(clippy::cast_possible_truncation, reason = "bounded above")]
            Ok(h) if (0.0..=720.0).contains(&h) => Some((h * 3600.0) as i64),
            _ => {
                errors.insert("custom_hours", "Enter hours from 0 to 720.".into());
                None
            }
        }
    } else {
        match form.overlap.parse::<i64>() {
            Ok(s) if (0..=2_592_000).contains(&s) => Some(s),
            _ => {
                errors.insert("overlap", "Choose how long the current key stays valid.".into());
                None
            }
        }
    };
    let retire_mode = RetireMode::parse(&form.retire_mode).unwrap_or(RetireMode::AtDeadline);
    let Some(overlap) = overlap else {
        return render_key(&state, &me, &id, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let current = keys::get(&state.db, &t, &id, false).await?;
    let request = RotateRequest {
        overlap: TimeDelta::seconds(overlap),
        scopes: None,
        meta: None,
        retire_mode,
        trigger: Trigger::Manual,
        actor: Some(me.actor()),
        compromise: false,
        rules: rotation::rules_for(&state.db, &current).await?,
        handoff: None,
    };
    match rotation::rotate(&state, &t, &id, false, request).await {
        Ok(r) => page(&KeyCreatedPage {
            c: Chrome::of(&me, "consumers"),
            key: KeyRow::of(&r.key),
            secret: r.secret.expose().to_owned(),
            consumer_id: r.key.consumer_id.clone().unwrap_or_default(),
            heading: "Key rotated",
            done: format!("/app/keys/{}", r.key.id),
        }),
        Err(e) => rotation_refused(&state, &me, &id, e).await,
    }
}

async fn rotation_refused(state: &AppState, me: &Signed, id: &KeyId, e: RotateError) -> Result<HttpResponse, WebError> {
    let why = match e {
        RotateError::Rule(r) => r.to_string(),
        RotateError::Conflict(m) => m.to_owned(),
        RotateError::Store(StoreError::NotFound) => return Err(WebError::NotFound),
        RotateError::Store(StoreError::Conflict(m)) => m,
        RotateError::Store(e) => return Err(e.into()),
    };
    let mut errors = FormErrors::new();
    errors.insert("rotation", format!("{}{}.", why[..1].to_uppercase(), &why[1..]));
    render_key(state, me, id, &errors, None, StatusCode::CONFLICT).await
}

/// What the disable / enable form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EnabledForm {
    pub csrf: String,
    /// `true` or `false`.
    pub enabled: String,
}

/// `POST /app/keys/{id}/enabled`: disabling is immediate on every node and reversible.
pub async fn set_enabled(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let enabled = form.enabled == "true";
    let patch = keys::KeyPatch { enabled: Some(enabled), ..keys::KeyPatch::default() };
    match keys::update(&state.db, &tenant(&me), &id, false, patch).await {
        Ok(k) => {
            crate::http::api::keys::invalidate_one(&state, &k.hash).await;
            let notice = if enabled {
                "The key is enabled again."
            } else {
                "The key is disabled: refused everywhere until enabled again."
            };
            render_key(&state, &me, &id, &FormErrors::new(), Some(notice), StatusCode::OK).await
        }
        Err(StoreError::Conflict(_)) => {
            let mut errors = FormErrors::new();
            errors.insert("rotation", "A revoked key cannot be changed.".into());
            render_key(&state, &me, &id, &errors, None, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the revoke form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevokeForm {
    pub csrf: String,
    pub reason: String,
    /// Must repeat the key's start, as a confirmation.
    pub confirm: String,
}

/// `POST /app/keys/{id}/revoke`.
pub async fn revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let k = keys::get(&state.db, &tenant(&me), &id, false).await?;
    let mut errors = FormErrors::new();
    let reason = form.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        errors.insert("reason", "Say why, in up to 500 characters.".into());
    }
    if form.confirm.trim() != k.start {
        errors.insert("confirm", format!("Type {} to confirm.", k.start));
    }
    if !errors.is_empty() {
        return render_key_typed(&state, &me, &id, &errors, None, &form.reason, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    crate::http::api::keys::revoke_one(&state, &tenant(&me), &me.actor(), id.as_str(), reason, false)
        .await
        .map_err(|e| WebError::Internal(anyhow::anyhow!("{e}")))?;
    render_key(
        &state,
        &me,
        &id,
        &FormErrors::new(),
        Some("The key was revoked. It is refused everywhere from now on."),
        StatusCode::OK,
    )
    .await
}

/// What the rotation action forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotationActionForm {
    pub csrf: String,
    /// `extend`: hours to add to the grace period.
    pub hours: String,
}

/// `POST /app/rotations/{id}/{action}`: complete, rollback or extend.
pub async fn rotation_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    path: web::Path<(String, String)>,
    form: web::Form<RotationActionForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let (id, action) = path.into_inner();
    let rid = RotationId::parse(&id).map_err(|_| WebError::NotFound)?;
    let t = tenant(&me);
    let r = rotations::get(&state.db, &t, &rid).await?;
    let back = KeyId::from_trusted(r.to_key_id.clone());
    let done = match action.as_str() {
        "complete" => rotation::complete(&state, &t, &rid).await.map(|_| "The old version was retired."),
        "rollback" => {
            rotation::rollback(&state, &t, &rid).await.map(|_| "Rolled back: the old version is current again.")
        }
        "extend" => {
            let Some(hours) = form.hours.trim().parse::<i64>().ok().filter(|h| (1..=720).contains(h)) else {
                let mut errors = FormErrors::new();
                errors.insert("hours", "Enter hours from 1 to 720.".into());
                return render_key(&state, &me, &back, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
            };
            rotation::extend(&state, &t, &rid, r.grace_ends_at + TimeDelta::hours(hours))
                .await
                .map(|_| "The grace period was extended.")
        }
        _ => return Err(WebError::NotFound),
    };
    let target = if action == "rollback" { KeyId::from_trusted(r.from_key_id.clone()) } else { back };
    match done {
        Ok(notice) => render_key(&state, &me, &target, &FormErrors::new(), Some(notice), StatusCode::OK).await,
        Err(e) => rotation_refused(&state, &me, &target, e).await,
    }
}

/// `GET /app/rotations/{id}`: to the lineage page of its new version.
pub async fn rotation_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let rid = RotationId::parse(&id).map_err(|_| WebError::NotFound)?;
    let r = rotations::get(&state.db, &tenant(&me), &rid).await?;
    Ok(see_other(&format!("/app/keys/{}", r.to_key_id)))
}

//! Owner and admin pages: root keys (management API credentials) and webhook endpoints.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{TimeDelta, Utc};
use serde::Deserialize;

use super::app::{Chrome, KeyRow};
use super::keys::expiry_days;
use super::session::{FormErrors, Signed, WebError, form_errors, page_with};
use super::shown::reveal_key;
use crate::app::{self, ServiceError};
use crate::domain::KeyId;
use crate::state::AppState;
use crate::store::keys;
use crate::store::keys::KeyFilter;

/// What each management scope allows, for the permissions picker.
const SCOPE_HELP: &[(&str, &str)] = &[
    ("apis:read", "Read APIs"),
    ("apis:write", "Create and change APIs"),
    ("consumers:read", "Read consumers"),
    ("consumers:write", "Create, change and delete consumers"),
    ("keys:read", "Read keys, rotations and jobs"),
    ("keys:write", "Create, change and revoke keys"),
    ("keys:rotate", "Rotate keys, bulk rotations"),
    ("policies:write", "Manage rotation policies"),
    ("playbooks:run", "Run incident playbooks"),
    ("audit:read", "Read the audit log"),
    ("webhooks:write", "Manage webhook endpoints"),
    ("portal:write", "Open the consumer portal for a consumer, brand the portal"),
    ("tokens:write", "Rotate and revoke token signing keys"),
    ("billing:read", "Read the plan, usage against its limits and invoices"),
];

#[derive(Template)]
#[template(path = "app/root_keys.html")]
struct RootKeysPage<'a> {
    c: Chrome,
    keys: Vec<KeyRow>,
    scopes: &'static [(&'static str, &'static str)],
    form: &'a RootKeyForm,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
}

/// What the new-root-key form sends (besides `scope`, once per checked box).
#[derive(Debug, Default)]
pub struct RootKeyForm {
    pub csrf: String,
    pub name: String,
    pub all: String,
    pub expires_days: String,
}

/// `GET /app/root-keys`.
pub async fn root_keys(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    me.require_admin()?;
    render(&state, &me, &RootKeyForm::default(), &FormErrors::new(), None, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    me: &Signed,
    form: &RootKeyForm,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let filter = KeyFilter { root: true, ..KeyFilter::default() };
    let list = keys::list(&state.db, &me.tenant_id(), &filter, 100, None).await?;
    page_with(
        status,
        &RootKeysPage {
            c: Chrome::of(me, "root-keys"),
            keys: list.items.iter().map(KeyRow::of).collect(),
            scopes: SCOPE_HELP,
            form,
            errors,
            notice,
        },
    )
}

/// The form and the scopes checked in it (`scope=a&scope=b`: a repeated field, which the
/// usual form decoding does not gather into a list).
fn parse_root_form(body: &str) -> (RootKeyForm, Vec<String>) {
    let mut form = RootKeyForm::default();
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "csrf" => form.csrf = v.into_owned(),
            "name" => form.name = v.into_owned(),
            "all" => form.all = v.into_owned(),
            "expires_days" => form.expires_days = v.into_owned(),
            "scope" => scopes.push(v.into_owned()),
            _ => {}
        }
    }
    (form, scopes)
}

/// `POST /app/root-keys`: the secret is on this answer only.
pub async fn create_root_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    body: String,
) -> Result<HttpResponse, WebError> {
    let (form, mut scopes) = parse_root_form(&body);
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let mut errors = FormErrors::new();
    if form.all == "on" {
        scopes = vec!["*".into()];
    }
    // An unreadable expiry goes on as a moment already past: the operation refuses it with
    // every other error of the form, and creates nothing.
    let expires_at = expiry_days(&form.expires_days, &mut errors)
        .unwrap_or_else(|| Some(chrono::Utc::now() - chrono::TimeDelta::days(1)));
    let input = app::root_keys::NewRootKey { name: Some(form.name.clone()), scopes, expires_at };
    match app::root_keys::create(&me.ctx(&state), input).await {
        Ok(created) => {
            let done = "/app/root-keys".to_owned();
            reveal_key(&state, &me, "Root key created", &created.key, created.secret.expose(), done, None).await
        }
        Err(ServiceError::Invalid(errs)) => {
            let fields = [
                ("name", "name", ""),
                ("scopes", "scopes", "Choose at least one permission."),
                ("expires_at", "expires_days", ""),
            ];
            // The form's own wording of the expiry wins over the operation's.
            for (k, v) in form_errors(&errs, &fields, "scopes") {
                errors.entry(k).or_insert(v);
            }
            render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the root-key rotate form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotateRootForm {
    pub csrf: String,
    /// Seconds the current root key stays valid (the same presets as for keys).
    pub overlap: String,
}

/// `POST /app/root-keys/{id}/rotate`: a new version with the same permissions; the secret is
/// on this answer only.
pub async fn rotate_root_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RotateRootForm>,
) -> Result<HttpResponse, WebError> {
    use crate::domain::rotation::Trigger;
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let id = KeyId::parse(&id).map_err(|_| WebError::NotFound)?;
    let Some(overlap) = form.overlap.parse::<i64>().ok().filter(|s| (0..=2_592_000).contains(s)) else {
        let mut errors = FormErrors::new();
        errors.insert("reason", "Choose how long the current root key stays valid.".into());
        return render(&state, &me, &RootKeyForm::default(), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let input = crate::app::rotation::RotateInput {
        overlap_seconds: Some(overlap),
        ..crate::app::rotation::RotateInput::new(Trigger::Manual)
    };
    match crate::app::rotation::rotate_key(&me.ctx(&state), id.as_str(), true, input).await {
        Ok(r) => {
            let done = "/app/root-keys".to_owned();
            reveal_key(&state, &me, "Root key rotated", &r.key, r.secret.expose(), done, None).await
        }
        Err(ServiceError::NotFound(_)) => Err(WebError::NotFound),
        Err(e) => {
            let mut errors = FormErrors::new();
            errors.insert("reason", format!("The root key was not rotated: {e}."));
            render(&state, &me, &RootKeyForm::default(), &errors, None, StatusCode::CONFLICT).await
        }
    }
}

/// What the root-key revoke form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevokeRootForm {
    pub csrf: String,
    pub reason: String,
}

/// `POST /app/root-keys/{id}/revoke`.
pub async fn revoke_root_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RevokeRootForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    match app::root_keys::revoke(&me.ctx(&state), &id, &form.reason).await {
        Ok(_) => {}
        Err(ServiceError::Invalid(_)) => {
            let mut errors = FormErrors::new();
            errors.insert("reason", "Say why, in up to 500 characters.".into());
            return render(&state, &me, &RootKeyForm::default(), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e.into()),
    }
    render(
        &state,
        &me,
        &RootKeyForm::default(),
        &FormErrors::new(),
        Some("The root key was revoked on every node."),
        StatusCode::OK,
    )
    .await
}

/// An endpoint as the page shows it.
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub consumer_id: String,
    pub event_types: String,
    pub enabled: bool,
    pub failures: i32,
    pub previous_until: Option<String>,
}

/// A recent event and how its deliveries went.
pub struct EventRow {
    pub event_type: String,
    pub when: super::app::When,
    pub deliveries: Vec<(String, String, i32)>,
}

#[derive(Template)]
#[template(path = "app/webhooks.html")]
struct WebhooksPage<'a> {
    c: Chrome,
    endpoints: Vec<EndpointRow>,
    events: Vec<EventRow>,
    form: &'a EndpointForm,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
}

/// What the new-endpoint form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointForm {
    pub csrf: String,
    pub url: String,
    /// Space- or comma-separated; empty for every event.
    pub event_types: String,
}

/// `GET /app/webhooks`.
pub async fn webhooks(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    me.require_admin()?;
    render_webhooks(&state, &me, &EndpointForm::default(), &FormErrors::new(), None, StatusCode::OK).await
}

async fn render_webhooks(
    state: &AppState,
    me: &Signed,
    form: &EndpointForm,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    use crate::store::notify;
    let t = me.tenant_id();
    let now = Utc::now();
    let endpoints = notify::list_endpoints(&state.db, &t, 100, None)
        .await?
        .items
        .into_iter()
        .map(|e| EndpointRow {
            event_types: serde_json::from_value::<Vec<String>>(e.event_types.clone()).unwrap_or_default().join(", "),
            previous_until: e
                .previous_secret_until
                .filter(|u| *u > now)
                .map(|u| u.format("%Y-%m-%d %H:%M UTC").to_string()),
            consumer_id: e.consumer_id.unwrap_or_default(),
            enabled: e.enabled,
            failures: e.failures,
            url: e.url,
            id: e.id,
        })
        .collect::<Vec<_>>();
    let recent = notify::list_events(&state.db, &t, None, 20, None).await?.items;
    let ids: Vec<String> = recent.iter().map(|e| e.id.clone()).collect();
    let deliveries = notify::deliveries_of(&state.db, &ids).await?;
    let events = recent
        .into_iter()
        .map(|e| EventRow {
            deliveries: deliveries
                .iter()
                .filter(|d| d.event_id == e.id)
                .map(|d| {
                    let to = d.endpoint_id.clone().or_else(|| d.recipient.clone()).unwrap_or_default();
                    (format!("{} {to}", d.channel), d.state.clone(), d.attempts)
                })
                .collect(),
            when: super::app::When::of(e.created_at),
            event_type: e.event_type,
        })
        .collect();
    page_with(status, &WebhooksPage { c: Chrome::of(me, "webhooks"), endpoints, events, form, errors, notice })
}

/// Holds an endpoint's signing secret for its page and redirects there (303).
async fn reveal_signing_secret(
    state: &AppState,
    me: &Signed,
    heading: &str,
    url: &str,
    secret: &str,
    note: &str,
) -> Result<HttpResponse, WebError> {
    let reveal = app::reveals::Reveal {
        heading: heading.to_owned(),
        label: format!("Signing secret of {url}"),
        secret: secret.to_owned(),
        start: None,
        note: note.to_owned(),
        done: "/app/webhooks".to_owned(),
        back: None,
        lines: false,
    };
    super::shown::show_once(&me.ctx(state), &reveal).await
}

/// `POST /app/webhooks`: a new endpoint; its signing secret is shown once, after a redirect.
pub async fn create_endpoint(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<EndpointForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let types = super::keys::split_list(&form.event_types);
    let input = app::webhooks::NewEndpoint {
        url: form.url.clone(),
        event_types: (!types.is_empty()).then_some(types),
        consumer_id: None,
    };
    match app::webhooks::create(&me.ctx(&state), input).await {
        Ok(created) => {
            let note = "Receivers check every delivery's webhook-signature header with it (Standard Webhooks).";
            reveal_signing_secret(&state, &me, "Endpoint added", &created.endpoint.url, &created.secret, note).await
        }
        Err(ServiceError::Invalid(errs)) => {
            let fields = [("url", "url", "Enter an http(s) URL."), ("event_types", "event_types", "")];
            let errors = form_errors(&errs, &fields, "url");
            render_webhooks(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e @ ServiceError::PlanLimit { .. }) => {
            let mut errors = FormErrors::new();
            errors.insert("url", super::session::sentence(&e.to_string()));
            render_webhooks(&state, &me, &form, &errors, None, StatusCode::PAYMENT_REQUIRED).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What an endpoint's action forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointActionForm {
    pub csrf: String,
    /// `yes` from the confirmation page (`delete`).
    pub confirm: String,
}

/// `POST /app/webhooks/{id}/{action}`: `rotate-secret` (the old one signs too for 24 h),
/// `enable`, `disable`, `delete`.
pub async fn endpoint_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    path: web::Path<(String, String)>,
    form: web::Form<EndpointActionForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let (id, action) = path.into_inner();
    if action == "delete" && !super::confirm::confirmed(&form.confirm) {
        return Ok(super::session::see_other(&format!("/app/webhooks/{id}/delete")));
    }
    let empty = EndpointForm::default();
    let none = FormErrors::new();
    let ctx = me.ctx(&state);
    match action.as_str() {
        "rotate-secret" => {
            let rotated = app::webhooks::rotate_secret(&ctx, &id, Some(TimeDelta::hours(24).num_seconds())).await?;
            let note = "The old secret keeps signing next to it for 24 hours: switch your receiver within that time.";
            reveal_signing_secret(&state, &me, "Signing secret rotated", &rotated.endpoint.url, &rotated.secret, note)
                .await
        }
        "enable" | "disable" => {
            let changes = app::webhooks::EndpointChanges { enabled: Some(action == "enable"), ..Default::default() };
            app::webhooks::update(&ctx, &id, changes).await?;
            render_webhooks(&state, &me, &empty, &none, Some("Saved."), StatusCode::OK).await
        }
        "delete" => {
            app::webhooks::delete(&ctx, &id).await?;
            render_webhooks(&state, &me, &empty, &none, Some("Endpoint deleted."), StatusCode::OK).await
        }
        _ => Err(WebError::NotFound),
    }
}

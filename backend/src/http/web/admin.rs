//! Owner and admin pages: root keys (management API credentials) and webhook endpoints.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{TimeDelta, Utc};
use serde::Deserialize;

use super::app::{Chrome, KeyRow};
use super::session::{FormErrors, Signed, WebError, page, page_with};
use crate::domain::input::Name;
use crate::domain::{ApiId, KeyHead, KeyId, ScopeSet};
use crate::http::auth::ROOT_SCOPES;
use crate::state::AppState;
use crate::store::keys::{KeyFilter, NewKey};
use crate::store::{apis, keys};

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

#[derive(Template)]
#[template(path = "app/key_created.html")]
struct Created {
    c: Chrome,
    key: KeyRow,
    secret: String,
    consumer_id: String,
    heading: &'static str,
    /// Where "Done" leads.
    done: String,
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
    let name = Name::parse(&form.name).map_err(|e| errors.insert("name", format!("Name {e}."))).ok();
    if form.all == "on" {
        scopes = vec!["*".into()];
    }
    scopes.retain(|s| s == "*" || ROOT_SCOPES.contains(&s.as_str()));
    if scopes.is_empty() {
        errors.insert("scopes", "Choose at least one permission.".into());
    }
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
    let (Some(name), Some(expires_at), true) = (name, expires_at, errors.is_empty()) else {
        return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let scopes = ScopeSet::parse_all(&scopes).map_err(|_| WebError::Internal(anyhow::anyhow!("bad root scope")))?;
    let t = me.tenant_id();
    let system = apis::system(&state.db, &t).await?;
    let new = NewKey {
        tenant_id: t,
        api_id: ApiId::from_trusted(system.id),
        consumer_id: None,
        is_root: true,
        lineage: None,
        name: Some(name.into_string()),
        scopes,
        meta: serde_json::json!({}),
        enabled: true,
        expires_at,
        ratelimit: None,
        credits: None,
        ip_allowlist: None,
        created_by: Some(me.actor()),
    };
    let (model, secret) = keys::insert(&state.db, new, &KeyHead::Root).await?;
    state.cache.announce_created(&[secret.hash()]).await;
    page(&Created {
        c: Chrome::of(&me, "root-keys"),
        key: KeyRow::of(&model),
        secret: secret.expose().to_owned(),
        consumer_id: String::new(),
        heading: "Root key created",
        done: "/app/root-keys".into(),
    })
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
    let id = KeyId::parse(&id).map_err(|_| WebError::NotFound)?;
    let reason = form.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        let mut errors = FormErrors::new();
        errors.insert("reason", "Say why, in up to 500 characters.".into());
        return render(&state, &me, &RootKeyForm::default(), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    crate::http::api::keys::revoke_one(&state, &me.tenant_id(), &me.actor(), id.as_str(), reason, true).await.map_err(
        |e| match e {
            crate::http::errors::ApiError::NotFound(_) => WebError::NotFound,
            other => WebError::Internal(anyhow::anyhow!("{other}")),
        },
    )?;
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

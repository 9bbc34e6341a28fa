//! What every dashboard page shares: the signed-in user and their role in the current tenant,
//! CSRF checks, login throttling, and HTML answers with strict security headers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use askama::Template;
use subtle::ConstantTimeEq;

use crate::app::{Actor, Ctx, FieldError, Grants, ServiceError};
use crate::config::Settings;
use crate::state::AppState;
use crate::store::entities::{membership, session, tenant, user};
use crate::store::{StoreError, accounts};

pub const SESSION_COOKIE: &str = "kr_session";
pub const CSRF_COOKIE: &str = "kr_csrf";
/// How long a sign-in lasts.
pub const SESSION_DAYS: i64 = 7;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What a dashboard handler can fail with. Never a stack trace: a page or a redirect.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("redirect to {0}")]
    Redirect(String),
    #[error("you may not do this")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("the form expired; reload the page and try again")]
    Csrf,
    /// The change was refused by the state of things (shown on a page of its own when the
    /// handler has no form to show it beside).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => Self::NotFound,
            ServiceError::Forbidden(p) => Self::Forbidden(match p.least_role() {
                Role::Owner => "Only owners can change this.",
                Role::Admin => "Only owners and admins can change this.",
                Role::Developer | Role::Viewer => "Viewers cannot change keys.",
            }),
            ServiceError::Conflict(m) => Self::Conflict(sentence(&m)),
            e @ ServiceError::PlanLimit { .. } => Self::Conflict(sentence(&e.to_string())),
            ServiceError::Unavailable(m) => Self::Conflict(sentence(&m)),
            ServiceError::Invalid(errors) => Self::Conflict(
                errors.iter().map(|e| sentence(&format!("{} {}", e.field, e.message))).collect::<Vec<_>>().join(" "),
            ),
            ServiceError::Internal(e) => Self::Internal(e),
        }
    }
}

/// A message as a sentence: capitalised, with a full stop.
#[must_use]
pub fn sentence(m: &str) -> String {
    let m = m.trim().trim_end_matches('.');
    let mut chars = m.chars();
    chars.next().map_or_else(String::new, |f| format!("{}{}.", f.to_uppercase(), chars.as_str()))
}

/// The errors of an operation beside the fields of the form that sent it. Each entry of
/// `fields` is `(input field, form field, wording)`: the input field by its name before any
/// `[i]` or `.x`, the form field the error goes beside, and the form's own wording of it (or ""
/// for the operation's message as a sentence). An error of an input field not named goes beside
/// `fallback`.
#[must_use]
pub fn form_errors(
    errors: &[FieldError],
    fields: &[(&str, &'static str, &'static str)],
    fallback: &'static str,
) -> FormErrors {
    let mut out = FormErrors::new();
    for e in errors {
        let root = e.field.split(['[', '.']).next().unwrap_or_default();
        let known = fields.iter().find(|(f, ..)| *f == root);
        let form_field = known.map_or(fallback, |(_, to, _)| to);
        if let Some((.., says)) = known.filter(|(.., says)| !says.is_empty()) {
            out.entry(form_field).or_insert_with(|| (*says).to_owned());
            continue;
        }
        let label = root.replace('_', " ");
        let item = e.field[root.len()..]
            .strip_prefix('[')
            .and_then(|r| r.split(']').next())
            .and_then(|i| i.parse::<usize>().ok())
            .map(|i| format!(" (item {})", i.saturating_add(1)))
            .unwrap_or_default();
        let text = sentence(&format!("{label}{item} {}", e.message));
        out.entry(form_field)
            .and_modify(|t| {
                t.push(' ');
                t.push_str(&text);
            })
            .or_insert(text);
    }
    out
}

impl From<sea_orm::DbErr> for WebError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(m) => Self::Conflict(sentence(&m)),
            other => Self::Internal(other.into()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: &'a str,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect(_) => StatusCode::SEE_OTHER,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, detail) = match self {
            Self::Redirect(to) => return see_other(to),
            Self::Forbidden(why) => ("Not allowed", *why),
            Self::NotFound => ("Not found", "There is nothing here, or it belongs to another team."),
            Self::Csrf => ("The form expired", "Go back, reload the page and submit the form again."),
            Self::Conflict(why) => ("This cannot be done", why.as_str()),
            Self::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "dashboard request failed");
                ("Something went wrong", "The error was logged. Try again in a moment.")
            }
        };
        let status = self.status_code();
        let body = ErrorPage { status: status.as_u16(), title, detail }.render().unwrap_or_else(|_| title.to_owned());
        secured(&mut HttpResponse::build(status)).content_type("text/html; charset=utf-8").body(body)
    }
}

/// Security headers on every dashboard answer.
pub fn secured(b: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    b.insert_header(("content-security-policy", CSP))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header(("permissions-policy", "camera=(), microphone=(), geolocation=()"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
}

/// A rendered page.
///
/// # Errors
/// When the template fails (a bug).
pub fn page(t: &impl Template) -> Result<HttpResponse, WebError> {
    page_with(StatusCode::OK, t)
}

/// A rendered page with another status (a form with errors answers 422).
///
/// # Errors
/// When the template fails (a bug).
pub fn page_with(status: StatusCode, t: &impl Template) -> Result<HttpResponse, WebError> {
    let body = t.render().map_err(|e| WebError::Internal(e.into()))?;
    Ok(secured(&mut HttpResponse::build(status)).content_type("text/html; charset=utf-8").body(body))
}

/// 303 to a path of ours.
#[must_use]
pub fn see_other(to: &str) -> HttpResponse {
    secured(&mut HttpResponse::SeeOther()).insert_header((header::LOCATION, safe_next(to))).finish()
}

/// 303 to a URL off the site that the server chose (a payment page Stripe made), never one taken
/// from the request.
#[must_use]
pub fn see_other_external(to: &str) -> HttpResponse {
    secured(&mut HttpResponse::SeeOther()).insert_header((header::LOCATION, to)).finish()
}

/// Only local paths: `next=` never leads off the site.
#[must_use]
pub fn safe_next(to: &str) -> &str {
    if to.starts_with('/') && !to.starts_with("//") && !to.contains('\\') { to } else { "/app" }
}

/// Cookies are `Secure` unless the dashboard is served over plain HTTP on this machine.
#[must_use]
pub fn cookie_secure(s: &Settings) -> bool {
    match &s.public_url {
        Some(u) => {
            let local = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .iter()
                .any(|p| u.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
            !local
        }
        None => !s.listen.ip().is_loopback(),
    }
}

/// The session cookie (HttpOnly, SameSite=Lax so links from email keep the user signed in).
#[must_use]
pub fn session_cookie(s: &Settings, token: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .secure(cookie_secure(s))
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::days(SESSION_DAYS))
        .finish()
}

/// A cookie that removes `name`.
#[must_use]
pub fn removal(s: &Settings, name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").http_only(true).secure(cookie_secure(s)).finish();
    c.make_removal();
    c
}

pub use crate::app::Role;

/// A signed-in user working in one of their tenants.
#[derive(Debug)]
pub struct Signed {
    pub user: user::Model,
    pub session: session::Model,
    pub tenant: tenant::Model,
    pub role: Role,
    /// Every tenant of the user, for the switcher.
    pub tenants: Vec<(membership::Model, tenant::Model)>,
    /// Billing is on for this install (the billing page is shown to owners).
    pub billing: bool,
}

impl Signed {
    #[must_use]
    pub fn tenant_id(&self) -> crate::domain::TenantId {
        crate::domain::TenantId::from_trusted(self.tenant.id.clone())
    }

    /// Who did it, for the records.
    #[must_use]
    pub fn actor(&self) -> String {
        Actor::User(self.user.id.clone()).to_string()
    }

    /// The context of an operation this member asks for, in the request being served.
    #[must_use]
    pub fn ctx<'a>(&self, state: &'a AppState) -> Ctx<'a> {
        Ctx::new(
            state,
            self.tenant_id(),
            Actor::User(self.user.id.clone()),
            Grants::of_role(self.role),
            crate::http::request_id::origin(),
        )
    }

    /// # Errors
    /// `Forbidden` for viewers.
    pub fn require_keys(&self) -> Result<(), WebError> {
        if self.role.can_manage_keys() { Ok(()) } else { Err(WebError::Forbidden("Viewers cannot change keys.")) }
    }

    /// # Errors
    /// `Forbidden` below admin.
    pub fn require_admin(&self) -> Result<(), WebError> {
        if self.role.can_administer() {
            Ok(())
        } else {
            Err(WebError::Forbidden("Only owners and admins can change this."))
        }
    }

    /// A state-changing form must carry this session's token.
    ///
    /// # Errors
    /// `Csrf` when it does not.
    pub fn check_csrf(&self, req: &HttpRequest, sent: &str) -> Result<(), WebError> {
        same_origin(req)?;
        if bool::from(self.session.csrf.as_bytes().ct_eq(sent.as_bytes())) { Ok(()) } else { Err(WebError::Csrf) }
    }
}

/// A cross-site form post is refused even before the token is compared.
fn same_origin(req: &HttpRequest) -> Result<(), WebError> {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = req.connection_info().host().to_owned();
    let ok = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|h| h == host);
    if ok { Ok(()) } else { Err(WebError::Csrf) }
}

fn login_redirect(req: &HttpRequest) -> WebError {
    let path = req.uri().path_and_query().map_or("/app", |p| p.as_str());
    let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    WebError::Redirect(format!("/login?next={next}"))
}

impl FromRequest for Signed {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, WebError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| WebError::Internal(anyhow::anyhow!("no application state")))?;
            let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
                return Err(login_redirect(&req));
            };
            let Some((session, user)) = accounts::session(&state.db, &token).await? else {
                return Err(login_redirect(&req));
            };
            if session.mfa_pending {
                return Err(WebError::Redirect("/login/2fa".into()));
            }
            let tenants = accounts::memberships(&state.db, &user.id).await?;
            let current = session
                .tenant_id
                .as_deref()
                .and_then(|t| tenants.iter().find(|(m, _)| m.tenant_id == t))
                .or_else(|| tenants.first())
                .cloned();
            let Some((m, tenant)) = current else {
                return Err(WebError::Forbidden("Your account belongs to no team. Ask an owner to invite you."));
            };
            let role = Role::parse(&m.role).unwrap_or(Role::Viewer);
            Ok(Self { user, session, tenant, role, tenants, billing: state.settings.billing.is_some() })
        })
    }
}

/// The CSRF token of a form shown before signing in (double-submit: the same random value in
/// an HttpOnly cookie and in the form). Returns the token and, when new, the cookie to set.
#[must_use]
pub fn anon_csrf(req: &HttpRequest, s: &Settings) -> (String, Option<Cookie<'static>>) {
    if let Some(c) = req.cookie(CSRF_COOKIE)
        && c.value().len() >= 32
    {
        return (c.value().to_owned(), None);
    }
    let (token, _) = crate::crypto::new_token();
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .path("/")
        .http_only(true)
        .secure(cookie_secure(s))
        .same_site(SameSite::Strict)
        .finish();
    (token, Some(cookie))
}

/// # Errors
/// `Csrf` when the form's token is not the cookie's.
pub fn check_anon_csrf(req: &HttpRequest, sent: &str) -> Result<(), WebError> {
    same_origin(req)?;
    let cookie = req.cookie(CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())) {
        Ok(())
    } else {
        Err(WebError::Csrf)
    }
}

/// Failed sign-ins per address and per email in a sliding quarter hour. Only failures count, so
/// a user who types the password right is never slowed down by others' traffic.
pub struct Throttle {
    failures: moka::sync::Cache<String, u32>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self { failures: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(WINDOW).build() }
    }
}

const WINDOW: Duration = Duration::from_secs(15 * 60);
const PER_IP: u32 = 20;
const PER_EMAIL: u32 = 5;

impl Throttle {
    /// Is another attempt allowed?
    #[must_use]
    pub fn allowed(&self, ip: &str, email: &str) -> bool {
        self.failures.get(&format!("ip:{ip}")).unwrap_or(0) < PER_IP
            && self.failures.get(&format!("email:{email}")).unwrap_or(0) < PER_EMAIL
    }

    pub fn failed(&self, ip: &str, email: &str) {
        for k in [format!("ip:{ip}"), format!("email:{email}")] {
            let n = self.failures.get(&k).unwrap_or(0);
            self.failures.insert(k, n + 1);
        }
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.invalidate(&format!("email:{email}"));
    }
}

/// Errors of a form, by field, shown next to the field.
pub type FormErrors = HashMap<&'static str, String>;

/// The client's address (behind a trusted proxy, the one it forwards).
#[must_use]
pub fn client_ip(req: &HttpRequest) -> String {
    crate::http::client_ip::client_ip(req).map(|a| a.to_string()).unwrap_or_default()
}

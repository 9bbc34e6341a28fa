//! The consumer portal in the browser, under `/portal`: entered by a single-use link the
//! provider minted (or a magic link by email), held by an HttpOnly cookie scoped to `/portal`.
//! A portal session sees its consumer's keys only: another consumer's key — of the same tenant
//! or another — is "not found", never data. The portal cookie opens nothing under `/app` or
//! `/v1`, and a dashboard session or root key opens nothing here.

pub mod login;
pub mod pages;
pub mod settings;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use askama::Template;
use futures_util::future::LocalBoxFuture;
use subtle::ConstantTimeEq;

use crate::app::portal::PortalSettings;
use crate::app::{Ctx, ServiceError};
use crate::domain::TenantId;
use crate::state::AppState;
use crate::store::entities::portal_session;

pub const COOKIE: &str = "kr_portal";

/// Logos may come from the provider's own https site; nothing else leaves the origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every portal answer.
pub fn secured(b: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    b.insert_header(("content-security-policy", CSP))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
}

/// What a portal page can fail with: always a page, never a trace.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// No session, or it ended.
    #[error("your portal session has ended")]
    Ended,
    #[error("not found")]
    NotFound,
    #[error("the form expired")]
    Csrf,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ServiceError> for PortalError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) | ServiceError::Forbidden(_) => Self::NotFound,
            other => Self::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

/// A page that says one thing: a heading, a sentence, and a way on.
#[derive(Template)]
#[template(path = "portal/message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

impl ResponseError for PortalError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Ended => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, text) = match self {
            Self::Ended => (
                "Your session has ended",
                "Portal sessions last a few hours. Open the portal again from your provider's site to continue.",
            ),
            Self::NotFound => ("Not found", "There is nothing here for your account."),
            Self::Csrf => ("The form expired", "Go back, reload the page and try again."),
            Self::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "portal page failed");
                ("Something went wrong", "Nothing was changed. Try again in a moment.")
            }
        };
        let body = Message { title, text, link: None }.render().unwrap_or_else(|_| title.to_owned());
        secured(&mut HttpResponse::build(self.status_code())).content_type("text/html; charset=utf-8").body(body)
    }
}

/// A page rendered with the portal's headers.
///
/// # Errors
/// When the template fails (a bug).
pub fn page_with(status: StatusCode, t: &impl Template) -> Result<HttpResponse, PortalError> {
    let body = t.render().map_err(|e| PortalError::Internal(e.into()))?;
    Ok(secured(&mut HttpResponse::build(status)).content_type("text/html; charset=utf-8").body(body))
}

/// 303 to a portal path.
#[must_use]
pub fn see_other(to: &str) -> HttpResponse {
    let to = if to.starts_with("/portal") && !to.contains("//") { to } else { "/portal" };
    secured(&mut HttpResponse::SeeOther()).insert_header((header::LOCATION, to)).finish()
}

/// A consumer signed in to the portal.
pub struct Consumer {
    pub session: portal_session::Model,
    pub tenant: TenantId,
    pub name: String,
    pub brand: PortalSettings,
    /// The tenant's own name, when no display name is set.
    pub tenant_name: String,
}

impl Consumer {
    /// The context of what the consumer does here.
    #[must_use]
    pub fn ctx<'a>(&self, state: &'a AppState) -> Ctx<'a> {
        Ctx::consumer(state, self.tenant.clone(), &self.session.consumer_id, crate::http::request_id::origin())
    }

    pub fn consumer_id(&self) -> &str {
        &self.session.consumer_id
    }

    /// # Errors
    /// `Csrf` unless the form carries this session's token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), PortalError> {
        if bool::from(sent.as_bytes().ct_eq(self.session.csrf.as_bytes())) { Ok(()) } else { Err(PortalError::Csrf) }
    }

    /// What every portal page shows around its content.
    #[must_use]
    pub fn chrome(&self) -> Chrome {
        Chrome {
            provider: self.brand.display_name.clone().unwrap_or_else(|| self.tenant_name.clone()),
            logo_url: self.brand.logo_url.clone(),
            support_url: self.brand.support_url.clone(),
            return_url: self.session.return_url.clone(),
            consumer: self.name.clone(),
            csrf: self.session.csrf.clone(),
        }
    }
}

/// The frame of every portal page.
pub struct Chrome {
    pub provider: String,
    pub logo_url: Option<String>,
    pub support_url: Option<String>,
    pub return_url: Option<String>,
    pub consumer: String,
    pub csrf: String,
}

impl FromRequest for Consumer {
    type Error = PortalError;
    type Future = LocalBoxFuture<'static, Result<Self, PortalError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let cookie = req.cookie(COOKIE).map(|c| c.value().to_owned());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| PortalError::Internal(anyhow::anyhow!("application state missing")))?;
            let cookie = cookie.ok_or(PortalError::Ended)?;
            let session = crate::app::portal::session_of(&state, &cookie).await?.ok_or(PortalError::Ended)?;
            let tenant = TenantId::from_trusted(session.tenant_id.clone());
            let ctx = Ctx::consumer(&state, tenant.clone(), &session.consumer_id, crate::domain::Origin::default());
            // A consumer deleted meanwhile has no portal any more.
            let consumer =
                crate::app::portal::consumer_of(&ctx, &session.consumer_id).await.map_err(|_| PortalError::Ended)?;
            let brand = crate::app::portal::settings(&state, &tenant).await?;
            let t = crate::store::tenants::get(&state.db, &tenant).await.map_err(ServiceError::from)?;
            Ok(Self { session, tenant, name: consumer.name, brand, tenant_name: t.name })
        })
    }
}

/// The session cookie: HttpOnly, `SameSite=Lax` (the link arrives from the provider's site),
/// scoped to `/portal`.
fn session_cookie(state: &AppState, value: String, max_age_hours: i64) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path("/portal")
        .http_only(true)
        .secure(crate::http::web::session::cookie_secure(&state.settings))
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::hours(max_age_hours))
        .finish()
}

#[derive(serde::Deserialize)]
pub struct EnterQuery {
    #[serde(default)]
    token: String,
}

/// `GET /portal/enter?token=…`: takes the link once, sets the session cookie, 303 to `/portal`.
///
/// # Errors
/// A page that says the link cannot be used.
pub async fn enter(state: web::Data<AppState>, q: web::Query<EnterQuery>) -> Result<HttpResponse, PortalError> {
    match crate::app::portal::enter(&state, &q.token).await {
        Ok(entered) => {
            let mut res = see_other("/portal");
            res.add_cookie(&session_cookie(&state, entered.cookie, crate::app::portal::SESSION_HOURS))
                .map_err(|e| PortalError::Internal(anyhow::anyhow!("{e}")))?;
            Ok(res)
        }
        Err(crate::app::portal::EnterError::Unusable) => page_with(
            StatusCode::GONE,
            &Message {
                title: "This link cannot be used",
                text: "Portal links work once and for a short time. Open the portal again from your provider's site \
                       to get a new one.",
                link: None,
            },
        ),
        Err(crate::app::portal::EnterError::Service(e)) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /portal/logout`.
///
/// # Errors
/// `Csrf`, database errors.
pub async fn logout(
    state: web::Data<AppState>,
    me: Consumer,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    crate::app::portal::sign_out(&state, &me.session).await?;
    let mut res =
        page_with(StatusCode::OK, &Message { title: "Signed out", text: "You have left the portal.", link: None })?;
    res.add_cookie(&session_cookie(&state, String::new(), 0))
        .map_err(|e| PortalError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(res)
}

/// `GET /portal/brand.css`: the tenant's accent colour (the CSP allows no inline style).
pub async fn brand_css(me: Result<Consumer, PortalError>) -> HttpResponse {
    let accent = me.ok().and_then(|m| m.brand.accent_color).unwrap_or_default();
    let css = if accent.is_empty() { String::new() } else { format!(":root {{ --accent: {accent}; }}\n") };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, max-age=60"))
        .content_type("text/css; charset=utf-8")
        .body(css)
}

/// Every route of the portal.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/portal", web::get().to(pages::index))
        .route("/portal/enter", web::get().to(enter))
        .route("/portal/logout", web::post().to(logout))
        .route("/portal/brand.css", web::get().to(brand_css))
        .route("/portal/shown/{id}", web::get().to(pages::shown))
        .route("/portal/keys/{id}", web::get().to(pages::key_page))
        .route("/portal/keys/{id}/rotate", web::post().to(pages::rotate))
        .route("/portal/keys/{id}/pickup", web::post().to(pages::pickup))
        .route("/portal/keys/{id}/revoke", web::post().to(pages::revoke))
        .route("/portal/settings", web::get().to(settings::page))
        .route("/portal/settings/email", web::post().to(settings::save_email))
        .route("/portal/settings/endpoints", web::post().to(settings::add_endpoint))
        .route("/portal/settings/endpoints/{id}/delete", web::post().to(settings::remove_endpoint))
        .route("/portal/{tenant_slug}/login", web::get().to(login::form))
        .route("/portal/{tenant_slug}/login", web::post().to(login::send));
}

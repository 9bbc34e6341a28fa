//! `GET/POST /portal/{tenant_slug}/login`: a consumer asks for a sign-in link by email, when
//! the provider turned it on. The answer is the same whether or not the address is known, and
//! asking is throttled per address and per client.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{PortalError, page_with};
use crate::domain::TenantId;
use crate::domain::input::Email;
use crate::http::web::session::{Throttle, client_ip};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "portal/login.html")]
struct LoginPage<'a> {
    provider: String,
    action: String,
    email: &'a str,
    sent: bool,
    error: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub email: String,
}

async fn provider_of(
    state: &AppState,
    slug: &str,
) -> Result<(crate::store::entities::tenant::Model, String), PortalError> {
    let t = crate::app::portal::magic_tenant(state, slug).await?.ok_or(PortalError::NotFound)?;
    let s = crate::app::portal::settings(state, &TenantId::from_trusted(t.id.clone())).await?;
    let name = s.display_name.unwrap_or_else(|| t.name.clone());
    Ok((t, name))
}

/// `GET /portal/{tenant_slug}/login`.
///
/// # Errors
/// `NotFound` when the tenant does not sign in by email.
pub async fn form(state: web::Data<AppState>, slug: web::Path<String>) -> Result<HttpResponse, PortalError> {
    let (_, provider) = provider_of(&state, &slug).await?;
    let action = format!("/portal/{slug}/login");
    page_with(StatusCode::OK, &LoginPage { provider, action, email: "", sent: false, error: None })
}

/// A form posted from another site is refused (the browser names where it comes from).
fn same_origin(req: &HttpRequest, base: &str) -> bool {
    match req.headers().get("origin").and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => {
            base.trim_end_matches('/').eq_ignore_ascii_case(o) || {
                // Served on its own address without a public URL: the host header names it.
                let host = req.connection_info().host().to_owned();
                o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")) == Some(host.as_str())
            }
        }
    }
}

/// `POST /portal/{tenant_slug}/login`: sends the links; says the same either way.
///
/// # Errors
/// `NotFound` when the tenant does not sign in by email.
pub async fn send(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    slug: web::Path<String>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PortalError> {
    let (t, provider) = provider_of(&state, &slug).await?;
    let action = format!("/portal/{slug}/login");
    if !same_origin(&req, &state.base_url) {
        return Err(PortalError::Csrf);
    }
    let Ok(email) = Email::parse(&form.email) else {
        let page =
            LoginPage { provider, action, email: &form.email, sent: false, error: Some("Enter your email address.") };
        return page_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let ip = client_ip(&req);
    let key = format!("portal:{}:{}", t.id, email.as_str());
    if !throttle.allowed(&ip, &key) {
        let page = LoginPage {
            provider,
            action,
            email: email.as_str(),
            sent: false,
            error: Some("Too many attempts. Wait 15 minutes."),
        };
        return page_with(StatusCode::TOO_MANY_REQUESTS, &page);
    }
    // Every request counts: links cannot be sprayed at an inbox.
    throttle.failed(&ip, &key);
    let tenant = TenantId::from_trusted(t.id.clone());
    match crate::app::portal::magic_links(&state, &tenant, email.as_str()).await {
        Ok(links) => {
            for (to, link) in links {
                let body = format!(
                    "Someone asked to sign in to the {provider} key portal with this address.\n\nSign in here (the link works once, for {} minutes):\n{link}\n\nIf it was not you, ignore this email.\n",
                    crate::app::portal::MAGIC_LINK_MINUTES
                );
                crate::http::web::account::send_mail(
                    &state,
                    &to,
                    &format!("Sign in to the {provider} key portal"),
                    body,
                )
                .await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "a portal sign-in link could not be made"),
    }
    page_with(StatusCode::OK, &LoginPage { provider, action, email: email.as_str(), sent: true, error: None })
}

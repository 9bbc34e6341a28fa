//! `/portal/settings`: where the consumer's notices go — its email address and its own webhook
//! endpoints (signed like the provider's, carrying only this consumer's events).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, Consumer, PortalError, page_with, see_other};
use crate::app::reveals::Reveal;
use crate::app::{self, ServiceError};
use crate::state::AppState;

/// An endpoint as the page lists it.
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub enabled: bool,
}

#[derive(Template)]
#[template(path = "portal/settings.html")]
struct SettingsPage<'a> {
    c: Chrome,
    email: &'a str,
    url: &'a str,
    endpoints: Vec<EndpointRow>,
    email_error: Option<String>,
    url_error: Option<String>,
    notice: Option<&'a str>,
}

struct Shown<'a> {
    email: Option<&'a str>,
    url: &'a str,
    email_error: Option<String>,
    url_error: Option<String>,
    notice: Option<&'a str>,
}

async fn render(
    state: &AppState,
    me: &Consumer,
    s: Shown<'_>,
    status: StatusCode,
) -> Result<HttpResponse, PortalError> {
    let ctx = me.ctx(state);
    let con = app::portal::consumer_of(&ctx, me.consumer_id()).await?;
    let endpoints = app::portal::endpoints(&ctx, me.consumer_id())
        .await?
        .into_iter()
        .map(|e| EndpointRow { id: e.id, url: e.url, enabled: e.enabled })
        .collect();
    let saved = con.email.unwrap_or_default();
    page_with(
        status,
        &SettingsPage {
            c: me.chrome(),
            email: s.email.unwrap_or(&saved),
            url: s.url,
            endpoints,
            email_error: s.email_error,
            url_error: s.url_error,
            notice: s.notice,
        },
    )
}

const NOTHING: Shown<'static> = Shown { email: None, url: "", email_error: None, url_error: None, notice: None };

/// `GET /portal/settings`.
///
/// # Errors
/// `Ended` without a session.
pub async fn page(state: web::Data<AppState>, me: Consumer) -> Result<HttpResponse, PortalError> {
    render(&state, &me, NOTHING, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /portal/settings/email`: an empty address stops the emails.
///
/// # Errors
/// `Csrf`.
pub async fn save_email(
    state: web::Data<AppState>,
    me: Consumer,
    form: web::Form<EmailForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    let email = Some(form.email.trim().to_owned()).filter(|e| !e.is_empty());
    match app::portal::set_email(&me.ctx(&state), me.consumer_id(), email).await {
        Ok(_) => render(&state, &me, Shown { notice: Some("Saved."), ..NOTHING }, StatusCode::OK).await,
        Err(ServiceError::Invalid(_)) => {
            let shown = Shown {
                email: Some(&form.email),
                email_error: Some("Enter an email address, or leave it empty.".into()),
                ..NOTHING
            };
            render(&state, &me, shown, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct EndpointForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
}

/// `POST /portal/settings/endpoints`: a new endpoint; its signing secret is shown once.
///
/// # Errors
/// `Csrf`.
pub async fn add_endpoint(
    state: web::Data<AppState>,
    me: Consumer,
    form: web::Form<EndpointForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    let ctx = me.ctx(&state);
    match app::portal::add_endpoint(&ctx, me.consumer_id(), form.url.trim().to_owned()).await {
        Ok(made) => {
            let reveal = Reveal {
                heading: "Endpoint added".into(),
                label: format!("Signing secret of {}", made.endpoint.url),
                secret: made.secret,
                start: None,
                note: "Check every delivery's webhook-signature header with it (Standard Webhooks).".into(),
                done: "/portal/settings".into(),
                back: None,
                lines: false,
            };
            Ok(see_other(&app::reveals::hold_at(&ctx, &reveal, "/portal/shown").await?))
        }
        Err(ServiceError::Invalid(errs)) => {
            let message = errs
                .first()
                .map_or_else(String::new, |e| crate::http::web::session::sentence(&format!("The URL {}", e.message)));
            let shown = Shown { url: &form.url, url_error: Some(message), ..NOTHING };
            render(&state, &me, shown, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::Conflict(m)) => {
            let shown = Shown { url: &form.url, url_error: Some(crate::http::web::session::sentence(&m)), ..NOTHING };
            render(&state, &me, shown, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /portal/settings/endpoints/{id}/delete`.
///
/// # Errors
/// `NotFound` for an endpoint that is not the consumer's own; `Csrf`.
pub async fn remove_endpoint(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    form: web::Form<super::CsrfForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    app::portal::remove_endpoint(&me.ctx(&state), me.consumer_id(), &id).await?;
    render(&state, &me, Shown { notice: Some("Endpoint removed."), ..NOTHING }, StatusCode::OK).await
}

//! Secrets shown once: the page a secret-making form redirects to (see `app::reveals`).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::Chrome;
use super::session::{Signed, WebError, page_with, see_other};
use crate::app;
use crate::app::reveals::Reveal;
use crate::state::AppState;
use crate::store::entities::key;

/// The page that shows a held secret once (`GET /app/shown/{id}?k=…`); "already shown" ever
/// after, and on a reload.
#[derive(Template)]
#[template(path = "app/shown.html")]
pub(crate) struct ShownPage {
    pub c: Chrome,
    pub reveal: Option<Reveal>,
}

/// The query of the page that shows a secret.
#[derive(Debug, Deserialize)]
pub struct ShownQuery {
    #[serde(default)]
    pub k: String,
}

/// `GET /app/shown/{id}?k=…`.
pub async fn shown(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<ShownQuery>,
) -> Result<HttpResponse, WebError> {
    let reveal = app::reveals::take(&me.ctx(&state), &id, &q.k).await?;
    let status = if reveal.is_some() { StatusCode::OK } else { StatusCode::GONE };
    let mut res = page_with(status, &ShownPage { c: Chrome::of(&me, ""), reveal })?;
    // Neither the browser nor anything between may keep the page.
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Holds what a page shows once and redirects (303) to it.
///
/// # Errors
/// When it cannot be stored.
pub(crate) async fn show_once(ctx: &app::Ctx<'_>, reveal: &Reveal) -> Result<HttpResponse, WebError> {
    Ok(see_other(&app::reveals::hold(ctx, reveal).await?))
}

/// Holds a new key's secret for its page and redirects there (303): reloading never creates
/// another key.
pub(crate) async fn reveal_key(
    state: &AppState,
    me: &Signed,
    heading: &str,
    key: &key::Model,
    secret: &str,
    done: String,
    back: Option<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let reveal = Reveal {
        heading: heading.to_owned(),
        label: format!("The new key (v{})", key.version),
        secret: secret.to_owned(),
        start: Some(key.start.clone()),
        note: String::new(),
        done,
        back,
        lines: false,
    };
    show_once(&me.ctx(state), &reveal).await
}

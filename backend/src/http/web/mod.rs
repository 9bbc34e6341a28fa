//! Browser pages (server-rendered with askama) and the embedded static files.

use actix_web::{HttpResponse, web};
use askama::Template;
use rust_embed::RustEmbed;

use crate::state::AppState;
use crate::store::tenants;

#[derive(RustEmbed)]
#[folder = "../static"]
struct Static;

#[derive(Template)]
#[template(path = "home.html")]
struct Home<'a> {
    has_tenant: bool,
    public_url: &'a str,
}

/// The landing page: what to do next on a fresh install.
pub async fn home(state: web::Data<AppState>) -> HttpResponse {
    let has_tenant = tenants::any(&state.db).await.unwrap_or(false);
    let public_url = state.settings.public_url.clone().unwrap_or_else(|| format!("http://{}", state.settings.listen));
    match (Home { has_tenant, public_url: &public_url }).render() {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("content-security-policy", "default-src 'self'; frame-ancestors 'none'"))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// A file from `static/`, embedded in the binary.
pub async fn static_file(path: web::Path<String>) -> HttpResponse {
    match Static::get(&path) {
        Some(f) => {
            let mime = mime_guess::from_path(path.as_str()).first_or_octet_stream();
            HttpResponse::Ok()
                .content_type(mime.as_ref())
                .insert_header(("cache-control", "public, max-age=3600"))
                .body(f.data.into_owned())
        }
        None => HttpResponse::NotFound().finish(),
    }
}

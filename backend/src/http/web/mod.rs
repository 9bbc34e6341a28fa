//! Browser pages (server-rendered with askama) and the embedded static files.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod apis;
pub mod app;
pub mod audit;
pub mod billing;
pub mod bulk;
pub mod charts;
pub mod confirm;
pub mod gateway_fields;
pub mod key_fields;
pub mod key_new;
pub mod keys;
pub mod names;
pub mod picks;
pub mod playbooks;
pub mod policies;
pub mod search;
pub mod session;
pub mod shown;
pub mod team;
pub mod tokens;
pub mod twofactor;

use actix_web::{HttpResponse, web};
use rust_embed::RustEmbed;

use crate::state::AppState;
use crate::store::tenants;

#[derive(RustEmbed)]
#[folder = "../static"]
struct Static;

/// `/`: the first-run form on an empty install, the dashboard when signed in, else sign-in.
pub async fn home(state: web::Data<AppState>, req: actix_web::HttpRequest) -> HttpResponse {
    match tenants::any(&state.db).await {
        Ok(false) => session::see_other("/setup"),
        Ok(true) if req.cookie(session::SESSION_COOKIE).is_some() => session::see_other("/app"),
        Ok(true) => session::see_other("/login"),
        Err(e) => actix_web::ResponseError::error_response(&session::WebError::from(e)),
    }
}

/// Every dashboard route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/setup", web::get().to(account::setup_form))
        .route("/setup", web::post().to(account::create_account))
        .route("/signup", web::get().to(account::signup_form))
        .route("/signup", web::post().to(account::create_account))
        .route("/login", web::get().to(account::login_form))
        .route("/login", web::post().to(account::login))
        .route("/logout", web::post().to(account::logout))
        .route("/login/2fa", web::get().to(twofactor::code_form))
        .route("/login/2fa", web::post().to(twofactor::check_code))
        .route("/app/account", web::get().to(twofactor::account_page))
        .route("/app/account/password", web::post().to(account::change_password))
        .route("/app/account/2fa/{step}", web::post().to(twofactor::two_factor))
        .route("/forgot", web::get().to(account::forgot_form))
        .route("/forgot", web::post().to(account::forgot))
        .route("/reset/{token}", web::get().to(account::reset_form))
        .route("/reset/{token}", web::post().to(account::reset))
        .route("/app", web::get().to(app::overview))
        .route("/app/switch", web::post().to(account::switch))
        .route("/app/search", web::get().to(search::search))
        .route("/app/alerts", web::get().to(alerts::alerts_page))
        .route("/app/alerts/thresholds", web::post().to(alerts::set_thresholds))
        .route("/app/alerts/{id}/{action}", web::post().to(alerts::action))
        .route("/app/apis", web::get().to(apis::apis_page))
        .route("/app/apis", web::post().to(apis::create_api))
        .route("/app/apis/{id}", web::get().to(apis::api_page))
        .route("/app/apis/{id}", web::post().to(apis::save_settings))
        .route("/app/apis/{id}/leak-policy", web::post().to(apis::set_leak_policy))
        .route("/app/consumers", web::get().to(app::consumers_page))
        .route("/app/consumers", web::post().to(app::create_consumer))
        .route("/app/consumers/{id}", web::get().to(app::consumer_page))
        .route("/app/consumers/{id}", web::post().to(app::edit_consumer))
        .route("/app/consumers/{id}/delete", web::post().to(app::delete_consumer))
        .route("/app/keys/new", web::get().to(key_new::new_key_page))
        .route("/app/keys", web::post().to(key_new::create_key))
        .route("/app/keys/{id}", web::get().to(keys::key_page))
        .route("/app/shown/{id}", web::get().to(shown::shown))
        .route("/app/keys/{id}/settings", web::post().to(keys::edit_key))
        .route("/app/keys/{id}/rotate", web::post().to(keys::rotate_key))
        .route("/app/keys/{id}/revoke", web::post().to(keys::revoke_key))
        .route("/app/keys/{id}/enabled", web::post().to(keys::set_enabled))
        .route("/app/keys/{id}/disable", web::get().to(confirm::disable))
        .route("/app/rotations/{id}", web::get().to(keys::rotation_page))
        .route("/app/rotations/{id}/{action}", web::post().to(keys::rotation_action))
        .route("/app/rotations/{id}/{action}", web::get().to(confirm::rotation))
        .route("/app/root-keys", web::get().to(admin::root_keys))
        .route("/app/root-keys", web::post().to(admin::create_root_key))
        .route("/app/root-keys/{id}/revoke", web::post().to(admin::revoke_root_key))
        .route("/app/root-keys/{id}/rotate", web::post().to(admin::rotate_root_key))
        .route("/app/tokens", web::get().to(tokens::page))
        .route("/app/tokens/rotate", web::post().to(tokens::rotate))
        .route("/app/tokens/portal", web::post().to(tokens::save_portal))
        .route("/app/tokens/schedule", web::post().to(tokens::save_schedule))
        .route("/app/billing", web::get().to(billing::page))
        .route("/app/billing/checkout", web::get().to(billing::checkout))
        .route("/app/billing/portal", web::get().to(billing::portal))
        .route("/app/tokens/{kid}/revoke", web::post().to(tokens::revoke))
        .route("/app/webhooks", web::get().to(admin::webhooks))
        .route("/app/webhooks", web::post().to(admin::create_endpoint))
        .route("/app/webhooks/{id}/{action}", web::post().to(admin::endpoint_action))
        .route("/app/webhooks/{id}/delete", web::get().to(confirm::delete_endpoint))
        .route("/app/bulk", web::get().to(bulk::bulk_page))
        .route("/app/bulk", web::post().to(bulk::bulk))
        .route("/app/jobs/{id}", web::get().to(bulk::job_page))
        .route("/app/playbooks", web::get().to(playbooks::playbooks_page))
        .route("/app/playbooks", web::post().to(playbooks::create))
        .route("/app/playbooks/{id}", web::get().to(playbooks::playbook_page))
        .route("/app/playbooks/{id}/run", web::post().to(playbooks::run))
        .route("/app/playbook-runs/{id}", web::get().to(playbooks::run_page))
        .route("/app/playbook-runs/{id}/approve", web::post().to(playbooks::approve))
        .route("/app/policies", web::get().to(policies::policies_page))
        .route("/app/policies", web::post().to(policies::create))
        .route("/app/policies/{id}", web::get().to(policies::edit_page))
        .route("/app/policies/{id}", web::post().to(policies::update))
        .route("/app/policies/{id}/delete", web::post().to(policies::delete))
        .route("/app/team", web::get().to(team::team_page))
        .route("/app/audit", web::get().to(audit::audit_page))
        .route("/app/audit/export", web::get().to(audit::export_file))
        .route("/app/audit/retention", web::post().to(audit::set_retention))
        .route("/app/team/invite", web::post().to(team::invite))
        .route("/app/team/stripe", web::post().to(team::connect_stripe))
        .route("/app/team/stripe/disconnect", web::post().to(team::disconnect_stripe))
        .route("/app/team/{user_id}", web::post().to(team::change))
        .route("/app/team/{user_id}/password-link", web::post().to(team::password_link));
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

//! actix-web: routes, errors, extractors.

pub mod api;
pub mod auth;
pub mod body_deadline;
pub mod client_ip;
pub mod compat;
pub mod errors;
pub mod health;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod openapi_bounds;
pub mod pagination;
pub mod portal;
pub mod public;
pub mod request_id;
pub mod web;

use actix_web::http::Method;
use actix_web::web as aw;

use errors::ApiError;

/// Every route of the application.
pub fn routes(cfg: &mut aw::ServiceConfig) {
    // Routes are tried in order: the hot path first, and before any pattern that needs a regex.
    cfg.route("/v1/verify", methods([Method::POST]).to(public::verify::verify));
    // Gateways ask with the method they hold (Envoy, Traefik) or with GET (nginx, Caddy); Envoy
    // appends the original path.
    for path in ["/v1/gateway/auth", "/v1/gateway/auth/{tail:.*}"] {
        cfg.route(path, methods(public::gateway::METHODS).to(public::gateway::auth));
    }
    cfg.route("/healthz", aw::get().to(health::healthz))
        .route("/readyz", aw::get().to(health::readyz))
        .route("/metrics", aw::get().to(health::metrics))
        .route("/openapi.json", aw::get().to(openapi::spec))
        .route("/internal/probe", aw::post().to(public::probe::probe))
        .route("/t/{tenant_id}/.well-known/openid-configuration", aw::get().to(public::oauth::discovery))
        .route("/t/{tenant_id}/.well-known/jwks.json", aw::get().to(public::oauth::jwks))
        .route("/", aw::get().to(web::home))
        .route("/static/{path:.*}", aw::get().to(web::static_file))
        .configure(web::routes)
        .configure(portal::routes)
        .configure(compat::routes)
        .service(
            aw::scope("/v1")
                .route("/alerts", aw::get().to(api::alerts::list))
                .route("/alerts/{id}", aw::get().to(api::alerts::get))
                .route("/alerts/{id}/acknowledge", aw::post().to(api::alerts::acknowledge))
                .route("/alerts/{id}/resolve", aw::post().to(api::alerts::resolve))
                .route("/alert-thresholds", aw::get().to(api::alerts::thresholds))
                .route("/alert-thresholds", aw::patch().to(api::alerts::update_thresholds))
                .route("/apis", aw::post().to(api::apis::create))
                .route("/apis", aw::get().to(api::apis::list))
                .route("/apis/{id}", aw::get().to(api::apis::get))
                .route("/apis/{id}", aw::patch().to(api::apis::update))
                .route("/apis/{id}/usage", aw::get().to(api::usage::api))
                .route("/apis/{id}/migration", aw::get().to(api::migration::api))
                .route("/consumers", aw::post().to(api::consumers::create))
                .route("/consumers", aw::get().to(api::consumers::list))
                .route("/consumers/{id}", aw::get().to(api::consumers::get))
                .route("/consumers/{id}", aw::patch().to(api::consumers::update))
                .route("/consumers/{id}", aw::delete().to(api::consumers::delete))
                .route("/consumers/{id}/usage", aw::get().to(api::usage::consumer))
                .route("/keys/import", aw::post().to(api::imports::import))
                .route("/keys", aw::post().to(api::keys::create))
                .route("/keys", aw::get().to(api::keys::list))
                .route("/keys/{id}", aw::get().to(api::keys::get))
                .route("/keys/{id}", aw::patch().to(api::keys::update))
                .route("/keys/{id}/usage", aw::get().to(api::usage::key))
                .route("/keys/{id}/revoke", aw::post().to(api::keys::revoke))
                .route("/keys/{id}/rotate", aw::post().to(api::rotations::rotate_key))
                .route("/rotations", aw::get().to(api::rotations::list))
                .route("/rotations/bulk", aw::post().to(api::rotations::bulk))
                .route("/jobs/{id}", aw::get().to(api::rotations::job))
                .route("/rotations/{id}", aw::get().to(api::rotations::get))
                .route("/rotations/{id}/migration", aw::get().to(api::migration::rotation))
                .route("/rotations/{id}/complete", aw::post().to(api::rotations::complete))
                .route("/rotations/{id}/rollback", aw::post().to(api::rotations::rollback))
                .route("/rotations/{id}/extend", aw::post().to(api::rotations::extend))
                .route("/root-keys/{id}/rotate", aw::post().to(api::rotations::rotate_root_key))
                .route("/playbooks", aw::get().to(api::playbooks::list))
                .route("/playbooks", aw::post().to(api::playbooks::create))
                .route("/playbooks/{id}", aw::get().to(api::playbooks::get))
                .route("/playbooks/{id}/runs", aw::post().to(api::playbooks::run))
                .route("/playbook-runs", aw::get().to(api::playbooks::list_runs))
                .route("/playbook-runs/{id}", aw::get().to(api::playbooks::get_run))
                .route("/playbook-runs/{id}/approve", aw::post().to(api::playbooks::approve))
                .route("/policies", aw::post().to(api::policies::create))
                .route("/policies", aw::get().to(api::policies::list))
                .route("/policies/{id}", aw::get().to(api::policies::get))
                .route("/policies/{id}", aw::patch().to(api::policies::update))
                .route("/policies/{id}", aw::delete().to(api::policies::delete))
                .route("/self/pickup", aw::post().to(public::self_service::pickup))
                .route("/webhook-endpoints", aw::post().to(api::webhooks::create))
                .route("/webhook-endpoints", aw::get().to(api::webhooks::list))
                .route("/webhook-endpoints/{id}", aw::get().to(api::webhooks::get))
                .route("/webhook-endpoints/{id}", aw::patch().to(api::webhooks::update))
                .route("/webhook-endpoints/{id}", aw::delete().to(api::webhooks::delete))
                .route("/webhook-endpoints/{id}/rotate-secret", aw::post().to(api::webhooks::rotate_secret))
                .route("/events", aw::get().to(api::webhooks::events))
                .route("/intake/github", aw::post().to(public::intake::github))
                .route("/billing", aw::get().to(api::billing::get))
                .route("/billing/stripe/webhook", aw::post().to(public::billing::stripe))
                .route("/billing/stripe/connection", aw::get().to(api::billing::connection))
                .route("/billing/stripe/connection", aw::put().to(api::billing::connect))
                .route("/billing/stripe/connection", aw::delete().to(api::billing::disconnect))
                .route("/intake/leaks", aw::post().to(public::intake::generic))
                .route("/audit-events", aw::get().to(api::audit::list))
                .route("/audit-events/export", aw::get().to(api::audit::export))
                .route("/audit-events/verify", aw::get().to(api::audit::verify))
                .route("/oauth/token", aw::post().to(public::oauth::token))
                .route("/oauth/introspect", aw::post().to(public::oauth::introspect))
                .route("/portal/sessions", aw::post().to(api::portal::create_session))
                .route("/portal/settings", aw::get().to(api::portal::get_settings))
                .route("/portal/settings", aw::patch().to(api::portal::update_settings))
                .route("/signing-keys", aw::get().to(api::signing_keys::list))
                .route("/signing-keys/rotate", aw::post().to(api::signing_keys::rotate))
                .route("/signing-keys/schedule", aw::get().to(api::signing_keys::get_schedule))
                .route("/signing-keys/schedule", aw::patch().to(api::signing_keys::patch_schedule))
                .route("/signing-keys/{kid}/revoke", aw::post().to(api::signing_keys::revoke))
                .route("/self", aw::get().to(public::self_service::get))
                .route("/self/rotate", aw::post().to(public::self_service::rotate))
                .route("/root-keys", aw::post().to(api::root_keys::create))
                .route("/root-keys", aw::get().to(api::root_keys::list))
                .route("/root-keys/{id}/revoke", aw::post().to(api::root_keys::revoke)),
        )
        .default_service(aw::to(not_found));
}

/// A route for the hot paths that answers these methods. Its guard only compares the method:
/// actix-web's method guards also note every method they were asked about in the request's
/// extensions (an allocation per request), for `405` answers that [`not_found`] writes here.
fn methods<const N: usize>(allowed: [Method; N]) -> actix_web::Route {
    aw::route().guard(actix_web::guard::fn_guard(move |ctx| allowed.contains(&ctx.head().method)))
}

/// The application's state, borrowed from the request. The hot paths take it so rather than by
/// the `web::Data` extractor, whose clone of the `Arc` changes a reference count that every
/// request of every worker shares.
///
/// # Errors
/// When the application was built without its state.
pub fn app_state(req: &actix_web::HttpRequest) -> Result<&crate::state::AppState, ApiError> {
    req.app_data::<aw::Data<crate::state::AppState>>()
        .map(|d| &***d)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no application state")))
}

/// Unknown paths answer a 404 problem; a path of the API asked with a method it does not answer,
/// a 405 with `Allow` naming the methods it does (the routes are those of the OpenAPI document).
async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    match openapi::methods_of(req.path()) {
        Some(allow) => Err(ApiError::MethodNotAllowed(allow)),
        None => Err(ApiError::NotFound("no such route")),
    }
}

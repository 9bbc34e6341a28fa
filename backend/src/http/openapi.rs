//! The OpenAPI 3.1 document, generated from the handlers and types.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, health, public};

struct RootKeyAuth;

impl Modify for RootKeyAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "root_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kr_root_…")
                    .description(Some("A root key of the tenant"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "consumer_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("The consumer's own key")).build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyroll", description = "API keys with zero-downtime rotation: issue, verify, rotate, revoke."),
    modifiers(&RootKeyAuth),
    paths(
        public::verify::verify,
        api::apis::create, api::apis::list, api::apis::get, api::apis::update,
        api::consumers::create, api::consumers::list, api::consumers::get, api::consumers::update,
        api::consumers::delete,
        api::keys::create, api::keys::list, api::keys::get, api::keys::update, api::keys::revoke,
        api::root_keys::create, api::root_keys::list, api::root_keys::revoke,
        api::rotations::rotate_key, api::rotations::rotate_root_key, api::rotations::list, api::rotations::get,
        api::rotations::complete, api::rotations::rollback, api::rotations::extend, api::rotations::bulk,
        api::rotations::job,
        public::self_service::get, public::self_service::rotate,
        api::webhooks::create, api::webhooks::list, api::webhooks::events, api::webhooks::get,
        api::webhooks::update, api::webhooks::delete, api::webhooks::rotate_secret,
        api::policies::create, api::policies::list, api::policies::get, api::policies::update, api::policies::delete,
        public::self_service::pickup,
        api::audit::list, api::audit::export, api::audit::verify,
        api::playbooks::list, api::playbooks::create, api::playbooks::get, api::playbooks::run,
        api::playbooks::list_runs, api::playbooks::get_run, api::playbooks::approve,
        api::usage::key, api::usage::consumer, api::usage::api, api::migration::api, api::migration::rotation,
        api::alerts::list, api::alerts::get, api::alerts::acknowledge, api::alerts::resolve,
        api::alerts::thresholds, api::alerts::update_thresholds,
        public::intake::github, public::intake::generic,
        health::healthz, health::readyz, health::metrics, spec,
    )
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn spec() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(ApiDoc::openapi().to_json().unwrap_or_default())
}

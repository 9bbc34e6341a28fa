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

/// Errors are sent as `application/problem+json`: every response documented with the `Problem`
/// schema says so; every operation that takes a root key or a consumer's key documents its 401,
/// and every one that takes a body its 408 and 413.
struct Problems;

impl Modify for Problems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, RefOr, ResponseBuilder};
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.head,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
                &mut item.options,
            ];
            for op in ops.into_iter().flatten() {
                for response in op.responses.responses.values_mut() {
                    let RefOr::T(r) = response else { continue };
                    let problem = r.content.get("application/json").is_some_and(
                        |c| matches!(&c.schema, Some(RefOr::Ref(x)) if x.ref_location.ends_with("/Problem")),
                    );
                    if problem && let Some(c) = r.content.shift_remove("application/json") {
                        r.content.insert("application/problem+json".to_owned(), c);
                    }
                }
                // A request with parameters or a body can be refused as invalid; one with an
                // Idempotency-Key can meet an earlier request under the same key.
                let params = op.parameters.as_deref().unwrap_or_default();
                let takes_input = op.request_body.is_some()
                    || params.iter().any(|p| !matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path));
                let problem = |description: &str| {
                    let content = Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))));
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/problem+json", content)
                            .build(),
                    )
                };
                if takes_input && !op.responses.responses.contains_key("400") {
                    op.responses.responses.insert("400".to_owned(), problem("The request is not valid"));
                }
                // Every body is read with a size limit and a deadline.
                if op.request_body.is_some() {
                    for (status, description) in
                        [("408", "The body did not arrive in time"), ("413", "The body is larger than allowed")]
                    {
                        if !op.responses.responses.contains_key(status) {
                            op.responses.responses.insert(status.to_owned(), problem(description));
                        }
                    }
                }
                if params.iter().any(|p| p.name == "Idempotency-Key") && !op.responses.responses.contains_key("409") {
                    op.responses.responses.insert(
                        "409".to_owned(),
                        problem("The Idempotency-Key was used before with another request, or a conflict"),
                    );
                }
                let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
                if authenticated && !op.responses.responses.contains_key("401") {
                    let content = Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))));
                    let unauthenticated = ResponseBuilder::new()
                        .description("No key, or not a valid one")
                        .content("application/problem+json", content)
                        .build();
                    op.responses.responses.insert("401".to_owned(), RefOr::T(unauthenticated));
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Keyroll", description = "API keys with zero-downtime rotation: issue, verify, rotate, revoke."),
    modifiers(&RootKeyAuth, &Problems),
    paths(
        public::verify::verify,
        api::apis::create, api::apis::list, api::apis::get, api::apis::update,
        api::consumers::create, api::consumers::list, api::consumers::get, api::consumers::update,
        api::consumers::delete,
        api::keys::create, api::imports::import, api::keys::list, api::keys::get, api::keys::update, api::keys::revoke,
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
        public::oauth::token, public::oauth::introspect, public::oauth::discovery, public::oauth::jwks,
        api::signing_keys::list, api::signing_keys::rotate, api::signing_keys::revoke,
        api::signing_keys::get_schedule, api::signing_keys::patch_schedule,
        api::billing::get, public::billing::stripe,
        api::billing::connection, api::billing::connect, api::billing::disconnect,
        public::gateway::auth,
        api::portal::create_session, api::portal::get_settings, api::portal::update_settings,
        health::healthz, health::readyz, health::metrics, spec,
    )
)]
pub struct ApiDoc;

/// The served document: generated from the handlers and types, with the server's limits.
#[must_use]
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        super::openapi_bounds::apply(&mut doc);
        doc.to_string()
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn spec() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

/// The routes of the document: each path's segments (`None` for a `{parameter}`) and methods.
type Routes = Vec<(Vec<Option<String>>, Vec<&'static str>)>;

fn routes() -> &'static Routes {
    static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc = ApiDoc::openapi();
        doc.paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, has)| has.then_some(m))
                .collect();
                (segments, methods)
            })
            .collect()
    })
}

/// The methods the document gives a request path (`"GET, POST"`), or `None` when no documented
/// path matches it.
#[must_use]
pub fn methods_of(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let matching: Vec<_> = routes()
        .iter()
        .filter(|(segments, _)| {
            segments.len() == parts.len()
                && segments.iter().zip(&parts).all(|(s, p)| s.as_deref().map_or(!p.is_empty(), |s| s == *p))
        })
        .collect();
    // The most specific path is the resource (`/v1/rotations/bulk`, not `/v1/rotations/{id}`).
    let literal = |segments: &Vec<Option<String>>| segments.iter().filter(|s| s.is_some()).count();
    let best = matching.iter().map(|(s, _)| literal(s)).max().unwrap_or(0);
    let mut methods: Vec<&str> =
        matching.iter().filter(|(s, _)| literal(s) == best).flat_map(|(_, m)| m.iter().copied()).collect();
    if methods.is_empty() {
        return None;
    }
    methods.sort_unstable();
    methods.dedup();
    Some(methods.join(", "))
}

#[cfg(test)]
mod tests {
    use super::methods_of;

    #[test]
    fn documented_paths_name_their_methods() {
        assert_eq!(methods_of("/v1/keys").as_deref(), Some("GET, POST"));
        assert_eq!(methods_of("/v1/keys/key_01h455vb4pex5vsknk084sn02q").as_deref(), Some("GET, PATCH"));
        assert_eq!(methods_of("/v1/keys//revoke"), None);
        assert_eq!(methods_of("/v1/rotations/bulk").as_deref(), Some("POST"));
        assert_eq!(methods_of("/v1/nothing"), None);
        assert_eq!(methods_of("/app/keys"), None);
    }

    #[test]
    fn every_bound_names_a_field_of_the_document() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).expect("the document is JSON");
        assert_eq!(super::super::openapi_bounds::unmatched(&doc), Vec::<String>::new());
    }
}

//! `GET|POST /v1/gateway/auth`: the verification a gateway asks of a request it holds (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy `ext_authz` in HTTP mode).
//! The API is named by `?api_id=` or `X-Keyroll-Api`; the key is read from the API's header;
//! the original method and path from `X-Original-Method`/`X-Original-URI`, else
//! `X-Forwarded-Method`/`X-Forwarded-Uri`, else this request's own (Envoy appends the original
//! path to the auth path); the route rules give the scopes. Same hot path as `/v1/verify`.
//!
//! 200 with `X-Keyroll-*` headers for the upstream; 401 with `WWW-Authenticate` for no key or a
//! key that is not valid; 403 for a missing scope, a refused address or a route without rules;
//! 429 with `Retry-After` when rate-limited or out of credits; 404 when the API is not named or
//! does not exist.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use serde::Deserialize;

use crate::domain::gateway::Needs;
use crate::domain::{ApiId, KeyState};
use crate::http::errors::{ApiError, Problem};
use crate::http::request_id;
use crate::state::AppState;
use crate::time::http_date;
use crate::verify::{self, Code, VerifyInput};

/// `?api_id=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GatewayQuery {
    /// The API whose keys and rules apply (or the `X-Keyroll-Api` header).
    #[param(pattern = "^api_[0-7][0-9a-hjkmnp-tv-z]{25}$")]
    pub api_id: Option<String>,
}

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The end client's address: from a gateway in `KEYROLL_TRUSTED_PROXIES`, the one it passes on
/// (`Forwarded`, `X-Forwarded-For` or `X-Real-IP`); from anyone else, the caller's own.
fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    crate::http::client_ip::client_ip(req)
}

/// The original method and path (without the query).
fn original(req: &HttpRequest, tail: Option<&str>) -> (String, String) {
    let method = header(req, "x-original-method")
        .or_else(|| header(req, "x-forwarded-method"))
        .map_or_else(|| req.method().as_str().to_owned(), str::to_ascii_uppercase);
    let uri = header(req, "x-original-uri").or_else(|| header(req, "x-forwarded-uri")).map(str::to_owned);
    let uri = uri.unwrap_or_else(|| format!("/{}", tail.unwrap_or("").trim_start_matches('/')));
    // An absolute URI (some proxies send one) keeps its path only.
    let path = match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_owned(),
        None => uri,
    };
    (method, path.split(['?', '#']).next().unwrap_or("/").to_owned())
}

fn refuse(status: StatusCode, code: &str, detail: &str) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header(("x-keyroll-code", code.to_owned()));
    if status == StatusCode::UNAUTHORIZED {
        let value = if code == "MISSING" {
            "Bearer realm=\"keyroll\"".to_owned()
        } else {
            format!("Bearer realm=\"keyroll\", error=\"invalid_token\", error_description=\"{detail}\"")
        };
        res.insert_header(("www-authenticate", value));
    }
    res
}

fn problem_body(status: StatusCode, code: &str, detail: &str) -> String {
    serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Refused"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
        "request_id": request_id::current(),
    })
    .to_string()
}

/// The methods a gateway may ask with.
pub const METHODS: [actix_web::http::Method; 7] = [
    actix_web::http::Method::GET,
    actix_web::http::Method::HEAD,
    actix_web::http::Method::POST,
    actix_web::http::Method::PUT,
    actix_web::http::Method::PATCH,
    actix_web::http::Method::DELETE,
    actix_web::http::Method::OPTIONS,
];

/// Verify the key of a request a gateway holds. Asked with GET (nginx, Caddy) or with the
/// original request's method (Envoy, Traefik; a body is ignored).
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/gateway/auth", tag = "verify",
    params(GatewayQuery,
        ("X-Keyroll-Api" = Option<String>, Header, nullable = false, pattern = "^api_[0-7][0-9a-hjkmnp-tv-z]{25}$",
            description = "The API, when not in the query"),
        ("X-Original-Method" = Option<String>, Header, nullable = false, description = "The request's method (nginx)"),
        ("X-Original-URI" = Option<String>, Header, nullable = false, description = "The request's URI (nginx)"),
        ("X-Forwarded-Method" = Option<String>, Header, nullable = false, description = "The request's method (Caddy, Traefik)"),
        ("X-Forwarded-Uri" = Option<String>, Header, nullable = false, description = "The request's URI (Caddy, Traefik)")),
    responses(
        (status = 200, description = "Pass; X-Keyroll-Key-Id, -Consumer-Id, -External-Id, -Scopes for the upstream"),
        (status = 400, body = Problem, description = "A malformed API id"),
        (status = 401, body = Problem, description = "No key, or a key that is not valid"),
        (status = 403, body = Problem,
            description = "A missing scope, a refused address, or no route"),
        (status = 404, body = Problem, description = "No API named, or no such API"),
        (status = 429, body = Problem,
            description = "Rate-limited (Retry-After) or out of credits")))]
pub async fn auth(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth_of(crate::http::app_state(&req)?, &req, req.match_info().get("tail")).await
}

async fn auth_of(state: &AppState, req: &HttpRequest, tail: Option<&str>) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let q = web::Query::<GatewayQuery>::from_query(req.query_string()).map(web::Query::into_inner).unwrap_or_default();
    let raw = q.api_id.as_deref().or_else(|| header(req, "x-keyroll-api"));
    let Some(raw) = raw else {
        return Err(ApiError::NotFound("no API named: give ?api_id= or the X-Keyroll-Api header"));
    };
    let api_id = ApiId::parse(raw).map_err(|e| ApiError::field("api_id", e.to_string()))?;
    let Some(api) = state.gateways.of(&state.db, &api_id).await? else {
        return Err(ApiError::NotFound("no such API"));
    };
    let (method, path) = original(req, tail);
    let scopes: Vec<String> = match api.rules.needs(&method, &path) {
        Needs::Scopes(s) => s.to_vec(),
        Needs::NoRoute => {
            let detail = format!("no route of this API allows {method} {path}");
            let body = problem_body(StatusCode::FORBIDDEN, "NO_ROUTE", &detail);
            return Ok(done(refuse(StatusCode::FORBIDDEN, "NO_ROUTE", &detail), body));
        }
    };
    let Some(key) = header(req, &api.rules.header).and_then(|v| api.rules.key_in(v)) else {
        let detail = format!("the request carries no key in {}", api.rules.header);
        let body = problem_body(StatusCode::UNAUTHORIZED, "MISSING", &detail);
        return Ok(done(refuse(StatusCode::UNAUTHORIZED, "MISSING", &detail), body));
    };
    let input = VerifyInput {
        key,
        apis: std::slice::from_ref(&api_id),
        tenant_id: None,
        scopes: &scopes,
        query: None,
        ip: client_ip(req),
        cost: 1,
    };
    let verdict =
        verify::verify(&state.cache, &state.db, &state.usage, &state.limiter, &state.credits, &state.legacy, &input)
            .await?;
    state.metrics.verified(verdict.code, started.elapsed());
    let code = verdict.code;
    let name = code.as_str();
    let (status, detail) = match code {
        Code::Valid => (StatusCode::OK, String::new()),
        Code::Malformed | Code::NotFound => (StatusCode::UNAUTHORIZED, "the key is not valid".to_owned()),
        Code::Revoked => (StatusCode::UNAUTHORIZED, "the key was revoked".to_owned()),
        Code::Expired => (StatusCode::UNAUTHORIZED, "the key has expired".to_owned()),
        Code::Disabled => (StatusCode::UNAUTHORIZED, "the key is disabled".to_owned()),
        Code::InsufficientScope => (StatusCode::FORBIDDEN, format!("the key lacks a scope of {}", scopes.join(" "))),
        Code::IpNotAllowed => (StatusCode::FORBIDDEN, "the key may not be used from this address".to_owned()),
        Code::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "the key's rate limit is reached".to_owned()),
        Code::UsageExceeded => (StatusCode::TOO_MANY_REQUESTS, "the key has no credits left".to_owned()),
    };
    let mut res = if status == StatusCode::OK { HttpResponse::Ok() } else { refuse(status, name, &detail) };
    if let Some(rl) = verdict.ratelimit {
        res.insert_header(("x-ratelimit-limit", rl.limit.to_string()));
        res.insert_header(("x-ratelimit-remaining", rl.remaining.to_string()));
        if code == Code::RateLimited {
            let wait_ms = rl.reset_at_ms - chrono::Utc::now().timestamp_millis();
            res.insert_header(("retry-after", (wait_ms.max(0) / 1000 + 1).to_string()));
        }
    }
    if code == Code::InsufficientScope {
        let value = format!("Bearer realm=\"keyroll\", error=\"insufficient_scope\", scope=\"{}\"", scopes.join(" "));
        res.insert_header(("www-authenticate", value));
    }
    if let Some(rec) = &verdict.record {
        // A superseded key still passes during its overlap: its caller hears when it ends.
        if verdict.state == Some(KeyState::Superseded)
            && let Some(grace) = rec.data.grace_ends_at
        {
            if let Some(at) = rec.data.superseded_at {
                res.insert_header(("deprecation", format!("@{}", at.timestamp())));
            }
            res.insert_header(("sunset", http_date(grace)));
        }
        if code == Code::Valid {
            res.insert_header(("x-keyroll-key-id", rec.data.id.clone()));
            if let Some(c) = &rec.data.consumer {
                res.insert_header(("x-keyroll-consumer-id", c.id.clone()));
                if let Ok(v) = HeaderValue::from_str(&c.external_id) {
                    res.insert_header(("x-keyroll-external-id", v));
                }
            }
            res.insert_header(("x-keyroll-scopes", rec.data.scopes.join(" ")));
            return Ok(res.finish());
        }
    }
    let body = problem_body(status, name, &detail);
    Ok(done(res, body))
}

fn done(mut res: HttpResponseBuilder, body: String) -> HttpResponse {
    let mut res = res.body(body);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res
}

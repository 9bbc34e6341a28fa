//! OAuth 2.0 for API keys: the token endpoint (client credentials, RFC 6749 §4.4), token
//! introspection (RFC 7662), and each tenant's discovery document (RFC 8414) and JWKS.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::Permission;
use crate::app::tokens::{TokenError, TokenRequest};
use crate::domain::TenantId;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::state::AppState;
use crate::tokens;

/// A successful token response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT signed with the tenant's active key (`EdDSA`).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The scopes it carries, space-separated.
    pub scope: String,
}

/// The token request's form (`application/x-www-form-urlencoded`).
#[derive(Debug, ToSchema)]
pub struct TokenForm {
    /// `client_credentials`.
    pub grant_type: String,
    /// Space-separated scopes, each granted by the key; the key's own scopes when absent.
    #[schema(nullable = false)]
    pub scope: Option<String>,
    /// With `client_secret` in the form instead of HTTP Basic: the key's lineage id.
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    /// The API key, when not sent by HTTP Basic or as a bearer token.
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// The introspection request's form.
#[derive(Debug, ToSchema)]
pub struct IntrospectForm {
    /// The access token.
    pub token: String,
    /// A hint (RFC 7662 §2.1); every token here is an access token, so it is not needed.
    #[schema(nullable = false)]
    pub token_type_hint: Option<String>,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `temporarily_unavailable`.
    pub error: &'static str,
    pub error_description: String,
}

fn oauth_error(status: StatusCode, error: &'static str, description: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(OAuthError { error, error_description: description.into() })
}

/// An OAuth error before it is a response.
struct Fail {
    status: StatusCode,
    error: &'static str,
    description: String,
    challenge: Option<&'static str>,
}

impl Fail {
    fn bad(description: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.to_owned(),
            challenge: None,
        }
    }

    fn client(basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "the client is not valid".to_owned(),
            challenge: basic.then_some("Basic realm=\"keyroll\""),
        }
    }

    fn response(self) -> HttpResponse {
        let mut r = oauth_error(self.status, self.error, self.description);
        if let Some(c) = self.challenge {
            r.headers_mut().insert(WWW_AUTHENTICATE, actix_web::http::header::HeaderValue::from_static(c));
        }
        r
    }
}

/// Reads the `known` parameters of a form body, each at most once (RFC 6749 §3.2).
fn form(req: &HttpRequest, body: &[u8], known: &[&str]) -> Result<HashMap<String, String>, Fail> {
    let bad = Fail::bad;
    let ct = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(bad("send the parameters as application/x-www-form-urlencoded"));
    }
    let mut out = HashMap::new();
    // Unknown parameters are ignored (RFC 6749 §3.2); a known one may come once.
    for (k, v) in url::form_urlencoded::parse(body).filter(|(k, _)| known.contains(&k.as_ref())) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(bad(&format!("the parameter {k} is given more than once")));
        }
    }
    Ok(out)
}

/// How the client authenticated.
enum Client {
    Basic { id: String, secret: String },
    Bearer(String),
    Post { id: Option<String>, secret: String },
}

fn client_of(req: &HttpRequest, params: &HashMap<String, String>) -> Result<Client, Fail> {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let unauthorized = Fail::client;
    match header {
        Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
            let raw = STANDARD.decode(h[6..].trim()).map_err(|_| unauthorized(true))?;
            let raw = String::from_utf8(raw).map_err(|_| unauthorized(true))?;
            let (id, secret) = raw.split_once(':').ok_or_else(|| unauthorized(true))?;
            // RFC 6749 §2.3.1: both parts are form-encoded before joining.
            let dec =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            let (Some(id), Some(secret)) = (dec(id), dec(secret)) else { return Err(unauthorized(true)) };
            if params.contains_key("client_secret") {
                return Err(Fail::bad("authenticate the client one way only"));
            }
            Ok(Client::Basic { id, secret })
        }
        Some(h) if h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ") => {
            Ok(Client::Bearer(h[7..].trim().to_owned()))
        }
        Some(_) => Err(unauthorized(true)),
        None => match params.get("client_secret") {
            Some(secret) => Ok(Client::Post { id: params.get("client_id").cloned(), secret: secret.clone() }),
            None => Err(unauthorized(false)),
        },
    }
}

/// OAuth 2.0 client credentials: an API key buys a short-lived JWT.
#[utoipa::path(post, path = "/v1/oauth/token", tag = "tokens",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "The client authenticates with HTTP Basic (client_id = the key's lineage id, client_secret = \
                       the API key), or Authorization: Bearer <API key>, or client_id and client_secret in the form"),
    responses((status = 200, body = TokenResponse), (status = 400, body = OAuthError), (status = 401, body = OAuthError),
        (status = 429, body = OAuthError), (status = 503, body = OAuthError)))]
pub async fn token(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let body = match crate::http::json::read_body(payload, crate::http::json::MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return actix_web::ResponseError::error_response(&e),
    };
    let params = match form(&req, &body, &["grant_type", "scope", "client_id", "client_secret"]) {
        Ok(p) => p,
        Err(f) => return f.response(),
    };
    let client = match client_of(&req, &params) {
        Ok(c) => c,
        Err(f) => return f.response(),
    };
    match params.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
    let basic = matches!(client, Client::Basic { .. });
    let (key, client_id) = match &client {
        Client::Basic { id, secret } => (secret.as_str(), Some(id.as_str())),
        Client::Bearer(k) => (k.as_str(), None),
        Client::Post { id, secret } => (secret.as_str(), id.as_deref()),
    };
    let ip = crate::http::client_ip::client_ip(&req);
    let request = TokenRequest { key, client_id, scope: params.get("scope").map(String::as_str), ip };
    match crate::app::tokens::issue(&state, &request).await {
        Ok(t) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .insert_header((PRAGMA, "no-cache"))
            .json(TokenResponse {
                access_token: t.access_token,
                token_type: "Bearer",
                expires_in: t.expires_in,
                scope: t.scope,
            }),
        Err(e) => token_error(e, basic),
    }
}

fn token_error(e: TokenError, basic: bool) -> HttpResponse {
    match e {
        TokenError::InvalidRequest(m) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", m),
        TokenError::InvalidClient(m) => {
            let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", m);
            let challenge = if basic { "Basic realm=\"keyroll\"" } else { "Bearer error=\"invalid_token\"" };
            r.headers_mut().insert(WWW_AUTHENTICATE, actix_web::http::header::HeaderValue::from_static(challenge));
            r
        }
        TokenError::InvalidScope(m) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", m),
        TokenError::UnauthorizedClient(m) => oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", m),
        TokenError::RateLimited(wait) => {
            let mut r = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "the key's rate limit is reached",
            );
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
            r
        }
        TokenError::Unavailable(m) => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", m),
        TokenError::Internal(e) => {
            tracing::error!(error = %format!("{e:#}"), "token issuance failed");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the token could not be issued")
        }
    }
}

/// RFC 7662's answer. Only `active` when the token is not active.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The key's lineage id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// Is this token active? `false` once the key behind it is revoked, disabled or expired, its
/// signing key revoked, or it expired. A root key with `keys:read` asks, for its own tenant's
/// tokens.
#[utoipa::path(post, path = "/v1/oauth/introspect", tag = "tokens",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    root.require(Permission::KeysRead)?;
    let body = crate::http::json::read_body(payload, crate::http::json::MAX_BODY).await?;
    // Other parameters are ignored (RFC 7662 §2.1); the token must be there once.
    let params = form(&req, &body, &["token"])
        .map_err(|_| ApiError::field("token", "send token=… as application/x-www-form-urlencoded, once"))?;
    let token = params.get("token").ok_or_else(|| ApiError::field("token", "is required"))?;
    let found = crate::app::tokens::introspect(&root.ctx(&state), token, Utc::now()).await?;
    let out = match found {
        Some(i) => {
            let c = i.claims;
            Introspection {
                active: true,
                scope: Some(c.scope),
                client_id: Some(c.lineage_id.clone()),
                token_type: Some("Bearer"),
                exp: Some(c.exp),
                iat: Some(c.iat),
                sub: Some(c.sub),
                aud: Some(c.aud),
                iss: Some(c.iss),
                jti: Some(c.jti),
                key_id: Some(c.key_id),
                lineage_id: Some(c.lineage_id),
                version: Some(c.version),
            }
        }
        None => Introspection::default(),
    };
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(out))
}

/// A tenant named in an issuer path, if it exists.
async fn tenant_of(state: &AppState, id: &str) -> Result<TenantId, ApiError> {
    let id = TenantId::parse(id).map_err(|_| ApiError::NotFound("no such issuer"))?;
    match crate::store::tenants::get(&state.db, &id).await {
        Ok(_) => Ok(id),
        Err(crate::store::StoreError::NotFound) => Err(ApiError::NotFound("no such issuer")),
        Err(e) => Err(e.into()),
    }
}

/// The authorization server's metadata (RFC 8414).
#[derive(Debug, Serialize, ToSchema)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
}

/// A tenant's issuer metadata.
#[utoipa::path(get, path = "/t/{tenant_id}/.well-known/openid-configuration", tag = "tokens",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Discovery), (status = 404, body = Problem)))]
pub async fn discovery(state: web::Data<AppState>, tenant: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&state, &tenant).await?;
    let base = state.base_url.trim_end_matches('/');
    let issuer = tokens::issuer(base, tenant.as_str());
    let doc = Discovery {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        issuer,
        token_endpoint: format!("{base}/v1/oauth/token"),
        introspection_endpoint: format!("{base}/v1/oauth/introspect"),
        grant_types_supported: vec!["client_credentials"],
        response_types_supported: vec!["token"],
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
        introspection_endpoint_auth_methods_supported: vec!["bearer"],
        id_token_signing_alg_values_supported: vec!["EdDSA"],
        token_endpoint_auth_signing_alg_values_supported: vec!["EdDSA"],
        subject_types_supported: vec!["public"],
    };
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "public, max-age=3600")).json(doc))
}

/// A tenant's published signing keys. Held by clients for at most a minute, so that a revoked
/// key is gone from every resource server within a minute.
#[utoipa::path(get, path = "/t/{tenant_id}/.well-known/jwks.json", tag = "tokens",
    params(("tenant_id" = String, Path)),
    responses((status = 200, description = "A JWK set (RFC 7517)", body = Object), (status = 404, body = Problem)))]
pub async fn jwks(state: web::Data<AppState>, tenant: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tenant = tenant_of(&state, &tenant).await?;
    let keys = state.keyring.tenant(&state.db, &tenant, state.master_key.as_deref()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "public, max-age=60"))
        .content_type("application/jwk-set+json")
        .body(keys.jwks.clone()))
}

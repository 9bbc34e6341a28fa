//! The Unkey-compatible API: the v2 key routes Unkey's own SDKs call, in Unkey's shapes
//! (`{"meta":{"requestId"},"data":…}`, errors as `{"meta","error":{title,detail,status,type}}`),
//! authenticated by a Keyroll root key. Every change goes through the application layer, and
//! verification through the one hot path: this module only translates.
//!
//! What maps and what does not is listed in the README ("Unkey-compatible API").

pub mod keys;
pub mod views;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::Root;
use super::errors::ApiError;
use super::json::{MAX_BODY, read_within};
use super::request_id;
use crate::app::{Permission, ServiceError};
use crate::store::StoreError;

/// The routes, under `/v2`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v2")
            .route("/keys.verifyKey", web::post().to(keys::verify))
            .route("/keys.createKey", web::post().to(keys::create))
            .route("/keys.rerollKey", web::post().to(keys::reroll))
            .route("/keys.getKey", web::post().to(keys::get))
            .route("/keys.updateKey", web::post().to(keys::update))
            .route("/keys.deleteKey", web::post().to(keys::delete))
            .route("/keys.whoami", web::post().to(keys::whoami))
            .route("/apis.listKeys", web::post().to(keys::list))
            .default_service(web::to(unknown)),
    );
}

/// The routes this adapter answers (all `POST`).
pub const PATHS: [&str; 8] = [
    "/v2/keys.verifyKey",
    "/v2/keys.createKey",
    "/v2/keys.rerollKey",
    "/v2/keys.getKey",
    "/v2/keys.updateKey",
    "/v2/keys.deleteKey",
    "/v2/keys.whoami",
    "/v2/apis.listKeys",
];

async fn unknown(req: HttpRequest) -> Result<HttpResponse, UnkeyError> {
    if PATHS.contains(&req.path()) {
        Err(UnkeyError::MethodNotAllowed)
    } else {
        Err(UnkeyError::NotFound(NotFound::Route, format!("Keyroll answers no Unkey route {}", req.path())))
    }
}

/// `{"meta":{"requestId"}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub request_id: String,
}

/// A successful answer: `{"meta", "data"}`, plus `pagination` for lists.
#[must_use]
pub fn ok<T: Serialize>(data: &T) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "meta": Meta { request_id: request_id::current() }, "data": data }))
}

/// What was not found: the type of the error says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    Key,
    Api,
    Route,
}

/// An error in Unkey's shape.
#[derive(Debug, thiserror::Error)]
pub enum UnkeyError {
    /// Bad input: each `(location, message)` names a field of the body (`body.permissions[0]`).
    #[error("{detail}")]
    BadRequest { detail: String, errors: Vec<(String, String)> },
    /// A permissions query that does not parse.
    #[error("{0}")]
    QuerySyntax(String),
    #[error("{0}")]
    MissingAuth(&'static str),
    #[error("{0}")]
    MalformedAuth(&'static str),
    #[error("{0}")]
    BadRootKey(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{1}")]
    NotFound(NotFound, String),
    #[error("this route answers POST only")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PlanLimit(String),
    #[error("the request body is larger than 64 KiB")]
    TooLarge,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(anyhow::Error),
}

const UNKEY_DOCS: &str = "https://unkey.com/docs/errors/";
const KEYROLL_DOCS: &str = "https://keyroll.dev/problems/";

impl UnkeyError {
    /// A 400 naming one field of the body, by its Unkey name.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let location = format!("body.{field}");
        Self::BadRequest { detail: format!("{location} {message}"), errors: vec![(location, message)] }
    }

    /// The status, title and `type` of the error: Unkey's where Unkey has the case, Keyroll's
    /// problem types where it does not (a plan limit, a rotation refused by a rule).
    fn parts(&self) -> (StatusCode, &'static str, String) {
        let unkey = |slug: &str| format!("{UNKEY_DOCS}{slug}");
        match self {
            Self::BadRequest { .. } => {
                (StatusCode::BAD_REQUEST, "Bad Request", unkey("unkey/application/invalid_input"))
            }
            Self::QuerySyntax(_) => {
                (StatusCode::BAD_REQUEST, "Bad Request", unkey("user/bad_request/permissions_query_syntax_error"))
            }
            Self::MissingAuth(_) => (StatusCode::UNAUTHORIZED, "Unauthorized", unkey("unkey/authentication/missing")),
            Self::MalformedAuth(_) => {
                (StatusCode::UNAUTHORIZED, "Unauthorized", unkey("unkey/authentication/malformed"))
            }
            Self::BadRootKey(_) => {
                (StatusCode::UNAUTHORIZED, "Unauthorized", unkey("unkey/authentication/key_not_found"))
            }
            Self::Forbidden(_) => {
                (StatusCode::FORBIDDEN, "Forbidden", unkey("unkey/authorization/insufficient_permissions"))
            }
            Self::NotFound(NotFound::Key, _) => (StatusCode::NOT_FOUND, "Not Found", unkey("unkey/data/key_not_found")),
            Self::NotFound(NotFound::Api, _) => (StatusCode::NOT_FOUND, "Not Found", unkey("unkey/data/api_not_found")),
            Self::NotFound(NotFound::Route, _) => {
                (StatusCode::NOT_FOUND, "Not Found", format!("{KEYROLL_DOCS}not-found"))
            }
            Self::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", format!("{KEYROLL_DOCS}method-not-allowed"))
            }
            Self::Conflict(_) => (StatusCode::CONFLICT, "Conflict", format!("{KEYROLL_DOCS}conflict")),
            Self::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "Precondition Failed", unkey("unkey/application/precondition_failed"))
            }
            Self::PlanLimit(_) => {
                (StatusCode::PAYMENT_REQUIRED, "Payment Required", format!("{KEYROLL_DOCS}plan-limit-reached"))
            }
            Self::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large", unkey("user/bad_request/request_body_too_large"))
            }
            Self::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", unkey("unkey/application/service_unavailable"))
            }
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                unkey("unkey/application/unexpected_error"),
            ),
        }
    }

    /// A service error, with Keyroll's field names turned into Unkey's and `not_found` saying
    /// what a `NotFound` is about.
    #[must_use]
    pub fn from_service(e: ServiceError, not_found: NotFound) -> Self {
        match e {
            ServiceError::Invalid(fields) => {
                let errors: Vec<(String, String)> =
                    fields.into_iter().map(|f| (format!("body.{}", unkey_field(&f.field)), f.message)).collect();
                let detail = errors.iter().map(|(l, m)| format!("{l} {m}")).collect::<Vec<_>>().join("; ");
                Self::BadRequest { detail, errors }
            }
            ServiceError::NotFound(m) => Self::NotFound(not_found, m.to_owned()),
            ServiceError::Forbidden(p) => Self::forbidden(p),
            ServiceError::Conflict(m) => Self::Conflict(m),
            e @ ServiceError::PlanLimit { .. } => Self::PlanLimit(e.to_string()),
            ServiceError::Unavailable(m) => Self::Unavailable(m),
            ServiceError::Internal(e) => Self::Internal(e),
        }
    }

    #[must_use]
    pub fn forbidden(p: Permission) -> Self {
        Self::Forbidden(format!("this root key lacks the scope {}", p.scope()))
    }
}

/// Keyroll's name of an input field, as the Unkey request names it.
fn unkey_field(field: &str) -> String {
    const RENAMES: [(&str, &str); 8] = [
        ("scopes", "permissions"),
        ("expires_at", "expires"),
        ("ratelimit.window_seconds", "ratelimits[0].duration"),
        ("ratelimit", "ratelimits[0]"),
        ("overlap_seconds", "expiration"),
        ("external_id", "externalId"),
        ("consumer_id", "externalId"),
        ("api_id", "apiId"),
    ];
    for (from, to) in RENAMES {
        if let Some(rest) = field.strip_prefix(from)
            && (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        {
            return format!("{to}{rest}");
        }
    }
    field.to_owned()
}

impl From<StoreError> for UnkeyError {
    fn from(e: StoreError) -> Self {
        Self::from_service(e.into(), NotFound::Key)
    }
}

impl ResponseError for UnkeyError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, title, type_) = self.parts();
        let request_id = request_id::current();
        let detail = match self {
            Self::Internal(e) => {
                tracing::error!(request_id = %request_id, error = ?e, "unexpected error");
                "an unexpected error occurred; quote the request id when reporting it".to_owned()
            }
            other => other.to_string(),
        };
        let mut error =
            serde_json::json!({ "title": title, "detail": detail, "status": status.as_u16(), "type": type_ });
        if let Self::BadRequest { errors, .. } = self {
            error["errors"] = errors
                .iter()
                .map(|(location, message)| serde_json::json!({ "location": location, "message": message }))
                .collect();
        } else if status == StatusCode::BAD_REQUEST {
            error["errors"] = serde_json::json!([]);
        }
        let mut res =
            HttpResponse::build(status).json(serde_json::json!({ "meta": Meta { request_id }, "error": error }));
        // Unkey answers its own rate limits as problem+json, everything else as JSON.
        if status == StatusCode::TOO_MANY_REQUESTS {
            res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut().insert(actix_web::http::header::ALLOW, HeaderValue::from_static("POST"));
        }
        res
    }
}

/// The root key of a request, with Unkey's errors.
pub struct UnkeyRoot(pub Root);

impl FromRequest for UnkeyRoot {
    type Error = UnkeyError;
    type Future = LocalBoxFuture<'static, Result<Self, UnkeyError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let header = req.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or_default().to_owned());
        let root = Root::from_request(req, payload);
        Box::pin(async move {
            let Some(header) = header else {
                return Err(UnkeyError::MissingAuth("send a Keyroll root key as Authorization: Bearer kr_root_…"));
            };
            if !(header.starts_with("Bearer ") || header.starts_with("bearer ")) || header[7..].trim().is_empty() {
                return Err(UnkeyError::MalformedAuth("the Authorization header must be Bearer <root key>"));
            }
            match root.await {
                Ok(r) => Ok(Self(r)),
                Err(ApiError::Internal(e)) => Err(UnkeyError::Internal(e)),
                Err(ApiError::Unavailable(m)) => Err(UnkeyError::Unavailable(m)),
                Err(_) => Err(UnkeyError::BadRootKey("the root key is not valid")),
            }
        })
    }
}

impl UnkeyRoot {
    /// # Errors
    /// 403 naming the scope the root key lacks.
    pub fn require(&self, p: Permission) -> Result<(), UnkeyError> {
        self.0.require(p).map_err(|_| UnkeyError::forbidden(p))
    }
}

/// A JSON body in Unkey's request shape. Fields this adapter does not know are ignored (newer
/// SDKs send more), and errors name the field as `body.<name>`.
pub struct UnkeyBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for UnkeyBody<T> {
    type Error = UnkeyError;
    type Future = LocalBoxFuture<'static, Result<Self, UnkeyError>>;

    fn from_request(_: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let mut payload = payload.take();
        Box::pin(async move {
            let raw: Bytes = match read_within(&mut payload, MAX_BODY, super::json::BODY_TIMEOUT).await {
                Ok(raw) => raw,
                Err(ApiError::PayloadTooLarge) => return Err(UnkeyError::TooLarge),
                Err(_) => return Err(UnkeyError::field("body", "could not be read")),
            };
            match super::json::parse::<T>(&raw) {
                Ok(v) => Ok(Self(v)),
                Err(ApiError::Validation { errors, .. }) => {
                    let errors: Vec<(String, String)> = errors
                        .into_iter()
                        .map(|f| {
                            let location =
                                if f.field == "body" { "body".to_owned() } else { format!("body.{}", f.field) };
                            (location, f.message)
                        })
                        .collect();
                    let detail = errors.iter().map(|(l, m)| format!("{l} {m}")).collect::<Vec<_>>().join("; ");
                    Err(UnkeyError::BadRequest { detail, errors })
                }
                Err(other) => Err(UnkeyError::Internal(anyhow::anyhow!(other.to_string()))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::unkey_field;

    #[test]
    fn keyroll_fields_take_unkey_names() {
        assert_eq!(unkey_field("scopes[2]"), "permissions[2]");
        assert_eq!(unkey_field("ratelimit.limit"), "ratelimits[0].limit");
        assert_eq!(unkey_field("ratelimit.window_seconds"), "ratelimits[0].duration");
        assert_eq!(unkey_field("expires_at"), "expires");
        assert_eq!(unkey_field("overlap_seconds"), "expiration");
        assert_eq!(unkey_field("meta"), "meta");
        assert_eq!(unkey_field("scopesx"), "scopesx");
    }
}

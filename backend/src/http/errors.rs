//! One HTTP error type, rendered as RFC 9457 problem details with our `code`, `request_id`
//! and `errors[]` extensions. Unexpected errors become an opaque 500 whose cause is logged.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use super::request_id;
use crate::app::ServiceError;
use crate::store::StoreError;

pub use crate::app::FieldError;

/// What a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Validation { detail: String, errors: Vec<FieldError> },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// A limit of the tenant's plan is reached.
    #[error("{0}")]
    PlanLimit(String),
    /// A known path asked with a method it does not answer; carries the methods it does.
    #[error("this path answers {0} only")]
    MethodNotAllowed(String),
    #[error("the request body is larger than this route takes (64 KiB; 16 MiB for a key import)")]
    PayloadTooLarge,
    #[error("the request body must be JSON: send Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Self::Validation { detail: format!("{field} {message}"), errors: vec![FieldError { field, message }] }
    }

    /// A 400 naming several fields.
    #[must_use]
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Self::Validation { detail, errors }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            Self::Validation { .. } => (StatusCode::BAD_REQUEST, "validation_failed", "validation", "Invalid request"),
            Self::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", "unauthenticated", "Unauthenticated")
            }
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "not-found", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "conflict", "Conflict"),
            Self::PlanLimit(_) => {
                (StatusCode::PAYMENT_REQUIRED, "plan_limit_reached", "plan-limit-reached", "Plan limit reached")
            }
            Self::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method-not-allowed", "Method not allowed")
            }
            Self::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "payload-too-large", "Payload too large")
            }
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::RequestTimeout => {
                (StatusCode::REQUEST_TIMEOUT, "request_timeout", "request-timeout", "Request timeout")
            }
            Self::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "unavailable", "Service unavailable")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal", "Internal error"),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(errors) => Self::fields(errors),
            ServiceError::NotFound(m) => Self::NotFound(m),
            ServiceError::Forbidden(p) => Self::Forbidden(format!("this root key lacks the scope {}", p.scope())),
            ServiceError::Conflict(m) => Self::Conflict(m),
            e @ ServiceError::PlanLimit { .. } => Self::PlanLimit(e.to_string()),
            ServiceError::Unavailable(m) => Self::Unavailable(m),
            ServiceError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("no such object"),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Db(e) => Self::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

/// The problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, slug, title) = self.parts();
        let request_id = request_id::current();
        let detail = match self {
            Self::Internal(e) => {
                tracing::error!(request_id = %request_id, error = ?e, "unexpected error");
                "an unexpected error occurred; quote the request id when reporting it".to_owned()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        let body = Problem {
            type_: format!("https://keyroll.dev/problems/{slug}"),
            title,
            status: status.as_u16(),
            code,
            detail,
            request_id,
            errors,
        };
        let mut res = HttpResponse::build(status).json(body);
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Self::MethodNotAllowed(allow) = self
            && let Ok(v) = HeaderValue::from_str(allow)
        {
            res.headers_mut().insert(actix_web::http::header::ALLOW, v);
        }
        if matches!(self, Self::Unauthenticated(_)) {
            res.headers_mut().insert(actix_web::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

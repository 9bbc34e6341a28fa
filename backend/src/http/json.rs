//! JSON request bodies: at most 64 KiB (413 beyond), unknown fields refused, and every error
//! a 400 that names the field in JSON notation.

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::errors::{ApiError, FieldError};

/// The largest body we read.
pub const MAX_BODY: usize = 64 * 1024;

/// A parsed body and its raw bytes (for idempotency fingerprints).
pub struct Body<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared =
            req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
        let json = is_json(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > MAX_BODY) {
                return Err(ApiError::PayloadTooLarge);
            }
            let raw = read_within(&mut payload, MAX_BODY, BODY_TIMEOUT).await?;
            // An empty body stands for `{}` on routes whose fields are all optional.
            if !raw.is_empty() && !json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let value = parse(&raw)?;
            Ok(Self { value, raw })
        })
    }
}

/// Is the body declared as JSON (`application/json`, or `application/…+json`, with parameters)?
#[must_use]
pub fn is_json(req: &HttpRequest) -> bool {
    let Some(v) = req.headers().get(actix_web::http::header::CONTENT_TYPE) else { return false };
    // What nearly every client sends, without the general parse below.
    if v.as_bytes() == b"application/json" {
        return true;
    }
    v.to_str().ok().is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// The longest a client may take to send its body once the headers are in.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a body of at most `max` bytes that must arrive within `within` (408 beyond, 413 when
/// larger).
///
/// # Errors
/// 408, 413, or a body that cannot be read.
pub async fn read_within(payload: &mut Payload, max: usize, within: std::time::Duration) -> Result<Bytes, ApiError> {
    let mut read = std::pin::pin!(read_up_to(payload, max));
    // A timer is armed only for a body that is still on its way: an empty one is read at once,
    // and a small one that came in the same packet as the headers one turn later (actix-web's
    // HTTP/1 dispatcher calls the handler before it hands that body over). The verify paths
    // would otherwise arm and cancel a timer on every request.
    if let Some(done) = futures_util::FutureExt::now_or_never(read.as_mut()) {
        return done;
    }
    tokio::task::yield_now().await;
    if let Some(done) = futures_util::FutureExt::now_or_never(read.as_mut()) {
        return done;
    }
    tokio::time::timeout(within, read).await.map_err(|_| ApiError::RequestTimeout)?
}

/// [`read_within`] the body timeout, for handlers that take the body as `web::Payload` (those
/// that check a signature over the raw bytes, or an authorization, before parsing).
///
/// # Errors
/// 408, 413, or a body that cannot be read.
pub async fn read_body(payload: actix_web::web::Payload, max: usize) -> Result<Bytes, ApiError> {
    read_within(&mut payload.into_inner(), max, BODY_TIMEOUT).await
}

/// Reads a body of at most `max` bytes (413 beyond).
///
/// # Errors
/// 413, or a body that cannot be read.
async fn read_up_to(payload: &mut Payload, max: usize) -> Result<Bytes, ApiError> {
    let mut buf = actix_web::web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::field("body", "could not be read"))?;
        if buf.len() + chunk.len() > max {
            return Err(ApiError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Parses JSON, naming the offending field on error.
///
/// # Errors
/// A 400 validation problem.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    // serde would also accept an array for a struct; the contract speaks only of objects.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    // The fast path; only a failure is parsed again to find the path of the offending field.
    if let Ok(v) = serde_json::from_slice(raw) {
        return Ok(v);
    }
    // JSON does not tell `3` from `3.0`, and JSON Schema counts both as integers: read a number
    // with no fraction as the integer it is, then try again.
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(raw)
        && integral_floats_as_integers(&mut value)
        && let Ok(v) = serde_json::from_value(value)
    {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let full = inner.to_string();
        if inner.is_syntax() || inner.is_eof() {
            let message = format!("is not valid JSON ({full})");
            return ApiError::Validation {
                detail: format!("the body {message}"),
                errors: vec![FieldError { field: "body".into(), message }],
            };
        }
        let msg = full.split(" at line ").next().unwrap_or(&full).to_owned();
        // serde names a missing field in the message while the path points at its parent; an
        // unknown field is already the last element of the path.
        let missing = msg.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).map(str::to_owned);
        let field = match (missing, path.as_str()) {
            (Some(n), "." | "") => n,
            (Some(n), parent) => format!("{parent}.{n}"),
            (None, "." | "") => "body".to_owned(),
            (None, p) => p.to_owned(),
        };
        let message = if msg.starts_with("unknown field") {
            "is not a known field".to_owned()
        } else if msg.starts_with("missing field") {
            "is required".to_owned()
        } else {
            msg
        };
        ApiError::field(field, message)
    })
}

/// Turns every number with a zero fraction (`3.0`, `1e3`) within `i64` into an integer; says
/// whether any was.
pub fn integral_floats_as_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Both bounds are exact in f64; every integral value between them converts exactly.
            if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
                #[expect(clippy::cast_possible_truncation, reason = "integral and range-checked above")]
                let i = f as i64;
                *v = Value::from(i);
                true
            } else {
                false
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, x| integral_floats_as_integers(x) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, x| integral_floats_as_integers(x) | any),
        _ => false,
    }
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub mod double_option {
    pub use crate::domain::input::double_option as deserialize;
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are read by serde only")]
    struct Inner {
        limit: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are read by serde only")]
    struct Outer {
        name: String,
        scopes: Option<Vec<String>>,
        ratelimit: Option<Inner>,
    }

    fn field_of(body: &str) -> String {
        match parse::<Outer>(body.as_bytes()) {
            Err(ApiError::Validation { errors, .. }) => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"name":"a","bogus":1}"#), "bogus");
        assert_eq!(field_of(r#"{"scopes":[]}"#), "name");
        assert_eq!(field_of(r#"{"name":"a","scopes":["x",2]}"#), "scopes[1]");
        assert_eq!(field_of(r#"{"name":"a","ratelimit":{"limit":"x"}}"#), "ratelimit.limit");
        assert_eq!(field_of(r#"{"name":"a","ratelimit":{"limit":1,"x":2}}"#), "ratelimit.x");
        assert_eq!(field_of("{not json"), "body");
        assert_eq!(field_of(""), "body");
        assert_eq!(field_of("[1]"), "body");
    }

    #[test]
    fn integral_numbers_are_integers_whatever_their_spelling() {
        let ok: Result<Outer, _> = parse(br#"{"name":"a","ratelimit":{"limit":177.0}}"#);
        assert!(ok.is_ok(), "{ok:?}");
        let ok: Result<Outer, _> = parse(br#"{"name":"a","ratelimit":{"limit":1e2}}"#);
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(field_of(r#"{"name":"a","ratelimit":{"limit":1.5}}"#), "ratelimit.limit");
        assert_eq!(field_of(r#"{"name":"a","ratelimit":{"limit":-1.0}}"#), "ratelimit.limit");
    }
}

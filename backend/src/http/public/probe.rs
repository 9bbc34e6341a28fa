//! `POST /internal/probe`: another node asks what this one would answer, right now and through
//! its own caches, for a set of key hashes. Only nodes that can read the registry know the token.

use actix_web::{HttpRequest, web};
use subtle::ConstantTimeEq;

use crate::domain::KeyHash;
use crate::http::errors::ApiError;
use crate::http::json::{Body, MAX_BODY, parse, read_body};
use crate::playbooks::nodes::{self, ProbeAnswer, ProbeRequest};
use crate::state::AppState;

/// Answers a probe from another node.
///
/// # Errors
/// 401 without this node's token, 400 for a malformed hash or too many, 500 when the database
/// cannot be read.
pub async fn probe(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<ProbeAnswer>, ApiError> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(state.probe_token.as_bytes())) {
        return Err(ApiError::Unauthenticated("this node's probe token is required"));
    }
    // Only an authenticated caller's body is read.
    let raw = read_body(payload, MAX_BODY).await?;
    let body = Body::<ProbeRequest> { value: parse(&raw)?, raw };
    if body.value.hashes.len() > nodes::MAX_PROBE {
        return Err(ApiError::field("hashes", "must list at most 1000 hashes"));
    }
    let hashes = body
        .value
        .hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            KeyHash::from_hex(h).ok_or_else(|| ApiError::field(format!("hashes[{i}]"), "must be 64 hex digits"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(web::Json(nodes::answer(&state, &hashes).await?))
}

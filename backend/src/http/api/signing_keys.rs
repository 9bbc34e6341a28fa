//! `GET /v1/signing-keys`, `POST /v1/signing-keys/rotate`, `POST /v1/signing-keys/{kid}/revoke`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app;
use crate::domain::signing::Phase;
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::state::AppState;
use crate::tokens::keyring::KeyPhase;

/// A token signing key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyView {
    /// The `kid` of the tokens it signs.
    pub kid: String,
    /// `EdDSA` (Ed25519).
    pub alg: String,
    pub phase: Phase,
    /// Published in the JWKS from then.
    pub created_at: DateTime<Utc>,
    /// Signs new tokens from then.
    pub activates_at: DateTime<Utc>,
    /// Signs nothing from then (its successor's activation).
    pub retires_at: Option<DateTime<Utc>>,
    /// Leaves the JWKS then: after the last token it signed has expired, or at its revocation.
    pub published_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The public key as published.
    #[schema(value_type = Object)]
    pub jwk: Option<serde_json::Value>,
}

impl From<KeyPhase> for SigningKeyView {
    fn from(k: KeyPhase) -> Self {
        let published_until = k.unpublished_at();
        Self {
            kid: k.row.id,
            alg: k.row.alg,
            phase: k.phase,
            created_at: k.row.created_at,
            activates_at: k.row.activates_at,
            retires_at: k.superseded_at,
            published_until,
            revoked_at: k.row.revoked_at,
            jwk: k.row.public_jwk,
        }
    }
}

/// The tenant's signing keys, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyList {
    pub data: Vec<SigningKeyView>,
}

/// `POST /v1/signing-keys/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKey {
    /// How long the new key is published before it signs (default 3600, at most 604800).
    pub lead_seconds: Option<i64>,
}

/// The tenant's token signing keys and their phases.
#[utoipa::path(get, path = "/v1/signing-keys", tag = "tokens",
    responses((status = 200, body = SigningKeyList), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, root: Root) -> Result<web::Json<SigningKeyList>, ApiError> {
    let mut keys = app::signing_keys::list(&root.ctx(&state)).await?;
    keys.reverse();
    Ok(web::Json(SigningKeyList { data: keys.into_iter().map(Into::into).collect() }))
}

/// Start a rotation: a new key, published now, signing after the lead time.
#[utoipa::path(post, path = "/v1/signing-keys/rotate", tag = "tokens", request_body = RotateSigningKey,
    responses((status = 201, body = SigningKeyView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem, description = "A new key is already waiting")),
    security(("root_key" = [])))]
pub async fn rotate(
    state: web::Data<AppState>,
    root: Root,
    body: Body<RotateSigningKey>,
) -> Result<HttpResponse, ApiError> {
    let key = app::signing_keys::rotate(&root.ctx(&state), body.value.lead_seconds).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(SigningKeyView::from(key)))
}

/// Revoke a key at once: it leaves the JWKS and its tokens fail; a key that was signing is
/// replaced by one that signs at once.
#[utoipa::path(post, path = "/v1/signing-keys/{kid}/revoke", tag = "tokens", params(("kid" = String, Path)),
    responses((status = 200, body = SigningKeyView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    root: Root,
    kid: web::Path<String>,
) -> Result<web::Json<SigningKeyView>, ApiError> {
    Ok(web::Json(app::signing_keys::revoke(&root.ctx(&state), &kid).await?.into()))
}

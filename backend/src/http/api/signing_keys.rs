//! `GET /v1/signing-keys`, `POST /v1/signing-keys/rotate`, `POST /v1/signing-keys/{kid}/revoke`,
//! `GET/PATCH /v1/signing-keys/schedule`.

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
    /// How long the new key is published before it signs (default: the schedule's
    /// `lead_seconds`; at most 604800).
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

/// When the signing key is replaced on its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningScheduleView {
    /// Every so many days after the current key took over (or `null` with `cron`).
    pub interval_days: Option<i64>,
    /// Or at each occurrence of this cron expression (UTC).
    pub cron: Option<String>,
    /// How long a new key is published before it signs.
    pub lead_seconds: i64,
    /// When the schedule next starts a rotation (`null` while a new key waits to take over, or
    /// before the first key).
    pub next_rotation_at: Option<DateTime<Utc>>,
}

/// `PATCH /v1/signing-keys/schedule`: an interval replaces a cron expression and the other
/// way round.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSigningSchedule {
    /// 1 to 3650 days.
    pub interval_days: Option<i64>,
    /// A cron expression (five fields, UTC), at most 200 characters.
    pub cron: Option<String>,
    /// 0 to 604800 seconds, shorter than the time between two rotations.
    pub lead_seconds: Option<i64>,
}

async fn schedule_view(state: &AppState, root: &Root) -> Result<SigningScheduleView, ApiError> {
    let ctx = root.ctx(state);
    let s = app::signing_keys::schedule(state, &ctx.tenant).await?;
    let next_rotation_at = app::signing_keys::next_rotation(state, &ctx.tenant).await?;
    Ok(SigningScheduleView {
        interval_days: s.interval_days,
        cron: s.cron,
        lead_seconds: s.lead_seconds,
        next_rotation_at,
    })
}

/// When the token signing key is replaced on its own (every 30 days, published an hour before
/// it signs, unless set otherwise).
#[utoipa::path(get, path = "/v1/signing-keys/schedule", tag = "tokens",
    responses((status = 200, body = SigningScheduleView), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn get_schedule(state: web::Data<AppState>, root: Root) -> Result<web::Json<SigningScheduleView>, ApiError> {
    let ctx = root.ctx(&state);
    ctx.require(app::Permission::TokensWrite)?;
    Ok(web::Json(schedule_view(&state, &root).await?))
}

/// Change when the token signing key is replaced on its own.
#[utoipa::path(patch, path = "/v1/signing-keys/schedule", tag = "tokens", request_body = PatchSigningSchedule,
    responses((status = 200, body = SigningScheduleView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn patch_schedule(
    state: web::Data<AppState>,
    root: Root,
    body: Body<PatchSigningSchedule>,
) -> Result<web::Json<SigningScheduleView>, ApiError> {
    let b = body.value;
    app::signing_keys::set_schedule(
        &root.ctx(&state),
        app::signing_keys::ScheduleChanges {
            interval_days: b.interval_days,
            cron: b.cron,
            lead_seconds: b.lead_seconds,
        },
    )
    .await?;
    Ok(web::Json(schedule_view(&state, &root).await?))
}

//! Self-service for consumers, authenticated by their own key: `GET /v1/self` and
//! `POST /v1/self/rotate`.

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{TimeDelta, Utc};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::rotation::{RetireMode, Trigger};
use crate::domain::{ApiKey, KeyHash, KeyId, KeyState, TenantId};
use crate::http::api::rotations::{RotatedView, RotationView};
use crate::http::api::views::KeyView;
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::rotation::{self, RotateRequest};
use crate::state::AppState;
use crate::store::{keys, rotations};

/// The overlap a consumer gets when it does not ask for one: one hour.
pub const SELF_DEFAULT_OVERLAP_SECONDS: i64 = 3_600;
/// The longest overlap a consumer may ask for itself: seven days.
pub const SELF_MAX_OVERLAP_SECONDS: i64 = 7 * 86_400;

/// A consumer authenticated by one of its keys (valid or in grace).
pub struct ConsumerKey {
    tenant_id: TenantId,
    key_id: KeyId,
    consumer_id: Option<String>,
}

impl FromRequest for ConsumerKey {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parts = crate::http::auth::bearer_and_state(req);
        Box::pin(async move {
            let (token, state) = parts?;
            let token = token.ok_or(ApiError::Unauthenticated("send your key as Authorization: Bearer <key>"))?;
            let token = token.as_str();
            let invalid = ApiError::Unauthenticated("the key is not valid");
            if !matches!(ApiKey::check(token), Ok(false)) {
                return Err(invalid);
            }
            let record = state.cache.get(&KeyHash::of(token), &state.db).await?.ok_or(invalid)?;
            if record.data.is_root || !KeyState::derive(&record.times, Utc::now()).verifies() {
                return Err(ApiError::Unauthenticated("the key is not valid"));
            }
            Ok(Self {
                tenant_id: TenantId::from_trusted(record.data.tenant_id.clone()),
                key_id: KeyId::from_trusted(record.data.id.clone()),
                consumer_id: record.data.consumer.as_ref().map(|c| c.id.clone()),
            })
        })
    }
}

/// What a consumer sees of its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SelfView {
    pub key: KeyView,
    /// The rotation this key takes part in, if one is in progress.
    pub rotation: Option<RotationView>,
}

/// `POST /v1/self/rotate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfRotateBody {
    /// How long the presented key stays valid beside the new one (default 3600, at most 604800).
    pub overlap_seconds: Option<i64>,
}

/// This key's metadata, state, and rotation in progress.
#[utoipa::path(get, path = "/v1/self", tag = "self-service",
    responses((status = 200, body = SelfView), (status = 401, body = Problem)), security(("consumer_key" = [])))]
pub async fn get(state: web::Data<AppState>, me: ConsumerKey) -> Result<web::Json<SelfView>, ApiError> {
    let key = keys::get(&state.db, &me.tenant_id, &me.key_id, false).await?;
    let rotation = rotations::open_involving(&state.db, &me.key_id).await?.map(|r| RotationView::from_model(r, None));
    Ok(web::Json(SelfView { key: key.into(), rotation }))
}

/// Rotate the presented key: a new version, the presented one valid beside it for the overlap.
#[utoipa::path(post, path = "/v1/self/rotate", tag = "self-service", request_body = SelfRotateBody,
    responses((status = 201, body = RotatedView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 409, body = Problem, description = "The key is already in grace")),
    security(("consumer_key" = [])))]
pub async fn rotate(
    state: web::Data<AppState>,
    me: ConsumerKey,
    body: Body<SelfRotateBody>,
) -> Result<HttpResponse, ApiError> {
    let overlap = body.value.overlap_seconds.unwrap_or(SELF_DEFAULT_OVERLAP_SECONDS);
    if !(0..=SELF_MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(ApiError::field("overlap_seconds", format!("must be between 0 and {SELF_MAX_OVERLAP_SECONDS}")));
    }
    let current = keys::get(&state.db, &me.tenant_id, &me.key_id, false).await?;
    let request = RotateRequest {
        rules: rotation::rules_for(&state.db, &current).await?,
        overlap: TimeDelta::seconds(overlap),
        scopes: None,
        meta: None,
        retire_mode: RetireMode::AtDeadline,
        trigger: Trigger::SelfService,
        actor: Some(format!("consumer:{}", me.consumer_id.as_deref().unwrap_or("unknown"))),
        compromise: false,
        handoff: None,
    };
    let rotated = rotation::rotate(&state, &me.tenant_id, &me.key_id, false, request).await?;
    let out = RotatedView {
        rotation: RotationView::from_model(rotated.rotation, None),
        key: rotated.key.into(),
        secret: rotated.secret.expose().to_owned(),
    };
    Ok(HttpResponse::build(StatusCode::CREATED).json(out))
}

/// A new key issued by a rotation policy, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct PickedUp {
    pub key: KeyView,
    pub secret: String,
}

/// Fetch the new version a rotation policy issued for this key's lineage (once).
#[utoipa::path(post, path = "/v1/self/pickup", tag = "self-service",
    responses((status = 200, body = PickedUp), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "Nothing waiting, or already picked up")),
    security(("consumer_key" = [])))]
pub async fn pickup(state: web::Data<AppState>, me: ConsumerKey) -> Result<web::Json<PickedUp>, ApiError> {
    let current = keys::get(&state.db, &me.tenant_id, &me.key_id, false).await?;
    let master = state.master_key.clone().ok_or(ApiError::NotFound("no new key is waiting for pickup"))?;
    let txn = crate::store::begin_write(&state.db).await?;
    let pending = crate::store::policies::take_secret(&txn, &me.tenant_id, &current.lineage_id)
        .await?
        .ok_or(ApiError::NotFound("no new key is waiting for pickup"))?;
    let entry = crate::audit::Entry::new(
        "key.secret_picked_up",
        "key",
        pending.key_id.clone(),
        format!("The consumer fetched the new version of key {} with its current key", current.start),
    )
    .with(serde_json::json!({ "lineage_id": current.lineage_id, "presented_key_id": current.id }));
    let actor = format!("consumer:{}", current.consumer_id.as_deref().unwrap_or("unknown"));
    crate::audit::record(&txn, &me.tenant_id, &actor, vec![entry]).await?;
    txn.commit().await?;
    let secret = master
        .open(&pending.sealed)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a held secret cannot be opened with this master key")))?;
    let key = keys::get(&state.db, &me.tenant_id, &KeyId::from_trusted(pending.key_id), false).await?;
    Ok(web::Json(PickedUp { key: key.into(), secret }))
}

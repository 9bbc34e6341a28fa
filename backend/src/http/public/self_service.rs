//! Self-service for consumers, authenticated by their own key: `GET /v1/self` and
//! `POST /v1/self/rotate`.

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{self, Ctx};
use crate::domain::{ApiKey, KeyHash, KeyId, KeyState, TenantId};
use crate::http::api::rotations::{RotatedView, RotationView};
use crate::http::api::views::KeyView;
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::state::AppState;
use crate::store::{keys, rotations};

pub use crate::app::self_service::{SELF_DEFAULT_OVERLAP_SECONDS, SELF_MAX_OVERLAP_SECONDS};

/// A consumer authenticated by one of its keys (valid or in grace).
pub struct ConsumerKey {
    tenant_id: TenantId,
    key_id: KeyId,
    consumer_id: Option<String>,
}

impl ConsumerKey {
    /// The context of what the consumer asks for with this key.
    fn ctx<'a>(&self, state: &'a AppState) -> Ctx<'a> {
        let consumer = self.consumer_id.as_deref().unwrap_or("unknown");
        Ctx::consumer(state, self.tenant_id.clone(), consumer, crate::http::request_id::origin())
    }
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
            // A key of another format, imported into an API that accepts those, may serve too:
            // rotating it is how its holder gets a Keyroll key.
            let foreign = match ApiKey::check(token) {
                Ok(false) => None,
                Ok(true) => return Err(invalid),
                Err(_) if ApiKey::has_our_head(token) => return Err(invalid),
                Err(_) => Some(state.legacy.apis(&state.db).await?),
            };
            let record = state.cache.get(&KeyHash::of(token), &state.db).await?.ok_or(invalid)?;
            if foreign.is_some_and(|apis| !apis.contains(record.data.api_id.as_str())) {
                return Err(ApiError::Unauthenticated("the key is not valid"));
            }
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
    /// When the rotation policy in force will rotate this key, if one will: rotating it
    /// yourself before then gives the new version a fresh start.
    pub rotation_due_at: Option<chrono::DateTime<Utc>>,
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
    let rotation_due_at = match KeyState::derive(&app::rotation::times(&key), Utc::now()) {
        KeyState::Valid => app::rotation::policy_scan::due_at(&state.db, &key).await?,
        _ => None,
    };
    Ok(web::Json(SelfView { key: key.into(), rotation, rotation_due_at }))
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
    let rotated = app::self_service::rotate_own(&me.ctx(&state), &me.key_id, body.value.overlap_seconds).await?;
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
    let (key, secret) = app::self_service::pickup(&me.ctx(&state), &me.key_id).await?;
    Ok(web::Json(PickedUp { key: key.into(), secret }))
}

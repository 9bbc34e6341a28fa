//! Management API authentication: `Authorization: Bearer kr_root_…`. The root key is looked
//! up through the same caches as verification, so revoking it takes effect on every node at once.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;

use super::errors::ApiError;
use crate::app::{Actor, Ctx, Grants, Permission, ServiceError};
use crate::domain::code::Code;
use crate::domain::{ApiKey, KeyHash, KeyId, KeyState, ScopeSet, TenantId};
use crate::state::AppState;

pub use crate::app::permission::ROOT_SCOPES;

/// An authenticated root key.
#[derive(Debug, Clone)]
pub struct Root {
    pub tenant_id: TenantId,
    pub key_id: KeyId,
    pub scopes: ScopeSet,
}

impl Root {
    /// # Errors
    /// 403 naming the scope that grants the permission.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if Grants::of_scopes(&self.scopes).has(p) { Ok(()) } else { Err(ServiceError::Forbidden(p).into()) }
    }

    /// Who acts.
    #[must_use]
    pub fn actor(&self) -> Actor {
        Actor::RootKey(self.key_id.as_str().to_owned())
    }

    /// The context of an operation asked for by this key, in the request being served.
    #[must_use]
    pub fn ctx<'a>(&self, state: &'a AppState) -> Ctx<'a> {
        Ctx::new(
            state,
            self.tenant_id.clone(),
            self.actor(),
            Grants::of_scopes(&self.scopes),
            super::request_id::origin(),
        )
    }
}

/// The bearer token of a request (if any) and the application state.
///
/// # Errors
/// When the application state is missing (a wiring error).
pub fn bearer_and_state(req: &HttpRequest) -> Result<(Option<String>, web::Data<AppState>), ApiError> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    Ok((token, state))
}

impl FromRequest for Root {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parts = bearer_and_state(req);
        Box::pin(async move {
            let (token, state) = parts?;
            let token = token.ok_or(ApiError::Unauthenticated("send a root key as Authorization: Bearer kr_root_…"))?;
            let token = token.as_str();
            let invalid = ApiError::Unauthenticated("the root key is not valid");
            if !matches!(ApiKey::check(token), Ok(true)) {
                return Err(invalid);
            }
            let record = state.cache.get(&KeyHash::of(token), &state.db).await?.ok_or(invalid)?;
            let now = Utc::now();
            let st = KeyState::derive(&record.times, now);
            if !record.data.is_root || !st.verifies() {
                return Err(ApiError::Unauthenticated("the root key is not valid"));
            }
            state.usage.record_verified(&record, Code::Valid, None, now.timestamp_millis());
            Ok(Self {
                tenant_id: TenantId::from_trusted(record.data.tenant_id.clone()),
                key_id: KeyId::from_trusted(record.data.id.clone()),
                scopes: record.scopes.clone(),
            })
        })
    }
}

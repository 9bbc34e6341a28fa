//! `Idempotency-Key` on creating POSTs: the same key with the same body returns the first
//! response; with another body, 409. Stored responses can hold a new key's secret, so they are
//! encrypted (AES-256-GCM) with a key derived from the idempotency key, which is not stored.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use crate::crypto::SealKey;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::store::idempotency::{self, Claim};

const HEADER: &str = "idempotency-key";

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cipher(tenant: &TenantId, key: &str) -> SealKey {
    SealKey::from_bytes(digest(&[b"keyroll idempotency encryption v1", tenant.as_str().as_bytes(), key.as_bytes()]))
}

/// Runs `create` at most once per `Idempotency-Key` (when the header is present).
///
/// # Errors
/// The handler's own errors; 400 for a bad header; 409 for reuse with another body or while
/// the first request is still running.
pub async fn once<F, Fut>(
    state: &AppState,
    req: &HttpRequest,
    tenant: &TenantId,
    body: &[u8],
    create: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    let Some(header) = req.headers().get(HEADER) else {
        let (status, json) = create().await?;
        return Ok(HttpResponse::build(status).json(json));
    };
    let key = header
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::field("Idempotency-Key", "must be 1 to 255 printable ASCII characters"))?;
    let key_hash = hex(&digest(&[b"keyroll idempotency lookup v1", tenant.as_str().as_bytes(), key.as_bytes()]));
    let request_hash = hex(&digest(&[req.method().as_str().as_bytes(), req.path().as_bytes(), body]));
    match idempotency::claim(&state.db, tenant, &key_hash, &request_hash).await? {
        Claim::Mismatch => {
            Err(ApiError::Conflict("this Idempotency-Key was already used with a different request".into()))
        }
        Claim::InProgress => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed; retry shortly".into(),
        )),
        Claim::Replay { status, body } => {
            let plain = cipher(tenant, key)
                .open(&body)
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored idempotent response unreadable")))?;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok(HttpResponse::build(status)
                .insert_header(("idempotent-replayed", "true"))
                .content_type("application/json")
                .body(plain))
        }
        Claim::New => match create().await {
            Ok((status, json)) => {
                let bytes = serde_json::to_vec(&json).map_err(|e| ApiError::Internal(e.into()))?;
                if let Some(sealed) = cipher(tenant, key).seal(&bytes) {
                    idempotency::complete(&state.db, tenant, &key_hash, status.as_u16(), sealed).await?;
                }
                Ok(HttpResponse::build(status).content_type("application/json").body(bytes))
            }
            Err(e) => {
                // Nothing was created: the client may retry with the same key.
                if let Err(release) = idempotency::release(&state.db, tenant, &key_hash).await {
                    tracing::warn!(error = %release, "could not release an idempotency claim");
                }
                Err(e)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_the_same_key() {
        let t = TenantId::generate();
        let sealed = cipher(&t, "k1").seal(b"secret").expect("sealed");
        assert_eq!(cipher(&t, "k1").open(&sealed).as_deref(), Some(&b"secret"[..]));
        assert_eq!(cipher(&t, "k2").open(&sealed), None);
        assert!(!sealed.contains("secret"));
    }
}

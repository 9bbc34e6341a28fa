//! `POST /v1/verify`: always 200 for a well-formed request, 400 otherwise.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::{ApiId, KeyState, Scope};
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::http::request_id;
use crate::state::AppState;
use crate::time::{http_date, rfc3339};
use crate::verify::{self, Code, VerifyInput};

/// What a gateway asks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key as presented by the caller.
    pub key: String,
    /// When given, a key of another API is `NOT_FOUND`.
    pub api_id: Option<String>,
    /// Every one must be granted (`orders:*` and `*` grant by wildcard).
    pub scopes: Option<Vec<String>>,
    /// Credits this call costs (default 1).
    pub cost: Option<u32>,
    /// The end client's address, for allowlists.
    pub ip: Option<String>,
}

/// Rotation details of a superseded key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationInfo {
    /// `superseded`.
    pub state: &'static str,
    pub grace_ends_at: String,
    pub successor_version: Option<i32>,
}

/// The key's rate limit after this verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitInfo {
    pub limit: u32,
    pub remaining: u32,
    /// When the current window ends.
    pub reset_at: String,
}

/// The key's credits after this verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsInfo {
    pub remaining: u64,
}

/// The answer. For `MALFORMED` and `NOT_FOUND` only `valid`, `code` and `request_id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse<'a> {
    pub valid: bool,
    pub code: Code,
    pub request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub key: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub consumer: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Option<RotationInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<Option<RateLimitInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Option<CreditsInfo>>,
}

/// Is this key valid, and what may it do?
#[utoipa::path(post, path = "/v1/verify", tag = "verify", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse, description = "The verdict, valid or not"),
        (status = 400, body = Problem), (status = 413, body = Problem)))]
pub async fn verify(state: web::Data<AppState>, body: Body<VerifyRequest>) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let req = body.value;
    // The request itself must be well-formed; the key's own shape is judged below (MALFORMED).
    let api_id = match req.api_id.as_deref() {
        Some(s) => Some(ApiId::parse(s).map_err(|e| ApiError::field("api_id", e.to_string()))?),
        None => None,
    };
    let scopes = req.scopes.unwrap_or_default();
    if scopes.len() > 100 {
        return Err(ApiError::field("scopes", "must have at most 100 entries"));
    }
    if let Some(i) = scopes.iter().position(|s| !Scope::is_valid(s)) {
        return Err(ApiError::field(format!("scopes[{i}]"), crate::domain::scope::ScopeError.to_string()));
    }
    if req.cost.is_some_and(|c| i64::from(c) > verify::MAX_COST) {
        return Err(ApiError::field("cost", format!("must be at most {}", verify::MAX_COST)));
    }
    let ip = match req.ip.as_deref() {
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| ApiError::field("ip", "must be an IPv4 or IPv6 address"))?),
        None => None,
    };
    let input = VerifyInput {
        key: &req.key,
        apis: api_id.as_slice(),
        tenant_id: None,
        scopes: &scopes,
        query: None,
        ip,
        cost: u64::from(req.cost.unwrap_or(1)),
    };
    let verdict =
        verify::verify(&state.cache, &state.db, &state.usage, &state.limiter, &state.credits, &state.legacy, &input)
            .await?;
    let request_id = request_id::current();
    let mut res = HttpResponse::Ok();
    let body = match &verdict.record {
        Some(rec) => {
            let superseded = verdict.state == Some(KeyState::Superseded);
            let rotation = match (superseded, rec.data.grace_ends_at) {
                (true, Some(grace)) => {
                    if let Some(at) = rec.data.superseded_at {
                        res.insert_header(("deprecation", format!("@{}", at.timestamp())));
                    }
                    res.insert_header(("sunset", http_date(grace)));
                    Some(RotationInfo {
                        state: "superseded",
                        grace_ends_at: rfc3339(grace),
                        successor_version: rec.data.successor_version,
                    })
                }
                _ => None,
            };
            serde_json::to_vec(&VerifyResponse {
                valid: verdict.code == Code::Valid,
                code: verdict.code,
                request_id: &request_id,
                key: Some(&rec.key_json),
                consumer: Some(&rec.consumer_json),
                api_id: Some(&rec.data.api_id),
                rotation: Some(rotation),
                ratelimit: Some(verdict.ratelimit.map(|r| RateLimitInfo {
                    limit: r.limit,
                    remaining: r.remaining,
                    reset_at: chrono::DateTime::from_timestamp_millis(r.reset_at_ms).map(rfc3339).unwrap_or_default(),
                })),
                credits: Some(verdict.credits.map(|remaining| CreditsInfo { remaining })),
            })
        }
        None => serde_json::to_vec(&VerifyResponse {
            valid: false,
            code: verdict.code,
            request_id: &request_id,
            key: None,
            consumer: None,
            api_id: None,
            rotation: None,
            ratelimit: None,
            credits: None,
        }),
    }
    .map_err(|e| ApiError::Internal(e.into()))?;
    state.metrics.verified(verdict.code, started.elapsed());
    res.insert_header((CACHE_CONTROL, client_cache(&verdict, state.settings.cache.client_ttl_seconds)));
    let mut res = res.body(body);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// What a verify client may do with this answer: keep a valid one for `ttl` seconds at most, and
/// never past the key's expiry or the end of its overlap; nothing else (refusals, keys whose rate
/// limit or credits each verification counts against) is kept.
fn client_cache(verdict: &verify::Verdict, ttl: u64) -> HeaderValue {
    let no_store = HeaderValue::from_static("no-store");
    let Some(rec) = verdict.record.as_ref().filter(|_| verdict.code == Code::Valid && ttl > 0) else {
        return no_store;
    };
    if rec.data.ratelimit.is_some() || rec.data.credits.is_some() {
        return no_store;
    }
    let now = chrono::Utc::now();
    let left = [rec.data.expires_at, rec.data.grace_ends_at]
        .into_iter()
        .flatten()
        .map(|end| u64::try_from((end - now).num_seconds()).unwrap_or(0))
        .min()
        .unwrap_or(u64::MAX);
    match ttl.min(left) {
        0 => no_store,
        s => HeaderValue::from_str(&format!("private, max-age={s}")).unwrap_or(no_store),
    }
}

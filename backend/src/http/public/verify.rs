//! `POST /v1/verify`: always 200 for a well-formed request, 400 otherwise.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::{ApiId, KeyState, Scope};
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::http::request_id;
use crate::time::{http_date, rfc3339};
use crate::verify::record::KeyRecord;
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
#[derive(Debug, Clone, Serialize, ToSchema)]
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
pub async fn verify(http: HttpRequest, body: Body<VerifyRequest>) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let state = crate::http::app_state(&http)?;
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
        None => answer(&verdict, &request_id, None),
        Some(rec) => {
            let superseded = verdict.state == Some(KeyState::Superseded);
            let rotation = match (superseded, rec.times.grace_ends_at) {
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
            answer(&verdict, &request_id, Some((rec, rotation)))
        }
    }
    .map_err(|e| ApiError::Internal(e.into()))?;
    state.metrics.verified(verdict.code, started.elapsed());
    res.insert_header((CACHE_CONTROL, client_cache(&verdict, state.settings.cache.client_ttl_seconds)));
    let mut res = res.body(body);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// The answer's JSON, member for member what serde writes for [`VerifyResponse`] (the tests hold
/// the two to each other), with the key's own members copied from its record, where they were
/// written once.
fn answer(
    verdict: &verify::Verdict,
    request_id: &str,
    found: Option<(&KeyRecord, Option<RotationInfo>)>,
) -> serde_json::Result<Vec<u8>> {
    let members = found.as_ref().map_or(0, |(rec, _)| rec.answer_members.len());
    let mut out = Vec::with_capacity(members + 192);
    out.extend_from_slice(if verdict.code == Code::Valid {
        b"{\"valid\":true,\"code\":"
    } else {
        b"{\"valid\":false,\"code\":"
    });
    // Codes are upper-case words: nothing to escape.
    out.push(b'"');
    out.extend_from_slice(verdict.code.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"request_id\":");
    if request_id.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        // Ours, or a client's that passed the middleware's check: nothing to escape.
        out.push(b'"');
        out.extend_from_slice(request_id.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut out, request_id)?;
    }
    if let Some((rec, rotation)) = found {
        out.push(b',');
        out.extend_from_slice(rec.answer_members.as_bytes());
        out.extend_from_slice(b",\"rotation\":");
        serde_json::to_writer(&mut out, &rotation)?;
        out.extend_from_slice(b",\"ratelimit\":");
        serde_json::to_writer(&mut out, &verdict.ratelimit.map(rate_info))?;
        out.extend_from_slice(b",\"credits\":");
        serde_json::to_writer(&mut out, &verdict.credits.map(|remaining| CreditsInfo { remaining }))?;
    }
    out.push(b'}');
    Ok(out)
}

fn rate_info(r: verify::limits::RateVerdict) -> RateLimitInfo {
    RateLimitInfo {
        limit: r.limit,
        remaining: r.remaining,
        reset_at: chrono::DateTime::from_timestamp_millis(r.reset_at_ms).map(rfc3339).unwrap_or_default(),
    }
}

/// What a verify client may do with this answer: keep a valid one for `ttl` seconds at most, and
/// never past the key's expiry or the end of its overlap; nothing else (refusals, keys whose rate
/// limit or credits each verification counts against) is kept.
fn client_cache(verdict: &verify::Verdict, ttl: u64) -> HeaderValue {
    let no_store = HeaderValue::from_static("no-store");
    let Some(rec) = verdict.record.as_ref().filter(|_| verdict.code == Code::Valid && ttl > 0) else {
        return no_store;
    };
    if rec.limited {
        return no_store;
    }
    let left = [rec.times.expires_at, rec.times.grace_ends_at]
        .into_iter()
        .flatten()
        .map(|end| u64::try_from((end - chrono::Utc::now()).num_seconds()).unwrap_or(0))
        .min()
        .unwrap_or(u64::MAX);
    match ttl.min(left) {
        0 => no_store,
        s => max_age(s),
    }
}

thread_local! {
    /// The last `Cache-Control` value written on this thread: nearly every answer has the
    /// configured lifetime, and a `HeaderValue` is cloned by reference count.
    static LAST_MAX_AGE: std::cell::RefCell<Option<(u64, HeaderValue)>> = const { std::cell::RefCell::new(None) };
}

/// `private, max-age={s}`.
fn max_age(s: u64) -> HeaderValue {
    LAST_MAX_AGE.with_borrow_mut(|last| match last {
        Some((at, v)) if *at == s => v.clone(),
        _ => {
            let v = HeaderValue::from_str(&format!("private, max-age={s}"))
                .unwrap_or_else(|_| HeaderValue::from_static("no-store"));
            *last = Some((s, v.clone()));
            v
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::store::keys::KeyRecordData;
    use crate::verify::limits::RateVerdict;
    use crate::verify::record::{consumer_json, key_json};

    fn record(consumer: serde_json::Value) -> KeyRecord {
        let data: KeyRecordData = serde_json::from_value(json!({
            "id": "key_01jf0000000000000000000000", "tenant_id": "ten_01jf0000000000000000000000",
            "api_id": "api_01jf0000000000000000000000", "lineage_id": "lin_01jf0000000000000000000000",
            "version": 3, "is_root": false, "name": "Shop \"live\" — ünïcode\n", "scopes": ["orders:*", "a\\b"],
            "meta": {"plan": "pro", "nested": {"n": [1, 2.5, null]}}, "enabled": true,
            "expires_at": "2031-01-02T03:04:05Z", "grace_ends_at": "2030-06-01T00:00:00Z",
            "superseded_at": "2030-05-01T00:00:00Z", "successor_version": 4, "revoked_at": null,
            "ratelimit": null, "credits": null, "ip_allowlist": null, "created_at": "2030-01-01T00:00:00.123Z",
            "consumer": consumer, "read_ms": 0
        }))
        .expect("a record");
        KeyRecord::new(data)
    }

    /// What serde writes for the documented response type, built from the same parts.
    fn by_serde(v: &verify::Verdict, request_id: &str, rotation: Option<RotationInfo>) -> Vec<u8> {
        let (key, consumer) = match &v.record {
            Some(r) => (Some(key_json(&r.data)), Some(consumer_json(&r.data))),
            None => (None, None),
        };
        let found = v.record.is_some();
        serde_json::to_vec(&VerifyResponse {
            valid: v.code == Code::Valid,
            code: v.code,
            request_id,
            key: key.as_deref(),
            consumer: consumer.as_deref(),
            api_id: v.record.as_ref().map(|r| r.data.api_id.as_str()),
            rotation: found.then_some(rotation),
            ratelimit: found.then(|| v.ratelimit.map(rate_info)),
            credits: found.then(|| v.credits.map(|remaining| CreditsInfo { remaining })),
        })
        .expect("serializable")
    }

    fn rotation() -> Option<RotationInfo> {
        Some(RotationInfo {
            state: "superseded",
            grace_ends_at: "2030-06-01T00:00:00Z".into(),
            successor_version: Some(4),
        })
    }

    #[test]
    fn answers_are_written_as_serde_writes_the_response_type() {
        let rate = RateVerdict {
            allowed: true,
            limit: 100,
            remaining: 7,
            reset_at_ms: 1_900_000_000_123,
            first_refusal: false,
        };
        let with_consumer = json!({"id": "con_01jf0000000000000000000000", "external_id": "cus_\"1\"", "meta": {}});
        for consumer in [serde_json::Value::Null, with_consumer] {
            let rec = Arc::new(record(consumer));
            for (code, state, ratelimit, credits, rot) in [
                (Code::Valid, KeyState::Valid, None, None, None),
                (Code::Valid, KeyState::Superseded, Some(rate), Some(41), rotation()),
                (
                    Code::RateLimited,
                    KeyState::Valid,
                    Some(RateVerdict { allowed: false, remaining: 0, ..rate }),
                    None,
                    None,
                ),
                (Code::UsageExceeded, KeyState::Valid, None, Some(0), None),
                (Code::InsufficientScope, KeyState::Valid, None, None, None),
            ] {
                let v = verify::Verdict { code, state: Some(state), record: Some(rec.clone()), ratelimit, credits };
                let ours = answer(&v, "req_01jf0000000000000000000000", Some((&rec, rot.clone()))).expect("written");
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&by_serde(&v, "req_01jf0000000000000000000000", rot)),
                    "{code:?}"
                );
                let parsed: serde_json::Value = serde_json::from_slice(&ours).expect("valid JSON");
                assert_eq!(parsed["key"]["name"], "Shop \"live\" — ünïcode\n");
            }
        }
        // Every code, and request ids that need escaping, as serde writes them.
        for code in Code::ALL {
            let v = verify::Verdict { code, state: None, record: None, ratelimit: None, credits: None };
            for id in ["req_01jf0000000000000000000000", "a \"quoted\" \\ id", "ünï\u{7f}\n"] {
                assert_eq!(answer(&v, id, None).expect("written"), by_serde(&v, id, None), "{code:?} {id:?}");
            }
        }
        for code in [Code::NotFound, Code::Malformed] {
            let v = verify::Verdict { code, state: None, record: None, ratelimit: None, credits: None };
            let ours = answer(&v, "client-chosen.id:1", None).expect("written");
            assert_eq!(ours, by_serde(&v, "client-chosen.id:1", None));
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&ours).expect("valid JSON"),
                json!({"valid": false, "code": code, "request_id": "client-chosen.id:1"})
            );
        }
    }
}

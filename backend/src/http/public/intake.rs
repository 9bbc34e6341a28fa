//! Leak intake. `POST /v1/intake/github` speaks GitHub's secret-scanning partner protocol: a
//! JSON array of `{token, type, url, source}` signed with ECDSA P-256 / SHA-256 over the raw
//! body, the key named by `Github-Public-Key-Identifier` and the base64 DER signature in
//! `Github-Public-Key-Signature`. `POST /v1/intake/leaks` takes the same array from any other
//! scanner, signed as a Standard Webhook with the install's intake secret. Both answer one
//! verdict per token.

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::http::errors::{ApiError, Problem};
use crate::playbooks::leak::{self, Report, Verdict};
use crate::state::AppState;

/// Reports are larger than management requests: GitHub batches many tokens.
const MAX_INTAKE_BODY: usize = 1024 * 1024;
/// Tokens handled per request.
const MAX_TOKENS: usize = 1_000;

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

/// Is `signature` (base64 DER) the signature of `body` by the GitHub key named `key_id`?
fn github_signed(state: &AppState, key_id: &str, signature: &str, body: &[u8]) -> bool {
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Verifier;
    let Some((_, key)) = state.settings.github_keys.iter().find(|(id, _)| id == key_id) else {
        return false;
    };
    let Some(sig) = STANDARD.decode(signature).ok().and_then(|der| Signature::from_der(&der).ok()) else {
        return false;
    };
    key.verify(body, &sig).is_ok()
}

fn reports(body: &[u8]) -> Result<Vec<Report>, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return Err(ApiError::field("body", "must be a JSON array of {token, type, url, source}"));
    }
    let list: Vec<Report> = serde_json::from_slice(body).map_err(|e| ApiError::field("body", e.to_string()))?;
    if list.len() > MAX_TOKENS {
        return Err(ApiError::field("body", format!("must hold at most {MAX_TOKENS} tokens")));
    }
    Ok(list)
}

async fn answer(state: &AppState, reporter: &str, list: Vec<Report>) -> Result<HttpResponse, ApiError> {
    let verdicts: Vec<Verdict> = leak::handle(state, reporter, list).await?;
    Ok(HttpResponse::Ok().json(verdicts))
}

/// GitHub secret scanning: reported tokens are checked and, when they are keys of ours, contained.
#[utoipa::path(post, path = "/v1/intake/github", tag = "intake", request_body = Vec<Report>,
    params(("Github-Public-Key-Identifier" = String, Header), ("Github-Public-Key-Signature" = String, Header)),
    responses((status = 200, body = Vec<Verdict>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 503, body = Problem, description = "No GitHub keys configured")))]
pub async fn github(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if state.settings.github_keys.is_empty() {
        return Err(ApiError::Unavailable(
            "GitHub secret scanning is not set up (KEYROLL_LEAK__GITHUB_PUBLIC_KEYS)".into(),
        ));
    }
    let body = crate::http::json::read_body(payload, MAX_INTAKE_BODY).await?;
    let (Some(key_id), Some(signature)) =
        (header(&req, "github-public-key-identifier"), header(&req, "github-public-key-signature"))
    else {
        return Err(ApiError::Unauthenticated("the Github-Public-Key-Identifier and -Signature headers are required"));
    };
    if !github_signed(&state, key_id, signature, &body) {
        return Err(ApiError::Unauthenticated("the signature does not match a configured GitHub key"));
    }
    answer(&state, "github", reports(&body)?).await
}

/// Other scanners: the same report, signed as a Standard Webhook with the intake secret.
#[utoipa::path(post, path = "/v1/intake/leaks", tag = "intake", request_body = Vec<Report>,
    params(("webhook-id" = String, Header), ("webhook-timestamp" = String, Header), ("webhook-signature" = String, Header)),
    responses((status = 200, body = Vec<Verdict>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem), (status = 503, body = Problem, description = "No intake secret configured")))]
pub async fn generic(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.settings.leak.intake_secret.as_deref() else {
        return Err(ApiError::Unavailable("the leak intake is not set up (KEYROLL_LEAK__INTAKE_SECRET)".into()));
    };
    let body = crate::http::json::read_body(payload, MAX_INTAKE_BODY).await?;
    let hook = standardwebhooks::Webhook::new(secret)
        .map_err(|_| ApiError::Unavailable("the leak intake secret is not usable".into()))?;
    // Checks the signature and that the timestamp is within five minutes (replays fail).
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(v) = header(&req, name).and_then(|v| http::HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
    hook.verify(&body, &headers)
        .map_err(|_| ApiError::Unauthenticated("the webhook signature does not match the intake secret"))?;
    answer(&state, "scanner", reports(&body)?).await
}

//! `POST /v1/keys/import`: existing keys brought over, up to 10 000 per call.

use actix_web::{HttpRequest, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::imports::{ImportInput, ImportKeyInput, ImportReport};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::json;
use crate::state::AppState;

/// The largest import body: 10 000 keys with room for their names and meta.
pub const MAX_IMPORT_BODY: usize = 16 * 1024 * 1024;

/// One key to import: `plaintext` or `sha256`, one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKeyBody {
    /// The key as its holders send it. A Keyroll key of the API, or (with the API's
    /// `legacy_key_formats`) a key of another format: 16 to 256 printable characters.
    pub plaintext: Option<String>,
    /// The SHA-256 of the key, 64 hexadecimal characters, when the plaintext is not at hand.
    pub sha256: Option<String>,
    pub api_id: String,
    /// The consumer's `external_id`; a consumer is created when there is none.
    pub external_id: String,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, Value>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/keys/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// Your id of this import: sent again with the same body, the same report comes back and
    /// nothing is imported twice; with another body, 409.
    pub import_id: String,
    /// Check everything and report what would happen, writing nothing.
    pub dry_run: Option<bool>,
    pub keys: Vec<ImportKeyBody>,
}

/// Import existing keys. Keys with a fault are reported in `errors` by index and field, and
/// the others imported; a key whose secret exists already is in `skipped`.
#[utoipa::path(post, path = "/v1/keys/import", tag = "keys", request_body = ImportBody,
    responses((status = 200, body = ImportReport), (status = 400, body = Problem), (status = 402, body = Problem),
        (status = 409, body = Problem, description = "The import_id was used with another body"),
        (status = 413, body = Problem)),
    security(("root_key" = [])))]
pub async fn import(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    payload: web::Payload,
) -> Result<web::Json<ImportReport>, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BODY) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut payload = payload.into_inner();
    let raw = json::read_within(&mut payload, MAX_IMPORT_BODY, json::BODY_TIMEOUT * 6).await?;
    // As for every JSON body: an empty one stands for `{}` (and is then refused for what it
    // lacks).
    if !raw.is_empty() && !json::is_json(&req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: ImportBody = json::parse(&raw)?;
    let fingerprint: String = Sha256::digest(&raw).iter().map(|b| format!("{b:02x}")).collect();
    let input = ImportInput {
        import_id: body.import_id,
        dry_run: body.dry_run.unwrap_or(false),
        keys: body
            .keys
            .into_iter()
            .map(|k| ImportKeyInput {
                plaintext: k.plaintext,
                sha256: k.sha256,
                api_id: k.api_id,
                external_id: k.external_id,
                name: k.name,
                scopes: k.scopes.unwrap_or_default(),
                meta: k.meta.map(Value::Object),
                expires_at: k.expires_at,
            })
            .collect(),
    };
    Ok(web::Json(crate::app::imports::import(&root.ctx(&state), input, &fingerprint).await?))
}

//! The hot path: "is this key valid, and what may it do?"
//!
//! 1. format and checksum — `MALFORMED` without any lookup;
//! 2. SHA-256 → L1 → L2 → database;
//! 3. state, API, scopes, IP allowlist, rate limit, credits;
//! 4. count the outcome in process.

/// The most credits one verification may cost.
pub const MAX_COST: i64 = 1_000_000;

pub mod credits;
pub mod gateway;
pub mod legacy;
pub mod limits;
pub mod notices;
pub mod usage;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;

use crate::cache::KeyCache;
pub use crate::cache::record;
pub use crate::domain::code::Code;
use crate::domain::scope_query::ScopeQuery;
use crate::domain::{ApiId, ApiKey, KeyHash, KeyState};
use crate::store::StoreError;
use record::KeyRecord;
use usage::UsageCounter;

/// A checked verification request.
#[derive(Debug)]
pub struct VerifyInput<'a> {
    pub key: &'a str,
    /// When not empty, a key of another API is `NOT_FOUND`.
    pub apis: &'a [ApiId],
    /// When given, a key of another tenant is `NOT_FOUND` (callers who act for one tenant).
    pub tenant_id: Option<&'a str>,
    pub scopes: &'a [String],
    /// A permission query the key's scopes must also satisfy.
    pub query: Option<&'a ScopeQuery>,
    pub ip: Option<IpAddr>,
    /// Credits a passing verification spends (default 1).
    pub cost: u64,
}

/// The answer, with the record when the key was found.
#[derive(Debug)]
pub struct Verdict {
    pub code: Code,
    pub state: Option<KeyState>,
    pub record: Option<Arc<KeyRecord>>,
    /// The key's rate limit, when it has one and the verification got that far.
    pub ratelimit: Option<limits::RateVerdict>,
    /// The key's credits left, when it has credits and the verification got that far.
    pub credits: Option<u64>,
}

impl Verdict {
    fn bare(code: Code) -> Self {
        Self { code, state: None, record: None, ratelimit: None, credits: None }
    }
}

/// Verifies one key.
///
/// # Errors
/// Only when the database had to be read and could not be.
pub async fn verify(
    cache: &KeyCache,
    db: &sea_orm::DatabaseConnection,
    usage: &UsageCounter,
    limiter: &limits::RateLimiter,
    credits: &credits::CreditLedger,
    legacy: &legacy::LegacyFormats,
    input: &VerifyInput<'_>,
) -> Result<Verdict, StoreError> {
    // Root keys are not verifiable here: they only authenticate the management API.
    let mut foreign = None;
    match ApiKey::check(input.key) {
        Err(_) => {
            // A key that does not even start like ours may be an imported key of another
            // format, when an API it could belong to accepts those; anything else is malformed
            // without a lookup.
            // Boxed, like every await below that is not on the path of a plain cached key: the
            // future of each verification is moved at least once, and stays small.
            foreign = Box::pin(foreign_apis(legacy, db, input)).await?;
            if foreign.is_none() {
                count_miss(usage, input, Code::Malformed);
                return Ok(Verdict::bare(Code::Malformed));
            }
        }
        Ok(true) => return Ok(Verdict::bare(Code::NotFound)),
        Ok(false) => {}
    }
    let Some(record) = cache.get(&KeyHash::of(input.key), db).await? else {
        count_miss(usage, input, Code::NotFound);
        return Ok(Verdict::bare(Code::NotFound));
    };
    if foreign.is_some_and(|apis| !apis.contains(record.data.api_id.as_str())) {
        // An imported key of another format, of an API that no longer accepts those.
        return Ok(Verdict::bare(Code::Malformed));
    }
    let other_api = !input.apis.is_empty() && !input.apis.iter().any(|a| a.as_str() == record.data.api_id);
    let other_tenant = input.tenant_id.is_some_and(|t| t != &*record.tenant_id);
    if record.is_root || other_api || other_tenant {
        count_miss(usage, input, Code::NotFound);
        return Ok(Verdict::bare(Code::NotFound));
    }
    let now = Utc::now();
    let state = KeyState::derive(&record.times, now);
    let mut code = match state {
        KeyState::Revoked => Code::Revoked,
        KeyState::Disabled => Code::Disabled,
        KeyState::Expired => Code::Expired,
        KeyState::Valid | KeyState::Superseded => {
            // The record's scopes are not read when none are asked for (most verifications).
            if (!input.scopes.is_empty() && !record.scopes.grants_all(input.scopes))
                || input.query.is_some_and(|q| !q.granted_by(&record.scopes))
            {
                Code::InsufficientScope
            } else if let (Some(list), Some(ip)) = (&record.ip_allowlist, input.ip)
                && !list.allows(ip)
            {
                Code::IpNotAllowed
            } else if record.ip_allowlist.is_some() && input.ip.is_none() {
                // An allowlisted key must say where the call comes from.
                Code::IpNotAllowed
            } else {
                Code::Valid
            }
        }
    };
    // Only a verification that would pass counts against the limit.
    let mut ratelimit = None;
    if code == Code::Valid
        && record.limited
        && let Some(rl) = record.data.ratelimit
    {
        let v = Box::pin(limiter.hit(cache, &record.key_id, rl, now.timestamp_millis())).await;
        if !v.allowed {
            code = Code::RateLimited;
        }
        if v.first_refusal {
            let reset = chrono::DateTime::from_timestamp_millis(v.reset_at_ms).map(crate::time::rfc3339);
            let extra = serde_json::json!({"limit": rl.limit, "window_seconds": rl.window_seconds, "reset_at": reset});
            notices::raise(db, &record, crate::domain::EventType::RatelimitExceeded, extra);
        }
        ratelimit = Some(v);
    }
    // Then credits: spent only by a verification that passes everything else.
    let mut left = None;
    if code == Code::Valid
        && record.limited
        && let Some(c) = &record.data.credits
    {
        let purse = credits::Purse { record: &record, credits: c };
        let spend = Box::pin(credits.spend(cache, db, purse, input.cost, now)).await?;
        if !spend.spent {
            code = Code::UsageExceeded;
        }
        if spend.now_low {
            notices::raise(
                db,
                &record,
                crate::domain::EventType::CreditsLow,
                serde_json::json!({"remaining": spend.remaining}),
            );
        }
        left = Some(spend.remaining);
    }
    usage.record_verified(&record, code, input.ip, now.timestamp_millis());
    Ok(Verdict { code, state: Some(state), record: Some(record), ratelimit, credits: left })
}

/// The APIs that accept keys of foreign formats, when the presented key could be one for an API
/// the request allows: not starting like a Keyroll key, 16 to 256 printable characters.
async fn foreign_apis(
    legacy: &legacy::LegacyFormats,
    db: &sea_orm::DatabaseConnection,
    input: &VerifyInput<'_>,
) -> Result<Option<Arc<std::collections::HashSet<String>>>, StoreError> {
    let k = input.key;
    if ApiKey::has_our_head(k) || k.len() < 16 || k.len() > 256 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(None);
    }
    let apis = legacy.apis(db).await?;
    let possible =
        if input.apis.is_empty() { !apis.is_empty() } else { input.apis.iter().any(|a| apis.contains(a.as_str())) };
    Ok(possible.then_some(apis))
}

/// A key that is not there (or, `MALFORMED`, cannot be) counts against the API it was meant
/// for: the one the gateway named, or the one its head names.
fn count_miss(usage: &UsageCounter, input: &VerifyInput<'_>, code: Code) {
    let api = match input.apis.first() {
        Some(id) => usage::MissedApi::Id(id.clone()),
        None => match ApiKey::head_of(input.key) {
            Some((prefix, env)) => usage::MissedApi::Head(prefix.as_str().into(), env),
            None => return,
        },
    };
    usage.record_miss(api, code, Utc::now().timestamp_millis());
}

//! `POST /v1/verify` with a small local cache that keeps only what the server allows: a valid
//! answer, for as long as its `Cache-Control: max-age` says (never past the key's expiry or the
//! end of its overlap, which the server already counts in). Refusals are never kept, so a new
//! key works at once, and a server that says `no-store` (the default) is asked every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Error;

/// The key's fields in a verification.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub lineage_id: String,
    pub version: i32,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Value,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The consumer the key belongs to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ConsumerInfo {
    pub id: String,
    pub external_id: String,
    pub meta: Value,
}

/// A superseded key's rotation: the key still works until `grace_ends_at`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RotationInfo {
    pub state: String,
    pub grace_ends_at: DateTime<Utc>,
    pub successor_version: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RateLimitInfo {
    pub limit: u32,
    pub remaining: u32,
    pub reset_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CreditsInfo {
    pub remaining: u64,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Verification {
    pub valid: bool,
    /// `VALID`, `MALFORMED`, `NOT_FOUND`, `EXPIRED`, `REVOKED`, `DISABLED`, `INSUFFICIENT_SCOPE`,
    /// `IP_NOT_ALLOWED`, `RATE_LIMITED` or `USAGE_EXCEEDED`.
    pub code: String,
    pub request_id: String,
    #[serde(default)]
    pub key: Option<KeyInfo>,
    #[serde(default)]
    pub consumer: Option<ConsumerInfo>,
    #[serde(default)]
    pub api_id: Option<String>,
    #[serde(default)]
    pub rotation: Option<RotationInfo>,
    #[serde(default)]
    pub ratelimit: Option<RateLimitInfo>,
    #[serde(default)]
    pub credits: Option<CreditsInfo>,
    /// The `Deprecation` header of a superseded key, to pass on to its caller.
    #[serde(default)]
    pub deprecation: Option<String>,
    /// The `Sunset` header of a superseded key, to pass on to its caller.
    #[serde(default)]
    pub sunset: Option<String>,
    /// Whether this answer came from the local cache.
    #[serde(default)]
    pub cached: bool,
}

/// What a verification asks besides the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// A key of another API is `NOT_FOUND`.
    pub api_id: Option<String>,
    /// Every one must be granted.
    pub scopes: Vec<String>,
    /// Credits this call costs (the server's default is 1).
    pub cost: Option<u32>,
    /// The end client's address, for keys with an allowlist.
    pub ip: Option<std::net::IpAddr>,
}

impl Check {
    #[must_use]
    pub fn api(mut self, api_id: impl Into<String>) -> Self {
        self.api_id = Some(api_id.into());
        self
    }

    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    #[must_use]
    pub fn ip(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The cache's name for this question: a hash, so the cache holds no key in clear.
    fn fingerprint(&self, key: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [key, self.api_id.as_deref().unwrap_or_default()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for s in &self.scopes {
            h.update(s.as_bytes());
            h.update([1]);
        }
        h.update(self.cost.unwrap_or(1).to_le_bytes());
        h.update(self.ip.map(|i| i.to_string()).unwrap_or_default().as_bytes());
        h.finalize().into()
    }
}

/// How long the server lets this answer be kept: `max-age`, unless `no-store`/`no-cache`.
fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let cc = cache_control?;
    let mut age = None;
    for d in cc.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return None;
        }
        if let Some(n) = d.strip_prefix("max-age=") {
            age = n.parse::<u64>().ok().filter(|n| *n > 0).map(Duration::from_secs);
        }
    }
    age
}

/// Settings of a [`VerifyClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest any answer is kept, whatever the server allows.
    pub max_ttl: Duration,
    /// Answers kept at most.
    pub capacity: usize,
    /// The longest one call to Keyroll may take.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { max_ttl: Duration::from_secs(60), capacity: 10_000, timeout: Duration::from_secs(5) }
    }
}

/// Kept answers by the fingerprint of their question, with the moment each runs out.
type Kept = HashMap<[u8; 32], (Instant, Arc<Verification>)>;

/// Verifies keys against a Keyroll node.
#[derive(Debug)]
pub struct VerifyClient {
    base: String,
    http: reqwest::Client,
    options: ClientOptions,
    cache: Mutex<Kept>,
}

impl VerifyClient {
    /// A client of the node at `base_url` (`https://keys.example.com`).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::with_options(base_url, ClientOptions::default())
    }

    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Self, Error> {
        let http = reqwest::Client::builder().timeout(options.timeout).build()?;
        Ok(Self { base: base_url.trim_end_matches('/').to_owned(), http, options, cache: Mutex::new(HashMap::new()) })
    }

    /// The node's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Answers kept now (expired ones included until they are next looked at).
    #[must_use]
    pub fn cached_len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Forgets every kept answer (after revoking a key through another path, say).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// Is this key valid, and what may it do?
    ///
    /// # Errors
    /// When Keyroll cannot be reached or refuses the request itself (a 400 for a bad scope,
    /// say); a key that is not valid is an answer, not an error.
    pub async fn verify(&self, key: &str, check: &Check) -> Result<Arc<Verification>, Error> {
        let fingerprint = check.fingerprint(key);
        let now = Instant::now();
        if let Ok(mut cache) = self.cache.lock() {
            match cache.get(&fingerprint) {
                Some((until, v)) if *until > now => return Ok(Arc::clone(v)),
                Some(_) => {
                    cache.remove(&fingerprint);
                }
                None => {}
            }
        }
        let mut body = serde_json::json!({ "key": key });
        if let Some(a) = &check.api_id {
            body["api_id"] = a.clone().into();
        }
        if !check.scopes.is_empty() {
            body["scopes"] = check.scopes.clone().into();
        }
        if let Some(c) = check.cost {
            body["cost"] = c.into();
        }
        if let Some(ip) = check.ip {
            body["ip"] = ip.to_string().into();
        }
        let res = self.http.post(format!("{}/v1/verify", self.base)).json(&body).send().await?;
        let status = res.status();
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (cache_control, deprecation, sunset) = (header("cache-control"), header("deprecation"), header("sunset"));
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(Error::Status(status.as_u16(), text));
        }
        let mut v: Verification = res.json().await?;
        v.deprecation = deprecation;
        v.sunset = sunset;
        let keep = max_age(cache_control.as_deref()).filter(|_| v.valid).map(|age| age.min(self.options.max_ttl));
        let v = Arc::new(v);
        if let Some(age) = keep
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= self.options.capacity {
                cache.retain(|_, (until, _)| *until > now);
            }
            if cache.len() < self.options.capacity {
                let mut kept = (*v).clone();
                kept.cached = true;
                cache.insert(fingerprint, (now + age, Arc::new(kept)));
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_read_as_the_server_means_it() {
        assert_eq!(max_age(Some("private, max-age=30")), Some(Duration::from_secs(30)));
        assert_eq!(max_age(Some("no-store")), None);
        assert_eq!(max_age(Some("max-age=30, no-cache")), None);
        assert_eq!(max_age(Some("max-age=0")), None);
        assert_eq!(max_age(Some("max-age=abc")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn every_part_of_the_question_names_its_answer() {
        let base = Check::default().api("api_1").scopes(["orders:read"]);
        let f = base.fingerprint("k");
        assert_ne!(f, base.fingerprint("k2"));
        assert_ne!(f, base.clone().api("api_2").fingerprint("k"));
        assert_ne!(f, base.clone().scopes(["orders:write"]).fingerprint("k"));
        assert_ne!(f, base.clone().ip([127, 0, 0, 1].into()).fingerprint("k"));
        assert_eq!(f, base.fingerprint("k"));
    }
}

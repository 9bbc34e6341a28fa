//! What the actix-web middleware and the tower layer share: which API and scopes a request
//! needs, where its key is, and the verdict on it. `KeyrollAuth` and `KeyrollLayer` are this
//! type under the names their frameworks expect.

use std::net::IpAddr;
use std::sync::Arc;

use crate::refusal::Refusal;
use crate::{Check, Verification, VerifyClient};

/// A service's requirements for the keys of its requests.
#[derive(Debug, Clone)]
pub struct KeyrollGuard {
    client: Arc<VerifyClient>,
    check: Check,
    header: String,
}

impl KeyrollGuard {
    /// Keys from `Authorization: Bearer …`, any API, no scope needed.
    #[must_use]
    pub fn new(client: Arc<VerifyClient>) -> Self {
        Self { client, check: Check::default(), header: "authorization".into() }
    }

    /// Only keys of this API pass.
    #[must_use]
    pub fn api(mut self, api_id: impl Into<String>) -> Self {
        self.check.api_id = Some(api_id.into());
        self
    }

    /// Scopes every request needs.
    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.check.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The header holding the key (`x-api-key`, say), whole.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into().to_ascii_lowercase();
        self
    }

    /// The header the key is read from (lowercase).
    #[must_use]
    pub fn header_name(&self) -> &str {
        &self.header
    }

    /// The verdict on a request whose key header holds `value`, from `ip`: the verification
    /// to hand to the service, or the refusal to answer with. Keyroll out of reach is a refusal.
    pub async fn admit(&self, value: Option<&str>, ip: Option<IpAddr>) -> Result<Arc<Verification>, Refusal> {
        let Some(key) = value.and_then(|v| key_in(&self.header, v)) else {
            return Err(Refusal::missing(&self.header));
        };
        let mut check = self.check.clone();
        check.ip = ip.or(check.ip);
        let verification = self.client.verify(key, &check).await.map_err(|_| Refusal::unavailable())?;
        match Refusal::of(&verification) {
            Some(refusal) => Err(refusal),
            None => Ok(verification),
        }
    }
}

/// The headers a superseded key's caller should see on a passed request.
#[must_use]
pub fn passed_headers(v: &Verification) -> Vec<(&'static str, String)> {
    [("deprecation", &v.deprecation), ("sunset", &v.sunset)]
        .into_iter()
        .filter_map(|(n, value)| value.clone().map(|value| (n, value)))
        .collect()
}

/// The key in a header's value: the token of `Bearer <key>` for `Authorization`, else the whole
/// value.
fn key_in<'a>(header: &str, value: &'a str) -> Option<&'a str> {
    let value = value.trim();
    let key = if header.eq_ignore_ascii_case("authorization") {
        value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim()
    } else {
        value
    };
    (!key.is_empty()).then_some(key)
}

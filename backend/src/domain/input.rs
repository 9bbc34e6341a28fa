//! Validated values that come from outside: names, metadata, consumer ids, emails, IP lists
//! and limits. Each `parse` returns a message that names the rule that failed.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

/// The largest metadata object, serialized.
pub const MAX_META_BYTES: usize = 16 * 1024;

/// A display name: 1 to 200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// # Errors
    /// When empty after trimming, longer than 200 characters, or with control characters.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty");
        }
        if t.chars().count() > 200 {
            return Err("must be at most 200 characters");
        }
        if t.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(t.to_owned()))
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why a key is revoked: 1 to 500 characters once trimmed. Shown in the audit log and the
/// `key.revoked` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub const MAX_CHARS: usize = 500;

    /// # Errors
    /// When empty after trimming or longer than 500 characters.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > Self::MAX_CHARS {
            return Err("must be 1 to 500 characters");
        }
        Ok(Self(t.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a reported leak of one of an API's keys does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakAction {
    /// Events and email only.
    Notify,
    /// A new version; the leaked one keeps working for the grace period, then stops.
    Rotate,
    /// Refused at once.
    Revoke,
}

impl LeakAction {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "notify" => Some(Self::Notify),
            "rotate" => Some(Self::Rotate),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Rotate => "rotate",
            Self::Revoke => "revoke",
        }
    }
}

/// An API's leak policy: the action, and with `rotate` how long the leaked key keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakPolicy {
    pub action: LeakAction,
    /// 0 to [`LeakPolicy::MAX_GRACE_SECONDS`]; always 0 unless the action is `rotate`.
    pub grace_seconds: i64,
}

impl LeakPolicy {
    /// The longest a leaked key may keep working: a day.
    pub const MAX_GRACE_SECONDS: i64 = 86_400;
    /// The grace when none is given: 15 minutes.
    pub const DEFAULT_GRACE_SECONDS: i64 = 900;

    /// # Errors
    /// `(field, message)`: `action` when it is not notify, rotate or revoke; `grace_seconds` when
    /// out of bounds.
    pub fn parse(action: &str, grace_seconds: Option<i64>) -> Result<Self, (&'static str, &'static str)> {
        let action = LeakAction::parse(action).ok_or(("action", "must be notify, rotate or revoke"))?;
        let grace = grace_seconds.unwrap_or(Self::DEFAULT_GRACE_SECONDS);
        if !(0..=Self::MAX_GRACE_SECONDS).contains(&grace) {
            return Err(("grace_seconds", "must be between 0 and 86400"));
        }
        Ok(Self { action, grace_seconds: if action == LeakAction::Rotate { grace } else { 0 } })
    }
}

/// The provider's own id for a consumer: 1 to 128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    /// # Errors
    /// When empty, too long, or not printable ASCII without spaces.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 128 {
            return Err("must be 1 to 128 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces");
        }
        Ok(Self(s.to_owned()))
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// An email address, checked for shape only (one `@`, a dot in the domain, no spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// When the text does not look like an address.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let s = s.trim();
        let ok = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if ok { Ok(Self(s.to_ascii_lowercase())) } else { Err("must be an email address") }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Free-form metadata: a JSON object of at most 16 KiB.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta(Map<String, Value>);

impl Meta {
    /// # Errors
    /// When not an object or larger than 16 KiB serialized.
    pub fn parse(v: Value) -> Result<Self, &'static str> {
        let Value::Object(map) = v else {
            return Err("must be a JSON object");
        };
        let size = serde_json::to_vec(&map).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > MAX_META_BYTES {
            return Err("must be at most 16 KiB when serialized");
        }
        Ok(Self(map))
    }

    #[must_use]
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// Addresses and networks a key may be used from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpAllowlist(Vec<IpNet>);

impl IpAllowlist {
    pub const MAX: usize = 100;

    /// Parses `203.0.113.9` or `203.0.113.0/24` (IPv4 or IPv6) entries.
    ///
    /// # Errors
    /// `(index, message)` of the first bad entry, or index 0 when there are too many.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, (usize, &'static str)> {
        if items.len() > Self::MAX {
            return Err((Self::MAX, "at most 100 entries"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, s)| parse_net(s.as_ref()).ok_or((i, "must be an IP address or CIDR network")))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A per-key rate limit: `limit` verifications per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

impl RateLimit {
    /// # Errors
    /// `(field, message)` when a bound is out of range.
    pub fn check(self) -> Result<Self, (&'static str, &'static str)> {
        if self.limit == 0 || self.limit > 1_000_000_000 {
            return Err(("limit", "must be between 1 and 1000000000"));
        }
        if self.window_seconds == 0 || self.window_seconds > 31 * 86_400 {
            return Err(("window_seconds", "must be between 1 and 2678400 (31 days)"));
        }
        Ok(self)
    }
}

/// How credits refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    Daily,
    Monthly,
}

/// A credit balance, decremented by each verification's `cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credits {
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

impl Credits {
    /// The largest balance or refill: 10¹⁵ credits, far inside what the database's signed
    /// 64-bit counters hold.
    pub const MAX: u64 = 1_000_000_000_000_000;

    /// # Errors
    /// `(field, message)` for a balance or refill amount above [`Credits::MAX`].
    pub fn check(self) -> Result<Self, (&'static str, &'static str)> {
        if self.remaining > Self::MAX {
            return Err(("remaining", "must be at most 1000000000000000"));
        }
        if self.refill.is_some_and(|r| r.amount > Self::MAX) {
            return Err(("refill.amount", "must be at most 1000000000000000"));
        }
        Ok(self)
    }
}

/// A refill rule: back to `amount` every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refill {
    pub interval: RefillInterval,
    pub amount: u64,
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value; use with
/// `#[serde(default, deserialize_with = "…::double_option")]`.
///
/// # Errors
/// When the value is of the wrong type.
pub fn double_option<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names() {
        assert_eq!(Name::parse("  prod ").map(Name::into_string), Ok("prod".to_owned()));
        assert!(Name::parse(" ").is_err());
        assert!(Name::parse("a\u{0}b").is_err());
        assert!(Name::parse(&"x".repeat(201)).is_err());
        assert!(Name::parse("<script>alert(1)</script>").is_ok());
    }

    #[test]
    fn meta() {
        assert!(Meta::parse(json!({"plan": "pro"})).is_ok());
        assert!(Meta::parse(json!([1])).is_err());
        assert!(Meta::parse(json!({"x": "y".repeat(17_000)})).is_err());
    }

    #[test]
    fn ip_allowlist() {
        let l = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::1"]).expect("valid");
        assert!(l.allows("203.0.113.9".parse().expect("ip")));
        assert!(!l.allows("198.51.100.1".parse().expect("ip")));
        assert!(l.allows("2001:db8::1".parse().expect("ip")));
        assert_eq!(IpAllowlist::parse(&["1.2.3.4", "nope"]).err().map(|e| e.0), Some(1));
    }

    #[test]
    fn emails() {
        assert!(Email::parse("ops@acme.test").is_ok());
        for bad in ["", "ops", "ops@", "@acme.test", "o ps@acme.test", "ops@acme", "a@b@c.d"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}

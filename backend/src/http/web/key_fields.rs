//! The settings a key has, as one group of form fields: the new-key form and the edit form of a
//! key's page both use them. Every field is read and checked in one pass, in the unit the field
//! is in, so a form shows all of its errors at once; the application layer checks them again.

use serde::Deserialize;
use serde_json::Value;

use super::session::{FormErrors, sentence};
use crate::app::Checks;
use crate::domain::ScopeSet;
use crate::domain::input::{Credits, IpAllowlist, Name, RateLimit, Refill, RefillInterval};
use crate::store::entities::key;

/// What the form sends of a key's settings (every field a string, as typed).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct KeyFields {
    pub name: String,
    /// Comma-, space- or line-separated.
    pub scopes: String,
    /// Verifications allowed per window; empty for no limit.
    pub rl_limit: String,
    /// The window, in `rl_unit`s.
    pub rl_per: String,
    /// `second`, `minute`, `hour` or `day`.
    pub rl_unit: String,
    /// Credits the key has; empty for unlimited.
    pub credits: String,
    /// Back to this many credits …
    pub refill_amount: String,
    /// … every `daily` or `monthly`; empty for never.
    pub refill_interval: String,
    /// One address or CIDR network a line (or separated by commas); empty for anywhere.
    pub ip_allowlist: String,
    /// A JSON object; empty for `{}`.
    pub meta: String,
}

/// The units a rate limit's window can be typed in, largest first.
pub const UNITS: [(&str, u32); 4] = [("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)];

/// A key's settings as read from the form.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    pub ip_allowlist: Option<Vec<String>>,
    pub meta: Value,
}

/// A whole number as typed, with spaces, commas or underscores between digit groups.
pub fn whole(raw: &str) -> Option<u64> {
    let t: String = raw.trim().chars().filter(|c| !matches!(c, ' ' | '_' | ',' | '\u{202f}')).collect();
    t.parse::<u64>().ok()
}

impl KeyFields {
    /// The fields filled in with a key's settings, for its edit form.
    #[must_use]
    pub fn of(k: &key::Model) -> Self {
        let mut f = Self { name: k.name.clone().unwrap_or_default(), ..Self::default() };
        f.scopes = serde_json::from_value::<Vec<String>>(k.scopes.clone()).unwrap_or_default().join(", ");
        if let Some(r) = k.ratelimit.clone().and_then(|v| serde_json::from_value::<RateLimit>(v).ok()) {
            (f.rl_limit, f.rl_per, f.rl_unit) = Self::of_ratelimit(r);
        }
        if let Some(c) = k.credits.clone().and_then(|v| serde_json::from_value::<Credits>(v).ok()) {
            f.credits = c.remaining.to_string();
            if let Some(r) = c.refill {
                f.refill_amount = r.amount.to_string();
                f.refill_interval = match r.interval {
                    RefillInterval::Daily => "daily".into(),
                    RefillInterval::Monthly => "monthly".into(),
                };
            }
        }
        if let Some(l) = k.ip_allowlist.clone().and_then(|v| serde_json::from_value::<Vec<String>>(v).ok()) {
            f.ip_allowlist = l.join("\n");
        }
        if k.meta.as_object().is_some_and(|m| !m.is_empty()) {
            f.meta = serde_json::to_string_pretty(&k.meta).unwrap_or_default();
        }
        f
    }

    /// A rate limit as its three fields: the limit, the window in the largest unit that divides
    /// it, and that unit.
    #[must_use]
    pub fn of_ratelimit(r: RateLimit) -> (String, String, String) {
        let (unit, size) =
            UNITS.iter().find(|(_, s)| r.window_seconds.is_multiple_of(*s)).copied().unwrap_or(("second", 1));
        (r.limit.to_string(), (r.window_seconds / size).to_string(), unit.to_owned())
    }

    /// Reads every field, putting each error beside its field; `None` when any is wrong.
    /// Scopes are checked against the API's `catalogue` (empty: any scope).
    pub fn read(&self, catalogue: &ScopeSet, errors: &mut FormErrors) -> Option<Settings> {
        let before = errors.len();
        let name = Some(self.name.trim()).filter(|n| !n.is_empty()).map(str::to_owned);
        if let Some(Err(m)) = name.as_deref().map(Name::parse) {
            errors.insert("name", sentence(&format!("the name {m}")));
        }
        let scopes = super::keys::split_list(&self.scopes);
        let mut checks = Checks::default();
        crate::app::keys::check_scopes(&mut checks, "scopes", &scopes, catalogue);
        if let Some(first) = checks.0.first() {
            let at = first.field.trim_start_matches("scopes[").trim_end_matches(']').parse::<usize>().ok();
            let which = at.and_then(|i| scopes.get(i)).map_or_else(String::new, |s| format!(" “{s}”"));
            errors.insert("scopes", sentence(&format!("the scope{which} {}", first.message)));
        }
        let ratelimit = self.ratelimit(errors);
        let credits = self.credits(errors);
        let ip = super::keys::split_list(&self.ip_allowlist);
        if let Err((i, m)) = IpAllowlist::parse(&ip) {
            let which = ip.get(i).map_or_else(String::new, |s| format!(" “{s}”"));
            errors.insert("ip_allowlist", sentence(&format!("the entry{which} {m}")));
        }
        let ip_allowlist = (!ip.is_empty()).then_some(ip);
        let meta = match self.meta.trim() {
            "" => Value::Object(serde_json::Map::new()),
            raw => match serde_json::from_str::<Value>(raw) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    errors
                        .insert("meta", "Enter a JSON object, such as {\"plan\": \"pro\"}, or leave it empty.".into());
                    Value::Null
                }
                Err(e) => {
                    errors.insert(
                        "meta",
                        format!(
                            "This is not valid JSON (line {}, column {}). Enter an object, such as {{\"plan\": \"pro\"}}.",
                            e.line(),
                            e.column()
                        ),
                    );
                    Value::Null
                }
            },
        };
        (errors.len() == before).then(|| Settings {
            name,
            scopes,
            ratelimit: ratelimit.flatten(),
            credits: credits.flatten(),
            ip_allowlist,
            meta,
        })
    }

    fn ratelimit(&self, errors: &mut FormErrors) -> Option<Option<RateLimit>> {
        read_ratelimit(&self.rl_limit, &self.rl_per, &self.rl_unit, errors)
    }

    fn credits(&self, errors: &mut FormErrors) -> Option<Option<Credits>> {
        let interval = match self.refill_interval.as_str() {
            "" | "never" => None,
            "daily" => Some(RefillInterval::Daily),
            "monthly" => Some(RefillInterval::Monthly),
            _ => {
                errors.insert("refill_interval", "Choose never, daily or monthly.".into());
                return None;
            }
        };
        if self.credits.trim().is_empty() {
            if interval.is_some() || !self.refill_amount.trim().is_empty() {
                errors.insert("credits", "Enter the credits the key starts with, or clear the refill.".into());
                return None;
            }
            return Some(None);
        }
        let max = Credits::MAX;
        let remaining = whole(&self.credits).filter(|n| *n <= max);
        if remaining.is_none() {
            errors.insert("credits", "Enter a whole number of credits from 0 to 1 000 000 000 000 000.".into());
        }
        let refill = match (interval, self.refill_amount.trim()) {
            (None, "") => Some(None),
            (None, _) => {
                errors.insert("refill_interval", "Choose how often the credits refill.".into());
                None
            }
            (Some(i), raw) => match whole(raw).filter(|n| *n <= max) {
                Some(amount) => Some(Some(Refill { interval: i, amount })),
                None => {
                    errors.insert(
                        "refill_amount",
                        "Enter the whole number of credits to refill to, from 0 to 1 000 000 000 000 000.".into(),
                    );
                    None
                }
            },
        };
        Some(Some(Credits { remaining: remaining?, refill: refill? }))
    }
}

/// Reads a rate limit typed as "`limit` verifications per `per` `unit`s" (errors beside
/// `rl_limit` and `rl_per`): `Some(None)` when `limit` is empty.
pub fn read_ratelimit(limit: &str, per: &str, unit: &str, errors: &mut FormErrors) -> Option<Option<RateLimit>> {
    if limit.trim().is_empty() {
        return Some(None);
    }
    let limit = whole(limit).filter(|n| (1..=1_000_000_000).contains(n));
    let size = UNITS.iter().find(|(u, _)| *u == unit).map(|(_, s)| u64::from(*s));
    let per = if per.trim().is_empty() { Some(1) } else { whole(per) };
    let window = match (size, per) {
        (Some(size), Some(per)) if per >= 1 => per.checked_mul(size).filter(|w| *w <= 31 * 86_400),
        _ => None,
    };
    if limit.is_none() {
        errors.insert(
            "rl_limit",
            "Enter a whole number of verifications from 1 to 1 000 000 000, or leave it empty for no limit.".into(),
        );
    }
    if window.is_none() {
        errors.insert("rl_per", "Enter a window of at least 1 second and at most 31 days.".into());
    }
    match (limit, window) {
        (Some(l), Some(w)) => {
            Some(Some(RateLimit { limit: u32::try_from(l).ok()?, window_seconds: u32::try_from(w).ok()? }))
        }
        _ => None,
    }
}

/// Where the application layer's errors of a key's settings go on the form, with the field
/// that holds the expiry (`expires_days` on the new-key form, `expires` on the edit form).
#[must_use]
pub fn error_places(expiry: &'static str) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v = FIELDS.to_vec();
    v.push(("expires_at", expiry, ""));
    v
}

const FIELDS: &[(&str, &str, &str)] = &[
    ("name", "name", ""),
    ("scopes", "scopes", ""),
    ("api_id", "api_id", ""),
    ("ratelimit", "rl_limit", ""),
    ("credits", "credits", ""),
    ("ip_allowlist", "ip_allowlist", ""),
    ("meta", "meta", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: impl FnOnce(&mut KeyFields)) -> KeyFields {
        let mut k = KeyFields::default();
        f(&mut k);
        k
    }

    #[test]
    fn empty_fields_mean_no_limits() {
        let mut e = FormErrors::new();
        let s = KeyFields::default().read(&ScopeSet::default(), &mut e).expect("valid");
        assert_eq!((s.ratelimit, s.credits, s.ip_allowlist, s.name), (None, None, None, None));
        assert_eq!(s.meta, serde_json::json!({}));
    }

    #[test]
    fn a_rate_limit_is_read_in_its_unit() {
        let mut e = FormErrors::new();
        let f = fields(|f| {
            f.rl_limit = "1 000".into();
            f.rl_per = "5".into();
            f.rl_unit = "minute".into();
        });
        let s = f.read(&ScopeSet::default(), &mut e).expect("valid");
        assert_eq!(s.ratelimit, Some(RateLimit { limit: 1000, window_seconds: 300 }));
    }

    #[test]
    fn every_error_is_reported_at_once_in_the_fields_unit() {
        let mut e = FormErrors::new();
        let f = fields(|f| {
            f.rl_limit = "0".into();
            f.rl_per = "32".into();
            f.rl_unit = "day".into();
            f.credits = "-1".into();
            f.refill_interval = "daily".into();
            f.refill_amount = "lots".into();
            f.meta = "[1]".into();
        });
        assert!(f.read(&ScopeSet::default(), &mut e).is_none());
        for field in ["rl_limit", "rl_per", "credits", "refill_amount", "meta"] {
            assert!(e.contains_key(field), "{field}: {e:?}");
        }
        assert!(e["rl_per"].contains("31 days"));
    }

    #[test]
    fn a_huge_window_does_not_overflow() {
        let mut e = FormErrors::new();
        let f = fields(|f| {
            f.rl_limit = "10".into();
            f.rl_per = "18446744073709551615".into();
            f.rl_unit = "day".into();
        });
        assert!(f.read(&ScopeSet::default(), &mut e).is_none());
        assert!(e.contains_key("rl_per"));
    }

    #[test]
    fn a_key_fills_the_form_back() {
        let now = chrono::Utc::now();
        let k = key::Model {
            id: "key_1".into(),
            tenant_id: "ten_1".into(),
            api_id: "api_1".into(),
            consumer_id: None,
            lineage_id: "key_1".into(),
            version: 1,
            is_root: false,
            hash: String::new(),
            start: "acme_live_abcd".into(),
            name: None,
            scopes: serde_json::json!([]),
            meta: serde_json::json!({"plan": "pro"}),
            enabled: true,
            expires_at: None,
            grace_ends_at: None,
            superseded_at: None,
            revoked_at: None,
            revoked_reason: None,
            last_used_at: None,
            ratelimit: Some(serde_json::json!({"limit": 100, "window_seconds": 7200})),
            credits: Some(serde_json::json!({"remaining": 50, "refill": {"interval": "monthly", "amount": 500}})),
            ip_allowlist: Some(serde_json::json!(["203.0.113.0/24"])),
            created_by: None,
            created_at: now,
            updated_at: now,
        };
        let f = KeyFields::of(&k);
        assert_eq!((f.rl_limit.as_str(), f.rl_per.as_str(), f.rl_unit.as_str()), ("100", "2", "hour"));
        let mut e = FormErrors::new();
        let s = f.read(&ScopeSet::default(), &mut e).expect("valid");
        assert_eq!(s.credits.and_then(|c| c.refill).map(|r| r.amount), Some(500));
        assert_eq!(s.meta, serde_json::json!({"plan": "pro"}));
    }
}

//! Unkey's request and response shapes, and the translation of Keyroll's keys into them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UnkeyError;
use crate::domain::input::{Credits, RateLimit, Refill, RefillInterval};
use crate::store::entities::{consumer, key};

/// The consumer of keys created without an `externalId`: every Keyroll key has an owner, and
/// this one stands for "none". Its identity is never shown.
pub const UNASSIGNED: &str = "keyroll-unassigned";

/// Milliseconds since the epoch, as Unkey's times are.
#[must_use]
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A time given in milliseconds since the epoch.
///
/// # Errors
/// 400 naming `field` when the number is no time chrono can hold.
pub fn time_of(field: &str, ms: i64) -> Result<DateTime<Utc>, UnkeyError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| UnkeyError::field(field, "is not a time in milliseconds"))
}

/// `credits` of a request: `remaining: null` means unlimited.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsIn {
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub remaining: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::domain::input::double_option")]
    pub refill: Option<Option<RefillIn>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefillIn {
    pub interval: String,
    pub amount: i64,
    pub refill_day: Option<i64>,
}

impl CreditsIn {
    /// Keyroll's credits: `None` for unlimited.
    ///
    /// # Errors
    /// 400 naming the field.
    pub fn to_credits(&self) -> Result<Option<Credits>, UnkeyError> {
        let Some(Some(remaining)) = self.remaining else {
            if matches!(self.refill, Some(Some(_))) {
                return Err(UnkeyError::field("credits.remaining", "is required with a refill"));
            }
            return Ok(None);
        };
        let remaining =
            u64::try_from(remaining).map_err(|_| UnkeyError::field("credits.remaining", "must be 0 or more"))?;
        let refill = match &self.refill {
            Some(Some(r)) => Some(r.to_refill()?),
            _ => None,
        };
        Ok(Some(Credits { remaining, refill }))
    }
}

impl RefillIn {
    fn to_refill(&self) -> Result<Refill, UnkeyError> {
        let interval = match self.interval.as_str() {
            "daily" => RefillInterval::Daily,
            "monthly" => RefillInterval::Monthly,
            _ => return Err(UnkeyError::field("credits.refill.interval", "must be daily or monthly")),
        };
        match (interval, self.refill_day) {
            (_, None) | (RefillInterval::Monthly, Some(1)) => {}
            (RefillInterval::Daily, Some(_)) => {
                return Err(UnkeyError::field("credits.refill.refillDay", "applies to a monthly refill only"));
            }
            (RefillInterval::Monthly, Some(_)) => {
                return Err(UnkeyError::field(
                    "credits.refill.refillDay",
                    "must be 1: Keyroll refills on the first day of the month",
                ));
            }
        }
        let amount =
            u64::try_from(self.amount).map_err(|_| UnkeyError::field("credits.refill.amount", "must be 0 or more"))?;
        Ok(Refill { interval, amount })
    }
}

/// One of `ratelimits` of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitIn {
    pub name: String,
    pub limit: i64,
    pub duration: i64,
    #[serde(default)]
    pub auto_apply: bool,
}

/// Keyroll's one rate limit of a key from Unkey's list: none, or one (always applied).
///
/// # Errors
/// 400 naming the field.
pub fn ratelimit_of(items: &[RatelimitIn]) -> Result<Option<RateLimit>, UnkeyError> {
    let [r] = items else {
        return if items.is_empty() {
            Ok(None)
        } else {
            Err(UnkeyError::field(
                "ratelimits",
                "may hold one rate limit: a Keyroll key has one, applied to every verification",
            ))
        };
    };
    if r.name.is_empty() || r.name.len() > 128 {
        return Err(UnkeyError::field("ratelimits[0].name", "must be 1 to 128 characters"));
    }
    let limit = u32::try_from(r.limit)
        .ok()
        .filter(|l| (1..=1_000_000_000).contains(l))
        .ok_or_else(|| UnkeyError::field("ratelimits[0].limit", "must be between 1 and 1000000000"))?;
    if r.duration < 1_000 || r.duration % 1_000 != 0 || r.duration > 31 * 86_400_000 {
        return Err(UnkeyError::field(
            "ratelimits[0].duration",
            "must be whole seconds in milliseconds, from 1000 to 2678400000 (31 days)",
        ));
    }
    let window_seconds = u32::try_from(r.duration / 1_000)
        .map_err(|_| UnkeyError::field("ratelimits[0].duration", "is out of range"))?;
    Ok(Some(RateLimit { limit, window_seconds }))
}

/// Refuses roles: Keyroll grants scopes only.
///
/// # Errors
/// 400 naming `roles` when there are any.
pub fn no_roles(roles: Option<&Vec<String>>) -> Result<(), UnkeyError> {
    match roles {
        Some(r) if !r.is_empty() => {
            Err(UnkeyError::field("roles", "are not supported: Keyroll keys carry scopes, given as permissions"))
        }
        _ => Ok(()),
    }
}

/// `credits` of an answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditsOut {
    pub remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<RefillOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefillOut {
    pub interval: &'static str,
    pub amount: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_day: Option<u8>,
}

impl CreditsOut {
    fn of(c: &Credits, remaining: Option<u64>) -> Self {
        Self {
            remaining: Some(remaining.unwrap_or(c.remaining)),
            refill: c.refill.map(|r| match r.interval {
                RefillInterval::Daily => RefillOut { interval: "daily", amount: r.amount, refill_day: None },
                RefillInterval::Monthly => RefillOut { interval: "monthly", amount: r.amount, refill_day: Some(1) },
            }),
        }
    }
}

/// `identity` of an answer: the key's consumer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: String,
    pub external_id: String,
    pub meta: Value,
}

impl Identity {
    /// The identity of a consumer, unless it is [`UNASSIGNED`].
    #[must_use]
    pub fn of(id: &str, external_id: &str, meta: &Value) -> Option<Self> {
        (external_id != UNASSIGNED).then(|| Self {
            id: id.to_owned(),
            external_id: external_id.to_owned(),
            meta: meta.clone(),
        })
    }
}

/// The rate limit of a key, as Unkey's `RatelimitResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitOut {
    pub id: String,
    pub name: &'static str,
    pub limit: u32,
    pub duration: u64,
    pub auto_apply: bool,
}

/// The name Keyroll's one rate limit of a key goes by.
pub const RATELIMIT_NAME: &str = "default";

impl RatelimitOut {
    #[must_use]
    pub fn of(lineage_id: &str, r: RateLimit) -> Self {
        Self {
            id: format!("{lineage_id}.{RATELIMIT_NAME}"),
            name: RATELIMIT_NAME,
            limit: r.limit,
            duration: u64::from(r.window_seconds) * 1_000,
            auto_apply: true,
        }
    }
}

/// When a version stops verifying of itself: its expiry, or the end of its overlap when a
/// rotation superseded it (Unkey's reroll sets the old key's expiry the same way).
#[must_use]
pub fn ends_at(expires_at: Option<DateTime<Utc>>, grace_ends_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (expires_at, grace_ends_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Unkey's `KeyResponseData`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyData {
    pub key_id: String,
    pub start: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub meta: Value,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    pub permissions: Vec<String>,
    pub roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RatelimitOut>>,
}

/// What [`KeyData::of`] needs besides the key: its consumer and the live credit balances.
#[derive(Debug, Default)]
pub struct Extras {
    pub consumers: HashMap<String, consumer::Model>,
    pub balances: HashMap<String, u64>,
}

impl KeyData {
    #[must_use]
    pub fn of(k: &key::Model, extras: &Extras) -> Self {
        let credits: Option<Credits> = k.credits.clone().and_then(|c| serde_json::from_value(c).ok());
        let ratelimit: Option<RateLimit> = k.ratelimit.clone().and_then(|r| serde_json::from_value(r).ok());
        let identity = k
            .consumer_id
            .as_ref()
            .and_then(|id| extras.consumers.get(id))
            .and_then(|c| Identity::of(&c.id, &c.external_id, &c.meta));
        Self {
            key_id: k.id.clone(),
            start: k.start.clone(),
            enabled: k.enabled,
            name: k.name.clone(),
            meta: k.meta.clone(),
            created_at: ms(k.created_at),
            updated_at: ms(k.updated_at),
            last_used_at: k.last_used_at.map(ms),
            expires: ends_at(k.expires_at, k.grace_ends_at).map(ms),
            permissions: serde_json::from_value(k.scopes.clone()).unwrap_or_default(),
            roles: Vec::new(),
            credits: credits.map(|c| CreditsOut::of(&c, extras.balances.get(&k.lineage_id).copied())),
            identity,
            ratelimits: ratelimit.map(|r| vec![RatelimitOut::of(&k.lineage_id, r)]),
        }
    }
}

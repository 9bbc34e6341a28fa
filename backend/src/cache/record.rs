//! The cached form of a key: the stored fields plus what the hot path needs ready-made
//! (parsed scopes and allowlist, and the members of a verify answer that come from the key).

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;

use super::credit_lease::CreditLease;
use crate::domain::input::IpAllowlist;
use crate::domain::{KeyTimes, ScopeSet};
use crate::store::keys::KeyRecordData;

/// One key as the verify path sees it. In C order: what every verification of a plain key reads
/// comes first, right after the reference counts that taking the record writes (two flags, the
/// answer's members, the times, the allowlist, then the usage slot): at most three cache lines
/// of the allocation. The scopes are read when a verification asks for some;
/// `data` for keys with limits and for rotation details.
#[derive(Debug)]
#[repr(C)]
pub struct KeyRecord {
    /// `data.is_root`.
    pub is_root: bool,
    /// The key has a rate limit or credits (`data.ratelimit` or `data.credits`).
    pub limited: bool,
    /// The members of a verify answer that come from the key, as JSON written once:
    /// `"key":{"id":…,"lineage_id":…,"version":…,"name":…,"scopes":[…],"meta":{…},"expires_at":…,"created_at":…},`
    /// `"consumer":{"id":…,"external_id":…,"meta":{…}}` (or `null`) `,"api_id":"…"`.
    pub answer_members: Box<str>,
    pub times: KeyTimes,
    /// Boxed: one word on the record's first lines, and most keys have none.
    pub ip_allowlist: Option<Box<IpAllowlist>>,
    /// This node's count of the key's verifications in the current minute.
    pub usage: UsageSlot,
    pub scopes: ScopeSet,
    pub key_id: Arc<str>,
    pub tenant_id: Arc<str>,
    /// Credits this node holds to spend for the key (keys with credits only).
    pub lease: Option<Box<CreditLease>>,
    pub data: KeyRecordData,
}

/// Outcomes a slot counts: one per [`crate::domain::code::Code`].
pub const CODES: usize = crate::domain::code::Code::ALL.len();

/// A key's verifications on this node in one minute, per outcome, kept in its cached record:
/// counting them touches no memory the verification does not read anyway. The usage counter
/// takes them at each flush, and moves them aside when the minute changes.
#[derive(Debug, Default)]
pub struct UsageSlot(pub Mutex<MinuteCounts>);

/// In C order, what each count reads and writes first (the minute, the list flag, the last use),
/// then the counts, `VALID`'s first.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct MinuteCounts {
    /// Minutes since the epoch.
    pub minute: i64,
    /// The record is on the usage counter's list of records to take counts from.
    pub listed: bool,
    /// The last successful verification (Unix ms).
    pub last_used_ms: i64,
    pub counts: [u32; CODES],
}

#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    lineage_id: &'a str,
    version: i32,
    name: Option<&'a str>,
    scopes: &'a [String],
    meta: &'a serde_json::Value,
    expires_at: Option<String>,
    created_at: String,
}

impl KeyRecord {
    #[must_use]
    pub fn new(data: KeyRecordData) -> Self {
        let (key, consumer) = (key_json(&data), consumer_json(&data));
        let mut members = String::with_capacity(key.get().len() + consumer.get().len() + data.api_id.len() + 32);
        members.push_str("\"key\":");
        members.push_str(key.get());
        members.push_str(",\"consumer\":");
        members.push_str(consumer.get());
        members.push_str(",\"api_id\":");
        members.push_str(to_raw(&data.api_id).get());
        Self {
            is_root: data.is_root,
            limited: data.ratelimit.is_some() || data.credits.is_some(),
            answer_members: members.into_boxed_str(),
            times: data.times(),
            ip_allowlist: data.ip_allowlist.as_ref().and_then(|l| IpAllowlist::parse(l).ok()).map(Box::new),
            usage: UsageSlot::default(),
            scopes: ScopeSet::from_stored(&data.scopes),
            key_id: Arc::from(data.id.as_str()),
            tenant_id: Arc::from(data.tenant_id.as_str()),
            lease: data.credits.is_some().then(Box::default),
            data,
        }
    }
}

/// The `key` object of a verify answer.
#[must_use]
pub fn key_json(data: &KeyRecordData) -> Box<RawValue> {
    to_raw(&KeyView {
        id: &data.id,
        lineage_id: &data.lineage_id,
        version: data.version,
        name: data.name.as_deref(),
        scopes: &data.scopes,
        meta: &data.meta,
        expires_at: data.expires_at.map(crate::time::rfc3339),
        created_at: crate::time::rfc3339(data.created_at),
    })
}

/// The `consumer` object of a verify answer (`null` for a key without one).
#[must_use]
pub fn consumer_json(data: &KeyRecordData) -> Box<RawValue> {
    to_raw(&data.consumer)
}

fn to_raw<T: Serialize>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(changes: serde_json::Value) -> KeyRecord {
        let mut v = json!({
            "id": "key_01jf0000000000000000000000", "tenant_id": "ten_01jf0000000000000000000000",
            "api_id": "api_01jf0000000000000000000000", "lineage_id": "lin_01jf0000000000000000000000",
            "version": 1, "is_root": false, "name": null, "scopes": [], "meta": {}, "enabled": true,
            "expires_at": null, "grace_ends_at": null, "superseded_at": null, "successor_version": null,
            "revoked_at": null, "ratelimit": null, "credits": null, "ip_allowlist": null,
            "created_at": "2030-01-01T00:00:00Z", "consumer": null, "read_ms": 0
        });
        if let (Some(base), Some(changes)) = (v.as_object_mut(), changes.as_object()) {
            base.extend(changes.clone());
        }
        KeyRecord::new(serde_json::from_value(v).expect("a record"))
    }

    #[test]
    fn the_flags_up_front_say_what_the_data_says() {
        let plain = record(json!({}));
        assert!(!plain.is_root && !plain.limited && plain.lease.is_none());
        assert!(record(json!({"is_root": true})).is_root);
        assert!(record(json!({"ratelimit": {"limit": 5, "window_seconds": 60}})).limited);
        let credits = record(json!({"credits": {"remaining": 3}}));
        assert!(credits.limited && credits.lease.is_some());
        let times = record(json!({"grace_ends_at": "2030-02-01T00:00:00Z", "enabled": false})).times;
        assert!(times.grace_ends_at.is_some() && !times.enabled);
    }

    /// What every verification of a plain key reads (the flags, the members' pointer, the times,
    /// the allowlist's pointer, the usage slot) stays within 168 bytes of the allocation with the
    /// reference counts before it: three cache lines at most, two when it is aligned.
    #[test]
    fn what_every_verification_reads_stays_on_the_first_lines() {
        use std::mem::{offset_of, size_of};
        let hot_end = 2 * size_of::<usize>() + offset_of!(KeyRecord, usage) + size_of::<UsageSlot>();
        assert!(hot_end <= 168, "{hot_end} bytes");
        assert_eq!(size_of::<Option<Box<IpAllowlist>>>(), size_of::<usize>());
    }
}

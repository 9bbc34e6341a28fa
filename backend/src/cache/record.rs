//! The cached form of a key: the stored fields plus what the hot path needs ready-made
//! (parsed scopes and allowlist, and the JSON of the `key` and `consumer` objects).

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::credit_lease::CreditLease;
use crate::domain::input::IpAllowlist;
use crate::domain::{KeyTimes, ScopeSet};
use crate::store::keys::KeyRecordData;

/// One key as the verify path sees it.
#[derive(Debug)]
pub struct KeyRecord {
    pub data: KeyRecordData,
    pub times: KeyTimes,
    pub scopes: ScopeSet,
    pub ip_allowlist: Option<IpAllowlist>,
    pub key_id: Arc<str>,
    pub tenant_id: Arc<str>,
    /// `{"id":…,"lineage_id":…,"version":…,"name":…,"scopes":[…],"meta":{…},"expires_at":…,"created_at":…}`
    pub key_json: Box<RawValue>,
    /// `{"id":…,"external_id":…,"meta":{…}}` or `null`.
    pub consumer_json: Box<RawValue>,
    /// Credits this node holds to spend for the key (keys with credits only).
    pub lease: Option<Box<CreditLease>>,
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
        let key_view = KeyView {
            id: &data.id,
            lineage_id: &data.lineage_id,
            version: data.version,
            name: data.name.as_deref(),
            scopes: &data.scopes,
            meta: &data.meta,
            expires_at: data.expires_at.map(crate::time::rfc3339),
            created_at: crate::time::rfc3339(data.created_at),
        };
        let key_json = to_raw(&key_view);
        let consumer_json = to_raw(&data.consumer);
        Self {
            times: data.times(),
            scopes: ScopeSet::from_stored(&data.scopes),
            ip_allowlist: data.ip_allowlist.as_ref().and_then(|l| IpAllowlist::parse(l).ok()),
            key_id: Arc::from(data.id.as_str()),
            tenant_id: Arc::from(data.tenant_id.as_str()),
            key_json,
            consumer_json,
            lease: data.credits.is_some().then(Box::default),
            data,
        }
    }
}

fn to_raw<T: Serialize>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

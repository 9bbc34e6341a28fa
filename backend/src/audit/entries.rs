//! Audit entries of keys, shared by the API, the dashboard and tenant creation.

use super::Entry;
use crate::store::entities::key;

/// What an audit entry keeps of a key: everything but its hash.
fn audited(k: &key::Model) -> serde_json::Value {
    serde_json::json!({
        "start": k.start, "version": k.version, "lineage_id": k.lineage_id, "api_id": k.api_id,
        "consumer_id": k.consumer_id, "name": k.name, "scopes": k.scopes, "meta": k.meta, "enabled": k.enabled,
        "expires_at": k.expires_at.map(crate::time::rfc3339), "ratelimit": k.ratelimit, "credits": k.credits,
        "ip_allowlist": k.ip_allowlist,
    })
}

/// A new key or root key.
#[must_use]
pub fn key_created(k: &key::Model) -> Entry {
    let (action, target, what) =
        if k.is_root { ("root_key.created", "root_key", "root key") } else { ("key.created", "key", "key") };
    let named = k.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    Entry::new(action, target, k.id.clone(), format!("Created {what} {}{named}", k.start)).with(audited(k))
}

/// A change to a key's settings.
#[must_use]
pub fn key_updated(before: &key::Model, after: &key::Model) -> Entry {
    let summary = match (before.enabled, after.enabled) {
        (true, false) => format!("Disabled key {} v{}", after.start, after.version),
        (false, true) => format!("Enabled key {} v{}", after.start, after.version),
        _ => format!("Changed the settings of key {} v{}", after.start, after.version),
    };
    Entry::new("key.updated", "key", after.id.clone(), summary).change(audited(before), audited(after))
}

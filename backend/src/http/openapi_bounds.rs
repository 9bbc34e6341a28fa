//! The limits the server enforces, written into the served OpenAPI document: lengths, patterns,
//! ranges, enumerations and formats of request fields and query parameters. Each entry states,
//! in JSON Schema, exactly what the field's parse function in `domain/` or `app/` accepts (no
//! more, no less), so generated clients and fuzzers send what is accepted and nothing else.
//! Rules that join two fields or depend on stored state (`from` before `to`, an expiry in the
//! future) stay in the descriptions; the tests name the operations that have them.

use serde_json::{Value, json};

use crate::domain::input::{Credits, IpAllowlist, Reason};

/// White space as Rust's `str::trim` removes it (Unicode `White_Space`).
const WS: &str = r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters (`char::is_control`: Unicode `Cc`).
const CC: &str = r"\u0000-\u001f\u007f-\u009f";

/// 1 to `max` characters once trimmed, with no control characters within.
fn trimmed(max: usize, controls_allowed: bool) -> Value {
    let inner = if controls_allowed { String::from(r"[\s\S]") } else { format!("[^{CC}]") };
    let edge = if controls_allowed { format!("[^{WS}]") } else { format!("[^{WS}{CC}]") };
    let between = max.saturating_sub(2);
    json!({"pattern": format!("^[{WS}]*{edge}(?:{inner}{{0,{between}}}{edge})?[{WS}]*$")})
}

fn id(prefix: &str) -> Value {
    json!({"pattern": format!("^{prefix}_[0-7][0-9a-hjkmnp-tv-z]{{25}}$")})
}

fn one_of(values: &[&str]) -> Value {
    json!({"enum": values})
}

fn scope() -> Value {
    let part = "[a-z][a-z0-9_.-]{0,63}";
    json!({"pattern": format!("^(?:\\*|{part}:(?:\\*|{part}))$")})
}

/// Scopes separated by spaces.
fn scope_list() -> Value {
    let part = "[a-z][a-z0-9_.-]{0,63}";
    let one = format!("(?:\\*|{part}:(?:\\*|{part}))");
    json!({"pattern": format!("^ *(?:{one}(?: +{one})*)? *$")})
}

/// An absolute URL of the scheme(s) with a host, at most 2048 characters (what `url` parses).
fn web_url(schemes: &str) -> Value {
    json!({"maxLength": 2048, "pattern": format!("^{schemes}://[A-Za-z0-9][A-Za-z0-9.-]{{0,200}}(?::[0-9]{{1,4}})?(?:/[A-Za-z0-9._~/?#&=%+-]*)?$")})
}

fn range(min: i64, max: i64) -> Value {
    json!({"minimum": min, "maximum": max})
}

fn name() -> Value {
    trimmed(200, false)
}

/// `(component schema, property, constraints)`: for an array property the constraints apply to
/// its items, except `minItems`/`maxItems`.
fn fields() -> Vec<(&'static str, &'static str, Value)> {
    let credits = i64::try_from(Credits::MAX).unwrap_or(i64::MAX);
    let overlap = crate::domain::rotation::RotationRules::default().max_overlap.num_seconds();
    let ip = json!({"anyOf": [
        {"format": "ipv4"}, {"format": "ipv6"},
        {"pattern": "^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}/(?:3[0-2]|[12]?[0-9])$"}
    ]});
    let root_scopes: Vec<&str> = std::iter::once("*")
        .chain(crate::app::Permission::ALL.iter().map(|p| p.scope()).filter(|s| *s != "*"))
        .collect();
    vec![
        ("CreateApi", "name", name()),
        ("CreateApi", "key_prefix", json!({"pattern": "^[a-z][a-z0-9]{1,11}$"})),
        ("CreateApi", "environment", one_of(&["live", "test"])),
        ("CreateApi", "scope_catalogue", scope()),
        ("PatchApi", "name", name()),
        ("PatchApi", "scope_catalogue", scope()),
        ("RateLimitBody", "limit", range(1, 1_000_000_000)),
        ("RateLimitBody", "window_seconds", range(1, 31 * 86_400)),
        ("CreditsBody", "remaining", range(0, credits)),
        ("RefillBody", "amount", range(0, credits)),
        ("RefillBody", "interval", one_of(&["daily", "monthly"])),
        ("LeakPolicy", "action", one_of(&["notify", "rotate", "revoke"])),
        ("LeakPolicy", "grace_seconds", range(0, crate::domain::input::LeakPolicy::MAX_GRACE_SECONDS)),
        ("CreateConsumer", "external_id", json!({"pattern": "^[!-~]{1,128}$"})),
        ("CreateConsumer", "name", name()),
        ("CreateConsumer", "email", email()),
        ("CreateConsumer", "meta", json!({"type": ["object", "null"]})),
        ("PatchConsumer", "external_id", json!({"pattern": "^[!-~]{1,128}$"})),
        ("PatchConsumer", "name", name()),
        ("PatchConsumer", "email", email()),
        ("PatchConsumer", "meta", json!({"type": ["object", "null"]})),
        ("CreateConsumer", "stripe_customer_id", json!({"pattern": "^cus_[A-Za-z0-9_]{1,251}$"})),
        ("PatchConsumer", "stripe_customer_id", json!({"pattern": "^cus_[A-Za-z0-9_]{1,251}$"})),
        ("PatchApi", "stripe_meter_event", json!({"pattern": "^[A-Za-z0-9_-]{1,100}$"})),
        ("GatewayConfig", "header", json!({"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"})),
        ("GatewayConfig", "routes", json!({"maxItems": crate::domain::gateway::MAX_ROUTES})),
        ("GatewayRoute", "method", one_of(&crate::domain::gateway::METHODS)),
        ("GatewayRoute", "path_prefix", json!({"pattern": "^/[^?# \\u0000-\\u001f\\u007f]{0,511}$"})),
        ("GatewayRoute", "scopes", scope()),
        ("GatewayRoute", "scopes", json!({"maxItems": 100})),
        ("ConnectStripe", "stripe_key", json!({"pattern": "^[rs]k_(live|test)_[A-Za-z0-9_]{8,247}$"})),
        ("ImportBody", "import_id", json!({"pattern": "^[A-Za-z0-9_.:-]{1,128}$"})),
        ("ImportBody", "keys", json!({"minItems": 1, "maxItems": crate::domain::import::MAX_KEYS})),
        ("CreateKey", "api_id", id("api")),
        ("CreateKey", "consumer_id", id("con")),
        ("CreateKey", "name", name()),
        ("CreateKey", "scopes", scope()),
        ("CreateKey", "meta", json!({"type": ["object", "null"]})),
        ("CreateKey", "ip_allowlist", ip.clone()),
        ("CreateKey", "ip_allowlist", json!({"maxItems": IpAllowlist::MAX})),
        ("PatchKey", "name", name()),
        ("PatchKey", "scopes", scope()),
        ("PatchKey", "meta", json!({"type": ["object", "null"]})),
        ("PatchKey", "ip_allowlist", ip),
        ("PatchKey", "ip_allowlist", json!({"maxItems": IpAllowlist::MAX})),
        ("RevokeKey", "reason", trimmed(Reason::MAX_CHARS, true)),
        ("CreateRootKey", "name", name()),
        ("CreateRootKey", "scopes", one_of(&root_scopes)),
        ("CreateRootKey", "scopes", json!({"minItems": 1})),
        ("RotateBody", "overlap_seconds", range(0, overlap)),
        ("RotateBody", "scopes", scope()),
        ("RotateBody", "meta", json!({"type": ["object", "null"]})),
        ("RotateBody", "retire_mode", one_of(&["at_deadline", "when_drained"])),
        ("BulkBody", "api_id", id("api")),
        ("BulkBody", "overlap_seconds", range(0, overlap)),
        ("BulkFilter", "consumer_id", id("con")),
        ("VerifyRequest", "scopes", scope()),
        ("VerifyRequest", "scopes", json!({"maxItems": 100})),
        ("VerifyRequest", "api_id", id("api")),
        ("VerifyRequest", "ip", json!({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})),
        ("VerifyRequest", "cost", range(0, crate::verify::MAX_COST)),
        ("PlaybookBody", "name", name()),
        ("PlaybookBody", "target", one_of(&["key", "consumer", "api", "rotation"])),
        ("PlaybookBody", "steps", json!({"minItems": 1, "maxItems": 20})),
        ("PolicyBody", "api_id", id("api")),
        ("PolicyBody", "consumer_id", id("con")),
        ("PolicyBody", "retire_mode", one_of(&["at_deadline", "when_drained"])),
        ("PolicyBody", "on_full", one_of(&["end_oldest", "refuse"])),
        ("PolicyBody", "delivery", one_of(&["pickup", "webhook"])),
        ("PolicyBody", "max_active", range(1, 10)),
        ("PolicyBody", "interval_days", range(1, 3650)),
        ("RotateEndpointSecret", "overlap_seconds", range(0, 604_800)),
        ("SelfRotateBody", "overlap_seconds", range(0, 604_800)),
        ("TokenForm", "grant_type", one_of(&["client_credentials"])),
        ("TokenForm", "scope", scope_list()),
        ("CreatePortalSession", "consumer_id", id("con")),
        ("CreatePortalSession", "return_url", web_url("https?")),
        ("CreatePortalSession", "ttl_seconds", range(60, crate::app::portal::MAX_LINK_SECONDS)),
        ("PatchPortalSettings", "display_name", name()),
        ("PatchPortalSettings", "logo_url", web_url("https")),
        ("PatchPortalSettings", "accent_color", json!({"pattern": "^#[0-9A-Fa-f]{6}$"})),
        (
            "PatchPortalSettings",
            "support_url",
            json!({"anyOf": [web_url("https?"), {"pattern": "^mailto:[!-~]{1,2040}$"}]}),
        ),
        ("RotateSigningKey", "lead_seconds", range(0, crate::app::signing_keys::MAX_LEAD_SECONDS)),
        ("PatchSigningSchedule", "interval_days", range(1, 3650)),
        ("PatchSigningSchedule", "lead_seconds", range(0, crate::app::signing_keys::MAX_LEAD_SECONDS)),
        ("PatchSigningSchedule", "cron", json!({"maxLength": 200})),
        (
            "PatchApi",
            "token_ttl_seconds",
            range(crate::app::apis::TOKEN_TTL_BOUNDS.0, crate::app::apis::TOKEN_TTL_BOUNDS.1),
        ),
        ("ThresholdsPatch", "half_life_minutes", range(1, 1_440)),
        ("ThresholdsPatch", "warmup_minutes", range(0, 10_080)),
        ("ThresholdsPatch", "rate_min", range(1, 10_000_000)),
        ("ThresholdsPatch", "failure_min", range(1, 10_000_000)),
        ("ThresholdsPatch", "presented_min", range(1, 1_000_000)),
        ("ThresholdsPatch", "silence_minutes", range(1, 43_200)),
        ("ThresholdsPatch", "not_found_min", range(1, 10_000_000)),
        ("ThresholdsPatch", "after_rotation_minutes", range(1, 10_080)),
        ("ThresholdsPatch", "rate_factor", json!({"minimum": 1.5, "maximum": 1000})),
        ("ThresholdsPatch", "failure_delta", json!({"minimum": 0.05, "maximum": 1})),
        ("ThresholdsPatch", "not_found_factor", json!({"minimum": 1, "maximum": 1000})),
    ]
}

fn email() -> Value {
    // One `@` with something before it; a domain with a dot that neither starts nor ends it; no
    // white space or control characters; at most 254 characters.
    let (c, d) = (format!("[^@{WS}{CC}]"), format!("[^@.{WS}{CC}]"));
    json!({"maxLength": 254, "pattern": format!("^[{WS}]*{c}+@{d}{c}*\\.{c}*{d}[{WS}]*$")})
}

/// `(path or "*" for every path, query parameter, constraints)`.
fn parameters() -> Vec<(&'static str, &'static str, Value)> {
    let time = json!({"format": "date-time"});
    // The audit filters read a blank value as no filter (the dashboard's form sends them so).
    let time_or_blank = json!({"anyOf": [{"format": "date-time"}, {"pattern": format!("^[{WS}]*$")}]});
    vec![
        ("/v1/audit-events", "from", time_or_blank.clone()),
        ("/v1/audit-events", "to", time_or_blank.clone()),
        ("/v1/audit-events/export", "from", time_or_blank.clone()),
        ("/v1/audit-events/export", "to", time_or_blank),
        ("/v1/keys/{id}/usage", "from", time.clone()),
        ("/v1/keys/{id}/usage", "to", time.clone()),
        ("/v1/consumers/{id}/usage", "from", time.clone()),
        ("/v1/consumers/{id}/usage", "to", time.clone()),
        ("/v1/apis/{id}/usage", "from", time.clone()),
        ("/v1/apis/{id}/usage", "to", time.clone()),
        ("/v1/apis/{id}/migration", "from", time.clone()),
        ("/v1/apis/{id}/migration", "to", time.clone()),
        ("/v1/rotations/{id}/migration", "from", time.clone()),
        ("/v1/rotations/{id}/migration", "to", time),
        ("/v1/alerts", "subject_id", json!({"pattern": "^[A-Za-z0-9_]{0,64}$"})),
        (
            "/v1/alerts",
            "kind",
            one_of(&crate::domain::anomaly::AlertKind::ALL.map(crate::domain::anomaly::AlertKind::as_str)),
        ),
        ("*", "granularity", one_of(&["minute", "hour", "day"])),
        ("*", "within_hours", json!({"type": "integer", "minimum": 1, "maximum": 720})),
        ("*", "api_id", id("api")),
        ("*", "consumer_id", id("con")),
        ("*", "lineage_id", id("key")),
        ("/v1/keys", "state", one_of(&["valid", "superseded", "expired", "disabled", "revoked"])),
        ("/v1/rotations", "state", one_of(&["in_progress", "completed", "rolled_back", "cancelled"])),
        ("/v1/alerts", "state", one_of(&["open", "acknowledged", "resolved", "live"])),
        ("/v1/audit-events/export", "format", one_of(&["jsonl", "csv"])),
        ("/v1/events", "type", one_of(&crate::domain::EventType::ALL.map(crate::domain::EventType::as_str))),
    ]
}

/// Writes the bounds into a serialized document.
pub fn apply(doc: &mut Value) {
    thresholds_patch(doc);
    for (schema, property, bounds) in fields() {
        let Some(prop) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/{property}")) else {
            continue;
        };
        let Value::Object(bounds) = bounds else { continue };
        for (k, v) in bounds {
            let on_items = !matches!(k.as_str(), "minItems" | "maxItems") && prop.get("items").is_some();
            let target = if on_items { prop.get_mut("items") } else { Some(&mut *prop) };
            if let Some(Value::Object(t)) = target {
                t.insert(k, v);
            }
        }
    }
    // An export holds every matching entry: it takes the list's filters but not its paging.
    if let Some(Value::Array(list)) = doc.pointer_mut("/paths/~1v1~1audit-events~1export/get/parameters") {
        list.retain(|p| p["name"] != "limit" && p["name"] != "cursor");
    }
    let params = parameters();
    let Some(Value::Object(paths)) = doc.pointer_mut("/paths") else { return };
    for (path, item) in paths.iter_mut() {
        let Value::Object(ops) = item else { continue };
        for op in ops.values_mut() {
            let Some(Value::Array(list)) = op.get_mut("parameters") else { continue };
            for p in list.iter_mut().filter(|p| p["in"] == "header" && p["name"] == "Idempotency-Key") {
                // A header is text or absent, never JSON null.
                if let Some(s) = p.get_mut("schema") {
                    *s = json!({"type": "string", "pattern": "^[!-~]{1,255}$"});
                }
            }
            for p in list.iter_mut().filter(|p| p["in"] == "query") {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                for (_, _, bounds) in params.iter().filter(|(at, n, _)| *n == name && (*at == "*" || at == path)) {
                    if let (Some(Value::Object(s)), Value::Object(b)) = (p.get_mut("schema"), bounds) {
                        s.extend(b.clone());
                    }
                }
            }
        }
    }
}

/// `PATCH /v1/alert-thresholds` takes any of the thresholds: the `Thresholds` schema with none
/// required and no other field.
fn thresholds_patch(doc: &mut Value) {
    let Some(mut patch) = doc.pointer("/components/schemas/Thresholds").cloned() else { return };
    if let Value::Object(o) = &mut patch {
        o.remove("required");
        o.insert("additionalProperties".into(), json!(false));
        o.insert("description".into(), json!("Any of the thresholds; the others keep their values."));
    }
    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        schemas.insert("ThresholdsPatch".into(), patch);
    }
    if let Some(body) =
        doc.pointer_mut("/paths/~1v1~1alert-thresholds/patch/requestBody/content/application~1json/schema")
    {
        *body = json!({"$ref": "#/components/schemas/ThresholdsPatch"});
    }
}

/// Every entry names a property or parameter the document has (a renamed field cannot leave
/// its bounds behind unnoticed).
#[must_use]
pub fn unmatched(doc: &Value) -> Vec<String> {
    let mut missing: Vec<String> = fields()
        .into_iter()
        .filter(|(s, p, _)| doc.pointer(&format!("/components/schemas/{s}/properties/{p}")).is_none())
        .map(|(s, p, _)| format!("{s}.{p}"))
        .collect();
    let names: Vec<String> = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.iter())
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flat_map(|ops| ops.values()).flat_map(move |op| {
                op["parameters"].as_array().into_iter().flatten().map(move |p| format!("{path} {}", p["name"]))
            })
        })
        .collect();
    for (at, name, _) in parameters() {
        let found = names
            .iter()
            .any(|n| n.ends_with(&format!(" \"{name}\"")) && (at == "*" || n.starts_with(&format!("{at} "))));
        if !found {
            missing.push(format!("{at} ?{name}"));
        }
    }
    missing
}

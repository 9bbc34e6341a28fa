//! Request and response bodies of the management API, as documented in the OpenAPI document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::KeyState;
use crate::domain::input::{Credits, RateLimit, Refill, RefillInterval};
use crate::http::errors::FieldError;
use crate::http::json::double_option;
use crate::store::entities::{api, consumer, key};

/// `{limit, window_seconds}`: at most `limit` verifications per window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    pub limit: u32,
    pub window_seconds: u32,
}

impl RateLimitBody {
    pub fn check(self, field: &str, errors: &mut Vec<FieldError>) -> Option<RateLimit> {
        RateLimit { limit: self.limit, window_seconds: self.window_seconds }
            .check()
            .map_err(|(f, m)| errors.push(FieldError { field: format!("{field}.{f}"), message: m.into() }))
            .ok()
    }
}

impl From<RateLimitBody> for RateLimit {
    fn from(r: RateLimitBody) -> Self {
        Self { limit: r.limit, window_seconds: r.window_seconds }
    }
}

impl From<RateLimit> for RateLimitBody {
    fn from(r: RateLimit) -> Self {
        Self { limit: r.limit, window_seconds: r.window_seconds }
    }
}

/// A credit balance and its optional refill.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditsBody {
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<RefillBody>,
}

/// Back to `amount` every `interval`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillBody {
    /// `daily` or `monthly`.
    #[schema(value_type = String)]
    pub interval: RefillInterval,
    pub amount: u64,
}

impl From<CreditsBody> for Credits {
    fn from(c: CreditsBody) -> Self {
        Self { remaining: c.remaining, refill: c.refill.map(|r| Refill { interval: r.interval, amount: r.amount }) }
    }
}

impl From<Credits> for CreditsBody {
    fn from(c: Credits) -> Self {
        Self { remaining: c.remaining, refill: c.refill.map(|r| RefillBody { interval: r.interval, amount: r.amount }) }
    }
}

/// An API: a keyspace with its own key prefix.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiView {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    /// `live` or `test`.
    pub environment: String,
    pub scope_catalogue: Vec<String>,
    pub default_ratelimit: Option<RateLimitBody>,
    /// What a reported leak of one of this API's keys does.
    pub leak_policy: LeakPolicy,
    /// How long an access token for one of its keys lives (`POST /v1/oauth/token`).
    pub token_ttl_seconds: i64,
    /// The meter event of the team's own Stripe account this API's verifications are reported
    /// to (null: not reported).
    pub stripe_meter_event: Option<String>,
    /// How `/v1/gateway/auth` reads requests for this API.
    pub gateway: crate::domain::gateway::GatewayConfig,
    /// Verification also accepts imported keys of a foreign format (no Keyroll head or checksum).
    pub legacy_key_formats: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a leak reported by a secret scanner does to the key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakPolicy {
    /// `notify` (events and email only), `rotate` (a new version; the leaked one keeps working
    /// for `grace_seconds`, then stops), or `revoke` (refused at once).
    pub action: String,
    /// With `rotate`: 0 to 86400 seconds (default 900).
    #[serde(default)]
    pub grace_seconds: Option<i64>,
}

impl From<api::Model> for ApiView {
    fn from(a: api::Model) -> Self {
        Self {
            id: a.id,
            name: a.name,
            key_prefix: a.key_prefix,
            environment: a.environment,
            scope_catalogue: serde_json::from_value(a.scope_catalogue).unwrap_or_default(),
            default_ratelimit: a
                .default_ratelimit
                .and_then(|v| serde_json::from_value::<RateLimit>(v).ok())
                .map(Into::into),
            leak_policy: LeakPolicy { action: a.leak_action, grace_seconds: Some(a.leak_grace_seconds) },
            token_ttl_seconds: a.token_ttl_seconds,
            stripe_meter_event: a.stripe_meter_event,
            gateway: a.gateway.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
            legacy_key_formats: a.legacy_key_formats,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A consumer: one of the provider's customers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerView {
    pub id: String,
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub meta: Value,
    /// The team's own Stripe customer for this consumer: its verifications are reported to
    /// that customer's meter.
    pub stripe_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<consumer::Model> for ConsumerView {
    fn from(c: consumer::Model) -> Self {
        Self {
            id: c.id,
            external_id: c.external_id,
            name: c.name,
            email: c.email,
            meta: c.meta,
            stripe_customer_id: c.stripe_customer_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One key version. Never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub api_id: String,
    pub consumer_id: Option<String>,
    pub lineage_id: String,
    pub version: i32,
    pub name: Option<String>,
    /// The head and first four random characters, for display.
    pub start: String,
    pub scopes: Vec<String>,
    pub meta: Value,
    pub enabled: bool,
    /// `valid`, `superseded`, `expired`, `disabled` or `revoked`, derived now.
    pub state: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub ratelimit: Option<RateLimitBody>,
    pub credits: Option<CreditsBody>,
    pub ip_allowlist: Option<Vec<String>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<key::Model> for KeyView {
    fn from(k: key::Model) -> Self {
        let times = crate::domain::KeyTimes {
            revoked_at: k.revoked_at,
            enabled: k.enabled,
            expires_at: k.expires_at,
            grace_ends_at: k.grace_ends_at,
        };
        Self {
            state: KeyState::derive(&times, Utc::now()).as_str().to_owned(),
            id: k.id,
            api_id: k.api_id,
            consumer_id: k.consumer_id,
            lineage_id: k.lineage_id,
            version: k.version,
            name: k.name,
            start: k.start,
            scopes: serde_json::from_value(k.scopes).unwrap_or_default(),
            meta: k.meta,
            enabled: k.enabled,
            expires_at: k.expires_at,
            grace_ends_at: k.grace_ends_at,
            superseded_at: k.superseded_at,
            revoked_at: k.revoked_at,
            revoked_reason: k.revoked_reason,
            last_used_at: k.last_used_at,
            ratelimit: k.ratelimit.and_then(|v| serde_json::from_value::<RateLimit>(v).ok()).map(Into::into),
            credits: k.credits.and_then(|v| serde_json::from_value::<Credits>(v).ok()).map(Into::into),
            ip_allowlist: k.ip_allowlist.and_then(|v| serde_json::from_value(v).ok()),
            created_by: k.created_by,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

/// A new key and its secret: the only time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    pub secret: String,
}

macro_rules! list_of {
    ($name:ident, $item:ty) => {
        /// A page of results; pass `next_cursor` as `?cursor=` for the next one.
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            pub data: Vec<$item>,
            pub next_cursor: Option<String>,
        }

        impl $name {
            pub fn from_page<M>(page: crate::store::Page<M>) -> Self
            where
                $item: From<M>,
            {
                Self { data: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }
            }
        }
    };
}

list_of!(ApiList, ApiView);
list_of!(ConsumerList, ConsumerView);
list_of!(KeyList, KeyView);

/// `POST /v1/apis`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApi {
    pub name: String,
    /// `[a-z][a-z0-9]{1,11}`, the start of every key of this API.
    pub key_prefix: String,
    /// `live` or `test`.
    pub environment: String,
    /// Scopes keys of this API may carry; empty allows any.
    #[serde(default)]
    pub scope_catalogue: Vec<String>,
}

/// `PATCH /v1/apis/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchApi {
    pub name: Option<String>,
    pub scope_catalogue: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<RateLimitBody>)]
    pub default_ratelimit: Option<Option<RateLimitBody>>,
    pub leak_policy: Option<LeakPolicy>,
    /// How long access tokens for its keys live: 60 to 900 seconds.
    pub token_ttl_seconds: Option<i64>,
    /// The meter event (of the team's own Stripe account, see `/v1/billing/stripe-connection`)
    /// this API's verifications are reported to, per consumer and hour; null stops reporting.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub stripe_meter_event: Option<Option<String>>,
    /// How `/v1/gateway/auth` reads requests for this API: `{"header": "x-api-key", "routes":
    /// [{"method": "GET", "path_prefix": "/orders", "scopes": ["orders:read"]}]}`; null goes back
    /// to the defaults (`Authorization: Bearer`, no routes).
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<crate::domain::gateway::GatewayConfig>)]
    pub gateway: Option<Option<crate::domain::gateway::GatewayConfig>>,
    /// `true`: verification also accepts keys of a foreign format imported into this API
    /// (`POST /v1/keys/import`). Keys with a Keyroll head are still checked for their checksum.
    pub legacy_key_formats: Option<bool>,
}

/// `POST /v1/consumers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConsumer {
    /// Your own id for this customer, unique in the tenant.
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub meta: Option<Value>,
    /// The team's own Stripe customer (`cus_…`) the consumer's verifications are billed to.
    pub stripe_customer_id: Option<String>,
}

/// `PATCH /v1/consumers/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConsumer {
    pub external_id: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    pub meta: Option<Value>,
    /// The team's own Stripe customer (`cus_…`); null clears it.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub stripe_customer_id: Option<Option<String>>,
}

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub api_id: String,
    pub consumer_id: String,
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Value>,
    pub expires_at: Option<DateTime<Utc>>,
    pub enabled: Option<bool>,
    pub ratelimit: Option<RateLimitBody>,
    pub credits: Option<CreditsBody>,
    pub ip_allowlist: Option<Vec<String>>,
}

/// `PATCH /v1/keys/{id}`; `null` clears a nullable field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    pub meta: Option<Value>,
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<RateLimitBody>)]
    pub ratelimit: Option<Option<RateLimitBody>>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<CreditsBody>)]
    pub credits: Option<Option<CreditsBody>>,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<Vec<String>>)]
    pub ip_allowlist: Option<Option<Vec<String>>>,
}

/// `POST /v1/keys/{id}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    /// Why, for the audit trail (1 to 500 characters).
    pub reason: String,
}

/// `POST /v1/root-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRootKey {
    pub name: Option<String>,
    /// Management scopes, or `*`.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub use crate::app::Checks;

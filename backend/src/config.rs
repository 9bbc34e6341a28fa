//! Layered, typed configuration: defaults → optional `keyroll.toml` → `KEYROLL_*` environment
//! (`__` for nesting, `_FILE` suffix to read a secret from a file). Validated once at start-up;
//! every error names the variable.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use cache::CacheSettings;
use redis_url::RedisOptions;
pub use redis_url::redis_seeds;

/// What went wrong with the configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Who may create a team at `/signup` once the install has its first team (the first-run form
/// always works on an empty install; a team's own invitations work in every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignupPolicy {
    /// Anyone who can reach the install (a hosted service).
    Open,
    /// Only with a single-use sign-up link from `keyroll tenant invite-link`.
    Invite,
    /// Nobody: new teams come from `keyroll tenant create` (the default of a self-hosted install).
    Closed,
}

impl SignupPolicy {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Invite => "invite",
            Self::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Raw {
    listen: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
    redis_url: Option<String>,
    redis_url_file: Option<PathBuf>,
    redis_prefix: String,
    redis: RedisOptions,
    public_url: Option<String>,
    node_url: Option<String>,
    smtp_url: Option<String>,
    smtp_url_file: Option<PathBuf>,
    smtp_from: String,
    master_key: Option<String>,
    master_key_file: Option<PathBuf>,
    log_format: String,
    workers: Option<usize>,
    database_max_connections: u32,
    cache: CacheSettings,
    usage_flush_interval_ms: u64,
    drain_seconds: u64,
    trusted_proxies: String,
    migrate_on_start: bool,
    jobs: JobSettings,
    rotation: RotationSettings,
    notify: NotifySettings,
    webhooks: WebhookSettings,
    audit: AuditSettings,
    usage: UsageSettings,
    leak: LeakSettings,
    signup: String,
    billing: crate::billing::RawBilling,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_url_file: None,
            redis_url: None,
            redis_url_file: None,
            redis_prefix: String::new(),
            redis: RedisOptions::default(),
            public_url: None,
            node_url: None,
            smtp_url: None,
            smtp_url_file: None,
            smtp_from: "Keyroll <keyroll@localhost>".into(),
            master_key: None,
            master_key_file: None,
            log_format: "pretty".into(),
            workers: None,
            database_max_connections: 20,
            cache: CacheSettings::default(),
            usage_flush_interval_ms: 5_000,
            drain_seconds: 5,
            trusted_proxies: String::new(),
            migrate_on_start: true,
            jobs: JobSettings::default(),
            rotation: RotationSettings::default(),
            notify: NotifySettings::default(),
            webhooks: WebhookSettings::default(),
            audit: AuditSettings::default(),
            usage: UsageSettings::default(),
            leak: LeakSettings::default(),
            signup: "closed".into(),
            billing: crate::billing::RawBilling::default(),
        }
    }
}

/// Leak reports from secret scanners.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LeakSettings {
    /// GitHub's secret-scanning public keys, as GitHub publishes them
    /// (`{"public_keys":[{"key_identifier":…,"key":"-----BEGIN PUBLIC KEY-----…"}]}`).
    pub github_public_keys: Option<String>,
    /// The same, read from a file.
    pub github_public_keys_file: Option<PathBuf>,
    /// The `whsec_…` secret other scanners sign their reports with (Standard Webhooks).
    pub intake_secret: Option<String>,
}

/// The audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    /// Entries older than this many days are removed, unless a tenant chose otherwise.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { retention_days: 365 }
    }
}

/// How long verification counts are kept, per bucket size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageSettings {
    pub minute_retention_days: u32,
    pub hour_retention_days: u32,
    pub day_retention_days: u32,
    /// Counting verifications (default on). Off, nothing is counted: usage, charts, anomaly
    /// alerts and drain-aware retirement see no traffic. It exists to measure what counting costs.
    pub counting: bool,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self { minute_retention_days: 7, hour_retention_days: 90, day_retention_days: 760, counting: true }
    }
}

/// Where webhooks may go.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Allow endpoints on loopback, private, link-local and other non-public addresses
    /// (`KEYROLL_WEBHOOKS__ALLOW_PRIVATE=true`): for self-hosted installs whose receivers are on
    /// the same network. Off, no tenant can make Keyroll call into its own network.
    pub allow_private: bool,
}

/// Webhook and email delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySettings {
    /// How often the delivery worker looks for due deliveries.
    pub poll_ms: u64,
    /// The first retry delay; later ones grow (×60, ×360, ×1440, ×3600, ×7200 …).
    pub retry_base_ms: u64,
    /// Attempts before a delivery is given up.
    pub max_attempts: i32,
    /// How long one webhook call may take.
    pub timeout_ms: u64,
    /// An endpoint is disabled once this many deliveries in a row were given up…
    pub disable_after_failures: i32,
    /// …and it has been failing for this long without a success.
    pub disable_after_hours: i64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            poll_ms: 500,
            retry_base_ms: 5_000,
            max_attempts: 10,
            timeout_ms: 10_000,
            disable_after_failures: 5,
            disable_after_hours: 72,
        }
    }
}

/// The durable job worker that runs on every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    /// How often an idle worker looks for due jobs.
    pub poll_ms: u64,
    /// How long a claimed job stays leased without a heartbeat before another node may take it.
    pub lease_ms: u64,
    /// How often periodic work (rotation sweeps) is scheduled.
    pub tick_ms: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self { poll_ms: 500, lease_ms: 30_000, tick_ms: 10_000 }
    }
}

/// Drain-aware retirement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationSettings {
    /// How long the old version must have been silent before `when_drained` retires it.
    pub quiet_period_seconds: u64,
    /// `when_drained` never retires before this much of the overlap has passed.
    pub min_overlap_seconds: u64,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self { quiet_period_seconds: 3_600, min_overlap_seconds: 1_800 }
    }
}

impl RotationSettings {
    /// The quiet period as a duration.
    #[must_use]
    pub fn quiet(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.quiet_period_seconds).unwrap_or(i64::MAX / 1_000))
    }

    /// The minimum overlap as a duration.
    #[must_use]
    pub fn min_overlap(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.min_overlap_seconds).unwrap_or(i64::MAX / 1_000))
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    /// One Redis, or with `redis_cluster` the seed nodes of a cluster, comma-separated.
    pub redis_url: Option<SecretString>,
    pub redis_prefix: String,
    pub redis_cluster: bool,
    pub public_url: Option<String>,
    /// Where the other nodes reach this one (playbook runs probe every live node); by default
    /// `http://` and the listening address, with `127.0.0.1` for an unspecified one.
    pub node_url: Option<String>,
    pub smtp_url: Option<SecretString>,
    pub smtp_from: String,
    /// Seals secrets at rest (new keys awaiting pickup). On SQLite one is made under the data
    /// directory when none is given; nodes sharing PostgreSQL must all be given the same one.
    pub master_key: Option<SecretString>,
    pub log_format: LogFormat,
    pub workers: Option<usize>,
    pub database_max_connections: u32,
    pub cache: CacheSettings,
    pub usage_flush_interval_ms: u64,
    /// On SIGTERM or SIGINT: how long the node keeps serving after `/readyz` turns 503, while
    /// load balancers take it out.
    pub drain_seconds: u64,
    /// Peers whose `Forwarded`/`X-Forwarded-For`/`X-Real-IP` name the client (none by default).
    pub trusted_proxies: crate::domain::net::TrustedProxies,
    /// Apply pending migrations at start-up (`false` when `keyroll migrate` runs first, as a
    /// Kubernetes Job does; the node then refuses to start on a schema that is behind).
    pub migrate_on_start: bool,
    pub jobs: JobSettings,
    pub rotation: RotationSettings,
    pub notify: NotifySettings,
    pub webhooks: WebhookSettings,
    pub audit: AuditSettings,
    pub usage: UsageSettings,
    pub leak: LeakSettings,
    pub signup: SignupPolicy,
    /// GitHub's secret-scanning keys by identifier, parsed once at start-up.
    pub github_keys: Vec<(String, p256::ecdsa::VerifyingKey)>,
    /// Billing through Stripe; `None` (off) without a Stripe secret key.
    pub billing: Option<crate::billing::BillingSettings>,
    /// Stripe's API address (`[billing] stripe_api_base`), also for the teams' own Stripe
    /// accounts that bill their consumers, billing on or off.
    pub stripe_api_base: String,
}

impl Settings {
    /// Where users reach Keyroll: the public URL, else `http://` and the address served on
    /// (with the port actually bound, and `127.0.0.1` for an unspecified address).
    #[must_use]
    pub fn base_url(&self, bound_port: u16) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let ip =
                    if self.listen.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { self.listen.ip() };
                format!("http://{}", SocketAddr::new(ip, bound_port))
            }
        }
    }

    /// Reads defaults, `keyroll.toml` in the working directory (or `KEYROLL_CONFIG`), and the
    /// environment.
    ///
    /// # Errors
    /// A message naming the setting that is missing or wrong.
    pub fn load() -> Result<Self, ConfigError> {
        let file = std::env::var("KEYROLL_CONFIG").unwrap_or_else(|_| "keyroll.toml".into());
        Self::from_figment(
            Figment::from(Serialized::defaults(Raw::default()))
                .merge(Toml::file(file))
                .merge(Env::prefixed("KEYROLL_").split("__")),
        )
    }

    /// Defaults overlaid with the given values (for tests and tools).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Raw::default()));
        for (k, v) in pairs {
            // Parsed as environment values are: "5" is a number, "true" a boolean.
            let value = v.parse::<figment::value::Value>().unwrap_or_else(|_| v.into());
            fig = fig.merge(Serialized::default(k, value));
        }
        Self::from_figment(fig)
    }

    fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let raw: Raw = fig.extract().map_err(|e| {
            let key = e.path.join("__").to_uppercase();
            let name = if key.is_empty() { String::new() } else { format!("KEYROLL_{key}: ") };
            ConfigError(format!("{name}{}", e.kind))
        })?;
        let listen = parse_listen(&raw.listen).ok_or_else(|| {
            ConfigError(format!("KEYROLL_LISTEN: {:?} is not an address like 127.0.0.1:8080 or :0", raw.listen))
        })?;
        let log_format = match raw.log_format.as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError(format!("KEYROLL_LOG_FORMAT: {other:?} is not one of pretty, json")));
            }
        };
        let signup = match raw.signup.as_str() {
            "open" => SignupPolicy::Open,
            "invite" => SignupPolicy::Invite,
            "closed" => SignupPolicy::Closed,
            other => {
                return Err(ConfigError(format!("KEYROLL_SIGNUP: {other:?} is not one of open, invite, closed")));
            }
        };
        let database_url = secret_or_file("KEYROLL_DATABASE_URL", raw.database_url, raw.database_url_file.as_deref())?
            .unwrap_or_else(|| {
                let path = raw.data_dir.join("keyroll.db");
                format!("sqlite://{}?mode=rwc", path.display())
            });
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "KEYROLL_DATABASE_URL: must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        let redis_url = secret_or_file("KEYROLL_REDIS_URL", raw.redis_url, raw.redis_url_file.as_deref())?;
        if let Some(u) = &redis_url {
            redis_url::check(u, raw.redis.cluster)?;
        }
        let smtp_url = secret_or_file("KEYROLL_SMTP_URL", raw.smtp_url, raw.smtp_url_file.as_deref())?;
        let master_key = secret_or_file("KEYROLL_MASTER_KEY", raw.master_key, raw.master_key_file.as_deref())?;
        if let Some(k) = &master_key {
            crate::crypto::SealKey::from_base64(k).map_err(|m| ConfigError(format!("KEYROLL_MASTER_KEY: {m}")))?;
        }
        if let Some(u) = &smtp_url
            && !(u.starts_with("smtp://") || u.starts_with("smtps://"))
        {
            return Err(ConfigError("KEYROLL_SMTP_URL: must start with smtp:// or smtps://".into()));
        }
        if let Some(u) = &raw.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError("KEYROLL_PUBLIC_URL: must start with http:// or https://".into()));
        }
        if let Some(u) = &raw.node_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError("KEYROLL_NODE_URL: must start with http:// or https://".into()));
        }
        let u = raw.usage;
        if u.minute_retention_days == 0
            || u.hour_retention_days < u.minute_retention_days
            || u.day_retention_days < u.hour_retention_days
        {
            return Err(ConfigError(
                "KEYROLL_USAGE__*_RETENTION_DAYS: minute ≥ 1, and hour and day retention each at least the one before"
                    .into(),
            ));
        }
        if raw.workers == Some(0) {
            return Err(ConfigError("KEYROLL_WORKERS: must be at least 1".into()));
        }
        if raw.database_max_connections == 0 {
            return Err(ConfigError("KEYROLL_DATABASE_MAX_CONNECTIONS: must be at least 1".into()));
        }
        if raw.cache.client_ttl_seconds > 300 {
            return Err(ConfigError("KEYROLL_CACHE__CLIENT_TTL_SECONDS: must be at most 300".into()));
        }
        if raw.cache.l1_capacity == 0 {
            return Err(ConfigError("KEYROLL_CACHE__L1_CAPACITY: must be at least 1".into()));
        }
        if raw.smtp_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError("KEYROLL_SMTP_FROM: must be an address like Keyroll <keys@example.com>".into()));
        }
        if raw.notify.max_attempts < 1 || raw.notify.retry_base_ms < 10 {
            return Err(ConfigError(
                "KEYROLL_NOTIFY__MAX_ATTEMPTS and KEYROLL_NOTIFY__RETRY_BASE_MS: must be positive".into(),
            ));
        }
        if raw.jobs.poll_ms < 10 || raw.jobs.tick_ms < 10 {
            return Err(ConfigError("KEYROLL_JOBS__POLL_MS and KEYROLL_JOBS__TICK_MS: must be at least 10".into()));
        }
        if raw.jobs.lease_ms < 300 {
            return Err(ConfigError("KEYROLL_JOBS__LEASE_MS: must be at least 300".into()));
        }
        let github_keys = github_keys(&raw.leak)?;
        let billing = {
            let b = &raw.billing;
            let key = secret_or_file(
                "KEYROLL_BILLING__STRIPE_SECRET_KEY",
                b.stripe_secret_key.clone(),
                b.stripe_secret_key_file.as_deref(),
            )?;
            let hook = secret_or_file(
                "KEYROLL_BILLING__STRIPE_WEBHOOK_SECRET",
                b.stripe_webhook_secret.clone(),
                b.stripe_webhook_secret_file.as_deref(),
            )?;
            crate::billing::BillingSettings::from_raw(raw.billing.clone(), key, hook).map_err(ConfigError)?
        };
        let stripe_api_base = crate::billing::api_base(&raw.billing.stripe_api_base).map_err(ConfigError)?;
        if raw.leak.intake_secret.as_deref().is_some_and(|s| standardwebhooks::Webhook::new(s).is_err()) {
            return Err(ConfigError("KEYROLL_LEAK__INTAKE_SECRET: must be a whsec_… secret (base64)".into()));
        }
        if raw.audit.retention_days == 0 {
            return Err(ConfigError("KEYROLL_AUDIT__RETENTION_DAYS: must be at least 1".into()));
        }
        let trusted_proxies = crate::domain::net::TrustedProxies::parse(&raw.trusted_proxies)
            .map_err(|m| ConfigError(format!("KEYROLL_TRUSTED_PROXIES: {m}")))?;
        if raw.drain_seconds > 300 {
            return Err(ConfigError("KEYROLL_DRAIN_SECONDS: must be at most 300".into()));
        }
        if raw.usage_flush_interval_ms < 10 {
            return Err(ConfigError("KEYROLL_USAGE_FLUSH_INTERVAL_MS: must be at least 10".into()));
        }
        Ok(Self {
            listen,
            data_dir: raw.data_dir,
            database_url: SecretString::from(database_url),
            redis_url: redis_url.map(SecretString::from),
            redis_prefix: raw.redis_prefix,
            redis_cluster: raw.redis.cluster,
            public_url: raw.public_url,
            node_url: raw.node_url,
            smtp_url: smtp_url.map(SecretString::from),
            smtp_from: raw.smtp_from,
            master_key: master_key.map(SecretString::from),
            log_format,
            signup,
            workers: raw.workers,
            database_max_connections: raw.database_max_connections,
            cache: raw.cache,
            usage_flush_interval_ms: raw.usage_flush_interval_ms,
            drain_seconds: raw.drain_seconds,
            trusted_proxies,
            migrate_on_start: raw.migrate_on_start,
            jobs: raw.jobs,
            rotation: raw.rotation,
            notify: raw.notify,
            webhooks: raw.webhooks,
            audit: raw.audit,
            usage: raw.usage,
            github_keys,
            billing,
            stripe_api_base,
            leak: raw.leak,
        })
    }

    #[must_use]
    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

/// GitHub's key document, from the setting or its file; every key must be a P-256 public key.
fn github_keys(leak: &LeakSettings) -> Result<Vec<(String, p256::ecdsa::VerifyingKey)>, ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        public_keys: Vec<Key>,
    }
    #[derive(Deserialize)]
    struct Key {
        key_identifier: String,
        key: String,
    }
    let text = match (&leak.github_public_keys, &leak.github_public_keys_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("KEYROLL_LEAK__GITHUB_PUBLIC_KEYS_FILE: {}: {e}", path.display())))?,
        (None, None) => return Ok(Vec::new()),
    };
    let doc: Doc = serde_json::from_str(&text)
        .map_err(|e| ConfigError(format!("KEYROLL_LEAK__GITHUB_PUBLIC_KEYS: not GitHub's key document: {e}")))?;
    doc.public_keys
        .into_iter()
        .map(|k| {
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&k.key).map_err(|e| {
                ConfigError(format!(
                    "KEYROLL_LEAK__GITHUB_PUBLIC_KEYS: {} is not a P-256 public key: {e}",
                    k.key_identifier
                ))
            })?;
            Ok((k.key_identifier, key))
        })
        .collect()
}

/// `127.0.0.1:8080`, `[::1]:8080`, or `:0` / `:8080` for 127.0.0.1.
fn parse_listen(s: &str) -> Option<SocketAddr> {
    if let Some(port) = s.strip_prefix(':') {
        return port.parse::<u16>().ok().map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    }
    s.parse().ok()
}

fn secret_or_file(name: &str, value: Option<String>, file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| ConfigError(format!("{name}_FILE: cannot read {} ({e})", path.display()))),
        (None, None) => Ok(None),
    }
}

mod cache;
mod redis_url;
#[cfg(test)]
mod tests;

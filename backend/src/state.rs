//! What every handler shares.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::cache::KeyCache;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::verify::usage::UsageCounter;

/// Shared application state (cheap to clone: everything is behind `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub cache: Arc<KeyCache>,
    pub usage: Arc<UsageCounter>,
    /// Rate-limit counts kept in process (without Redis, or while it is away).
    pub limiter: Arc<crate::verify::limits::RateLimiter>,
    /// Credit balances spent in Redis and not yet written to the database.
    pub credits: Arc<crate::verify::credits::CreditLedger>,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    pub node_id: Arc<str>,
    /// Set when the node is shutting down: `/readyz` answers 503 and no new job is claimed.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// What another node must present to probe this one (registered in `nodes`).
    pub probe_token: Arc<str>,
    /// Seals secrets at rest; `None` when no master key is configured (multi-node without one).
    pub master_key: Option<Arc<crate::crypto::SealKey>>,
    /// The tenants' token signing keys, held open on this node.
    pub keyring: Arc<crate::tokens::Keyring>,
    /// Each API's gateway rules, held on this node.
    pub gateways: Arc<crate::verify::gateway::GatewayRules>,
    pub legacy: Arc<crate::verify::legacy::LegacyFormats>,
    /// Where users reach Keyroll: `KEYROLL_PUBLIC_URL`, else this node's own address.
    pub base_url: Arc<str>,
    /// Keyroll's Stripe client; `None` with billing off (nothing contacts Stripe).
    pub stripe: Option<Arc<crate::billing::stripe::Stripe>>,
}

impl AppState {
    /// The state of a command run on the server (`keyroll tenant create`, …): the database, a
    /// cache of its own that no other node hears of, no usage counting and no master key.
    #[must_use]
    pub fn standalone(settings: Settings, db: DatabaseConnection) -> Self {
        let metrics = Arc::new(Metrics::new(false));
        Self {
            db,
            cache: Arc::new(KeyCache::new(&settings.cache, None, metrics.clone())),
            usage: Arc::new(UsageCounter::off()),
            limiter: Arc::default(),
            credits: Arc::default(),
            metrics,
            node_id: Arc::from("cli"),
            draining: Arc::default(),
            probe_token: Arc::from(""),
            keyring: Arc::default(),
            gateways: Arc::default(),
            legacy: Arc::default(),
            base_url: Arc::from(settings.base_url(settings.listen.port())),
            stripe: settings.billing.as_ref().map(|b| Arc::new(crate::billing::stripe::Stripe::new(b))),
            settings: Arc::new(settings),
            master_key: None,
        }
    }
}

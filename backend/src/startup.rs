//! Builds the application: database, caches, background tasks, and the HTTP server bound to its
//! own listener (port 0 works), so tests build exactly what `main` runs.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use secrecy::ExposeSecret;

use crate::cache::redis_tier::RedisTier;
use crate::cache::{KeyCache, bus};
use crate::config::Settings;
use crate::http;
use crate::http::request_id::RequestIds;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store;
use crate::verify::usage::UsageCounter;

/// A built, bound, not yet running application.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The usage and credit flusher, stopped between two flushes (never aborted midway, which
    /// would lose the counts it had taken), and what tells it to stop.
    flusher: (tokio::task::JoinHandle<()>, Arc<tokio::sync::Notify>),
}

impl Application {
    /// Connects, migrates, starts the cache bus and the usage flusher, and binds the listener.
    ///
    /// # Errors
    /// When the database, Redis or the listen address cannot be used; the message says which.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // One TLS provider for every outgoing connection (webhooks); a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = store::connect(&settings.database_url, settings.database_max_connections)
            .await
            .context("cannot open the database (KEYROLL_DATABASE_URL)")?;
        if settings.migrate_on_start {
            store::migrate(&db).await.context("database migrations failed")?;
        } else {
            let pending = store::pending_migrations(&db).await.context("cannot read the applied migrations")?;
            anyhow::ensure!(
                pending == 0,
                "the database lacks {pending} migrations: run `keyroll migrate` first (KEYROLL_MIGRATE_ON_START is false)"
            );
        }
        let metrics = Arc::new(Metrics::new(settings.redis_url.is_some()));
        let mut tasks = Vec::new();

        let bus_clients = settings
            .redis_url
            .as_ref()
            .map(|u| crate::cache::redis_conn::bus_clients(u.expose_secret()))
            .transpose()
            .context("KEYROLL_REDIS_URL is not a usable Redis address")?;
        let l2 = match &settings.redis_url {
            Some(url) => {
                let conn = crate::cache::redis_conn::RedisConn::connect(url.expose_secret(), settings.redis_cluster)
                    .await
                    .context("cannot connect to Redis (KEYROLL_REDIS_URL)")?;
                Some(RedisTier::new(
                    conn,
                    &settings.redis_prefix,
                    settings.cache.l2_ttl_seconds,
                    Duration::from_millis(settings.cache.l2_timeout_ms),
                ))
            }
            None => None,
        };
        let cache = Arc::new(KeyCache::new(&settings.cache, l2, metrics.clone()));
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(clients) = bus_clients {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let bus = bus::run(clients, settings.redis_prefix.clone(), cache.clone(), tx, subscribed.clone());
            tasks.push(tokio::spawn(bus));
            if tokio::time::timeout(Duration::from_secs(5), rx).await.is_err() {
                tracing::warn!("the invalidation bus is not subscribed yet; serving without Redis meanwhile");
            }
        }
        // Every node tails the invalidation log: the durable path of every change, which also
        // decides when Redis is trusted again after a fault.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tail = crate::cache::tail::run(
            db.clone(),
            cache.clone(),
            Duration::from_millis(settings.cache.tail_ms.clamp(20, 10_000)),
            Duration::from_secs(settings.cache.l2_ttl_seconds),
            subscribed,
            tx,
        );
        tasks.push(tokio::spawn(tail));
        if tokio::time::timeout(Duration::from_secs(5), rx).await.is_err() {
            tracing::warn!("the invalidation log cannot be read yet; serving with short cache lifetimes");
        }

        let master_key = master_key(&settings)?;
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {} (KEYROLL_LISTEN)", settings.listen))?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let usage = Arc::new(if settings.usage.counting { UsageCounter::default() } else { UsageCounter::off() });
        let state = AppState {
            db,
            cache,
            usage,
            limiter: Arc::default(),
            credits: Arc::default(),
            metrics,
            node_id: Arc::from(crate::domain::RequestId::generate().as_str().replacen("req_", "node_", 1)),
            draining: Arc::default(),
            probe_token: Arc::from(crate::playbooks::nodes::new_token()),
            keyring: Arc::default(),
            gateways: Arc::default(),
            legacy: Arc::default(),
            base_url: Arc::from(settings.base_url(port)),
            stripe: settings.billing.as_ref().map(|b| Arc::new(crate::billing::stripe::Stripe::new(b))),
            settings: Arc::new(settings),
            master_key,
        };
        let stop_flushing = Arc::new(tokio::sync::Notify::new());
        let flusher = (tokio::spawn(flush_loop(state.clone(), Arc::clone(&stop_flushing))), stop_flushing);
        tasks.push(tokio::spawn(crate::jobs::run_worker(state.clone())));
        tasks.push(tokio::spawn(crate::jobs::run_scheduler(state.clone())));
        tasks.push(tokio::spawn(crate::jobs::deliver::run(state.clone())));

        let node_url = state.settings.node_url.clone().unwrap_or_else(|| {
            let ip = if bound.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { bound.ip() };
            format!("http://{}", std::net::SocketAddr::new(ip, port))
        });
        crate::playbooks::nodes::register(&state, &node_url).await.context("cannot register this node")?;
        tasks.push(tokio::spawn(crate::playbooks::nodes::heartbeat_loop(state.clone(), node_url)));
        let data = web::Data::new(state.clone());
        let throttle = web::Data::new(http::web::session::Throttle::default());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(throttle.clone())
                .app_data(web::PayloadConfig::new(http::json::MAX_BODY))
                .app_data(web::FormConfig::default().error_handler(http::body_deadline::form_error))
                .wrap(RequestIds)
                .configure(http::routes)
        })
        .shutdown_timeout(10)
        // SIGTERM and SIGINT are handled by `drain_on_signals`: the node drains before it stops.
        .disable_signals();
        if let Some(w) = state.settings.workers {
            server = server.workers(w);
        }
        let server = server.listen(listener)?.run();
        Ok(Self { port, server, state, tasks, flusher })
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the server gracefully (for tests and signals).
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// On SIGTERM or SIGINT: `/readyz` answers 503 at once and no new job is claimed; the node
    /// keeps serving for the drain period while load balancers take it out, then stops,
    /// finishing the requests in flight ([`Application::run_until_stopped`] does the rest).
    pub fn drain_on_signals(&self) {
        let (state, handle) = (self.state.clone(), self.handle());
        tokio::spawn(async move {
            let signal = shutdown_signal().await;
            drain(&state, &handle, signal).await;
        });
    }

    /// Serves until stopped, then leaves the node registry and flushes the last usage counts.
    /// After a drain ([`drain`]) it first gives back the jobs it was running, so another node
    /// takes them at once rather than after the lease.
    ///
    /// # Errors
    /// I/O errors of the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for t in &self.tasks {
            t.abort();
        }
        let (flusher, stop) = self.flusher;
        stop.notify_one();
        if let Err(e) = flusher.await {
            tracing::warn!(error = %e, "the usage flusher ended abnormally");
        }
        if self.state.draining.load(std::sync::atomic::Ordering::SeqCst) {
            match crate::store::jobs::release(&self.state.db, &self.state.node_id).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "released the leases of unfinished jobs"),
                Err(e) => tracing::warn!(error = %e, "could not release this node's job leases"),
            }
        }
        crate::playbooks::nodes::deregister(&self.state).await;
        if let Err(e) = self.state.usage.flush(&self.state.db).await {
            tracing::warn!(error = %e, "could not flush the last usage counts");
        }
        if let Err(e) = self.state.credits.flush(&self.state.cache, &self.state.db).await {
            tracing::warn!(error = %e, "could not write the last credit spends");
        }
        result
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C) and says which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// Turns the node unready, waits the drain period, then stops the server gracefully.
pub async fn drain(state: &AppState, handle: &ServerHandle, why: &str) {
    state.draining.store(true, std::sync::atomic::Ordering::SeqCst);
    let wait = std::time::Duration::from_secs(state.settings.drain_seconds);
    tracing::info!(signal = why, drain_seconds = wait.as_secs(), "draining: /readyz answers 503, then the node stops");
    tokio::time::sleep(wait).await;
    handle.stop(true).await;
}

/// The configured master key or, on the embedded SQLite default, one kept under the data
/// directory (made on first start).
fn master_key(settings: &Settings) -> anyhow::Result<Option<Arc<crate::crypto::SealKey>>> {
    use crate::crypto::SealKey;
    if let Some(k) = &settings.master_key {
        let key = SealKey::from_base64(k.expose_secret()).map_err(|m| anyhow::anyhow!("KEYROLL_MASTER_KEY: {m}"))?;
        return Ok(Some(Arc::new(key)));
    }
    if !settings.is_sqlite() {
        tracing::warn!("no KEYROLL_MASTER_KEY: rotation policies cannot hold new keys for pickup");
        return Ok(None);
    }
    let path = settings.data_dir.join("master.key");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => {
            std::fs::create_dir_all(&settings.data_dir)?;
            let fresh = SealKey::generate_base64();
            write_private(&path, &fresh).with_context(|| format!("cannot write {}", path.display()))?;
            fresh
        }
    };
    let key = SealKey::from_base64(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    Ok(Some(Arc::new(key)))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

/// Writes usage counts and credit spends every flush interval, until told to stop (between two
/// flushes: the last one is written by the shutdown).
async fn flush_loop(state: AppState, stop: Arc<tokio::sync::Notify>) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.settings.usage_flush_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.notified() => return,
        }
        if let Err(e) = state.usage.flush(&state.db).await {
            tracing::warn!(error = %e, "usage flush failed; those counts are lost");
        }
        if let Err(e) = state.credits.flush(&state.cache, &state.db).await {
            tracing::warn!(error = %e, "credit spends not written yet; tried again at the next flush");
        }
    }
}

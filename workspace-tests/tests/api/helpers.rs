//! `spawn_app()`: the real application on port 0 with a fresh database — SQLite always, and
//! PostgreSQL + Redis when `KEYROLL_TEST_DATABASE_URL` / `KEYROLL_TEST_REDIS_URL` are set.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keyroll::config::Settings;
use keyroll::startup::Application;
use keyroll::state::AppState;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// Where a test app keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file, in-process cache only.
    Sqlite,
    /// PostgreSQL (a fresh database) and Redis (a fresh key prefix).
    Services,
}

pub fn require_services() -> bool {
    std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The PostgreSQL and Redis URLs, or why they are not available. With
/// `KEYROLL_TEST_REQUIRE_SERVICES=1` a missing service fails the test instead.
pub fn services() -> Option<(String, String)> {
    let db = std::env::var("KEYROLL_TEST_DATABASE_URL").ok().filter(|s| !s.is_empty());
    let redis = std::env::var("KEYROLL_TEST_REDIS_URL").ok().filter(|s| !s.is_empty());
    match (db, redis) {
        (Some(d), Some(r)) => Some((d, r)),
        (d, r) => {
            let missing = [("KEYROLL_TEST_DATABASE_URL", d.is_none()), ("KEYROLL_TEST_REDIS_URL", r.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and ");
            assert!(!require_services(), "KEYROLL_TEST_REQUIRE_SERVICES=1 but {missing} is not set");
            eprintln!("skipping the PostgreSQL + Redis variant: {missing} not set");
            None
        }
    }
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub handle: actix_web::dev::ServerHandle,
    _data_dir: Option<TempDir>,
    pub shared: Shared,
}

/// What two nodes of one install share.
#[derive(Debug, Clone)]
pub struct Shared {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// The PostgreSQL database of the install, dropped with its last handle.
    #[expect(dead_code, reason = "held for its drop")]
    pub database: Option<Arc<TestDatabase>>,
}

/// A PostgreSQL database made for one test, dropped when the last handle on it goes (the test's
/// nodes and their `Shared`), so that runs do not pile databases up. A failed test's database is
/// kept for a look, and named on stderr; [`sweep_stale_databases`] drops it some hours later.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the database {} of a failed test", self.name);
            return;
        }
        // A drop runs inside the test's runtime, which cannot be blocked on: the statement runs
        // on a thread and runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = Database::connect(admin_url.as_str()).await?;
                let dropped = drop_database(&admin, &name).await;
                admin.close().await.ok();
                dropped
            })
            .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the test database {}: the dropping thread panicked", self.name),
        }
    }
}

/// Drops a database, closing what is still connected to it (nodes of the test still running).
async fn drop_database(admin: &sea_orm::DatabaseConnection, name: &str) -> Result<(), sea_orm::DbErr> {
    // Quoted: a listed name is only known to start like ours (the parse of its UUID takes braces
    // and hyphens too).
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.map(|_| ())
}

/// How long a test database may be left before a later run drops it (ms): longer than any run.
const STALE_AFTER_MS: i64 = 6 * 3_600_000;

/// Drops the test databases earlier runs left behind (failed tests, killed runs) once they are
/// older than [`STALE_AFTER_MS`], read from the UUIDv7 in their names. Once per test process.
async fn sweep_stale_databases(admin: &sea_orm::DatabaseConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            r"SELECT datname FROM pg_database WHERE datname LIKE 'kr\_test\_%'",
        ))
        .await;
    let names: Vec<String> = match rows {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get::<String>("", "datname").ok()).collect(),
        Err(e) => {
            eprintln!("could not list earlier test databases: {e}");
            return;
        }
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    for name in names {
        if made_at_ms(&name).is_some_and(|at| now_ms - at > STALE_AFTER_MS)
            && let Err(e) = drop_database(admin, &name).await
        {
            eprintln!("could not drop the stale test database {name}: {e}");
        }
    }
}

/// When a test database was made: the millisecond timestamp of the UUIDv7 in `kr_test_{uuid}`.
fn made_at_ms(name: &str) -> Option<i64> {
    let id = uuid::Uuid::parse_str(name.strip_prefix("kr_test_")?).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)?.timestamp_millis())
}

/// A temporary directory removed on drop.
pub struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            keyroll::telemetry::init(keyroll::config::LogFormat::Pretty);
        }
    });
}

/// Creates what a fresh install of `backend` needs and returns it, or `None` to skip.
pub async fn fresh(backend: Backend) -> Option<(Shared, Option<TempDir>)> {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("keyroll-test-{}", unique()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite://{}/keyroll.db?mode=rwc", dir.display());
            Some((
                Shared { database_url: url, redis_url: None, redis_prefix: String::new(), database: None },
                Some(TempDir(dir)),
            ))
        }
        Backend::Services => {
            let (base, redis) = services()?;
            let name = format!("kr_test_{}", unique());
            let admin = Database::connect(base.as_str()).await.expect("connect to KEYROLL_TEST_DATABASE_URL");
            sweep_stale_databases(&admin).await;
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
            admin.close().await.ok();
            let (head, _) = base.rsplit_once('/').expect("database url with a database name");
            let url = format!("{head}/{name}");
            let database = Some(Arc::new(TestDatabase { admin_url: base, name }));
            Some((
                Shared {
                    database_url: url,
                    redis_url: Some(redis),
                    redis_prefix: format!("kr_test_{}:", unique()),
                    database,
                },
                None,
            ))
        }
    }
}

/// Spawns one node of an install.
pub async fn spawn_node(shared: &Shared, dir: Option<TempDir>) -> TestApp {
    spawn_node_with(shared, dir, &[]).await
}

/// Spawns one node with extra settings (`("jobs.lease_ms", "600")`).
pub async fn spawn_node_with(shared: &Shared, dir: Option<TempDir>, extra: &[(&str, &str)]) -> TestApp {
    init_logs();
    let flush = "100".to_owned();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("listen", "127.0.0.1:0"),
        ("database_url", &shared.database_url),
        ("usage_flush_interval_ms", &flush),
        ("workers", "2"),
        ("database_max_connections", "5"),
        // Test receivers listen on loopback; the refusal is tested with this switched off.
        ("webhooks.allow_private", "true"),
        // Tests sign up several teams; the policies themselves are tested in `signup.rs`.
        ("signup", "open"),
        // Nothing in a test reaches Stripe: a team's own Stripe account (connected through the
        // API) would be reached here, where nothing listens. Billing tests point it at a
        // stand-in.
        ("billing.stripe_api_base", "http://127.0.0.1:9"),
    ];
    if let Some(r) = &shared.redis_url {
        // Nodes of one install share a master key (SQLite keeps its own under the data dir).
        pairs.push(("master_key", "a2V5cm9sbC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM="));
        pairs.push(("redis_url", r));
        pairs.push(("redis_prefix", &shared.redis_prefix));
    }
    pairs.extend_from_slice(extra);
    let settings = Settings::from_pairs(pairs).expect("test settings");
    let app = Application::build(settings).await.expect("application builds");
    let port = app.port();
    let state = app.state().clone();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client"),
        state,
        handle,
        _data_dir: dir,
        shared: shared.clone(),
    }
}

/// A fresh single-node install, or `None` when the backend is not available (reason printed).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let (shared, dir) = fresh(backend).await?;
    Some(spawn_node(&shared, dir).await)
}

/// A tenant and its root key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub root: String,
}

/// A key made through the API.
#[derive(Debug, Clone)]
pub struct Made {
    pub api_id: String,
    pub consumer_id: String,
    pub key_id: String,
    pub secret: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `PATCH /v1/keys/{key_id}` with `body`, as the tenant's root key.
    pub async fn patch_key(&self, root: &str, key_id: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, &format!("/v1/keys/{key_id}"), root, Some(body)).await
    }

    /// Waits until the node has heard its own invalidations back: from the log (its tail has
    /// applied every entry written so far) and, with Redis, from the bus a moment later. Until
    /// then a record it caches may be dropped once more.
    pub async fn heard_own_invalidations(&self) {
        let logged = keyroll::store::invalidations::last_seq(&self.state.db).await.expect("log");
        let started = std::time::Instant::now();
        while self.state.cache.tail_position() < logged {
            assert!(started.elapsed() < Duration::from_secs(30), "the log tail does not move");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.shared.redis_url.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        let email = format!("ops@{}.test", name.to_lowercase());
        let created = keyroll::app::tenants::create(&self.state, name, &email, keyroll::app::tenants::Via::Cli)
            .await
            .expect("tenant created");
        Tenant { id: created.tenant.id, root: created.root_key.expose().to_owned() }
    }

    /// Sends JSON with a root key; returns status and parsed body (`Value::Null` when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, root: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(root);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, root: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, root, Some(body)).await
    }

    pub async fn get(&self, path: &str, root: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, root, None).await
    }

    pub async fn verify(&self, body: Value) -> Value {
        let res = self.client.post(self.url("/v1/verify")).json(&body).send().await.expect("verify sent");
        assert_eq!(res.status().as_u16(), 200, "verify of {body} should answer 200");
        res.json().await.expect("verify json")
    }

    pub async fn verify_code(&self, key: &str) -> String {
        self.verify(json!({"key": key})).await["code"].as_str().unwrap_or_default().to_owned()
    }

    /// An API, a consumer and a key with `extra` fields.
    pub async fn make_key(&self, t: &Tenant, prefix: &str, extra: Value) -> Made {
        let (st, api) = self
            .post("/v1/apis", &t.root, json!({"name": "Orders", "key_prefix": prefix, "environment": "live"}))
            .await;
        let api_id = if st == 201 {
            api["id"].as_str().expect("api id").to_owned()
        } else {
            // The prefix exists already in this tenant: reuse that API.
            let (_, list) = self.get("/v1/apis?limit=100", &t.root).await;
            list["data"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["key_prefix"] == prefix))
                .and_then(|x| x["id"].as_str())
                .expect("api exists")
                .to_owned()
        };
        let (st, con) = self
            .post("/v1/consumers", &t.root, json!({"external_id": format!("cus_{}", unique()), "name": "Bob"}))
            .await;
        assert_eq!(st, 201, "{con}");
        let consumer_id = con["id"].as_str().expect("consumer id").to_owned();
        let mut body = json!({"api_id": api_id, "consumer_id": consumer_id, "name": "prod", "scopes": ["orders:*"]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (st, k) = self.post("/v1/keys", &t.root, body).await;
        assert_eq!(st, 201, "{k}");
        Made {
            api_id,
            consumer_id,
            key_id: k["key"]["id"].as_str().expect("key id").to_owned(),
            secret: k["secret"].as_str().expect("secret").to_owned(),
        }
    }
}

/// Moves one of a key's times (`created_at`, `expires_at`) in the database, as time passing
/// would: the API refuses a past expiry, and a schedule waits for days.
pub async fn set_key_time(
    app: &TestApp,
    key_id: &str,
    column: keyroll::store::entities::key::Column,
    at: chrono::DateTime<chrono::Utc>,
) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    keyroll::store::entities::key::Entity::update_many()
        .col_expr(column, sea_orm::sea_query::Expr::value(at))
        .filter(keyroll::store::entities::key::Column::Id.eq(key_id))
        .exec(&app.state.db)
        .await
        .expect("key time set");
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server without waiting; the runtime ends with the test anyway.
        drop(self.handle.stop(false));
    }
}

/// Runs a test body once per backend: always on SQLite, and on PostgreSQL + Redis when set.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await {
                    $body(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Services).await {
                    $body(app).await;
                }
            }
        }
    };
}

/// One flushed count of verifications, as the nodes write them.
pub fn usage_count(
    at: chrono::DateTime<chrono::Utc>,
    key: &str,
    tenant: &str,
    code: &'static str,
    n: i64,
) -> keyroll::store::usage::UsageCount {
    keyroll::store::usage::UsageCount {
        bucket_start: at,
        key_id: key.to_owned(),
        tenant_id: tenant.to_owned(),
        code,
        count: n,
    }
}

/// `n` verifications of `secret` at once, every other one on each node.
pub async fn verify_on_both(a: &TestApp, b: &TestApp, secret: &str, n: usize) -> Vec<serde_json::Value> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let node = if i % 2 == 0 { a } else { b };
        let (client, url, body) = (node.client.clone(), node.url("/v1/verify"), json!({"key": secret}));
        calls
            .spawn(async move { client.post(url).json(&body).send().await.expect("sent").json().await.expect("json") });
    }
    calls.join_all().await
}

/// Rate-limit windows are fixed, aligned to the epoch: calls meant to fall in one window of
/// `window_seconds` start at least 5 s before its end (a pair straddling the end would pass twice).
pub async fn clear_of_window_end(window_seconds: u64) {
    let window_ms = u128::from(window_seconds.max(1)) * 1_000;
    let into =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()) % window_ms;
    let left = window_ms - into;
    if left < 5_000 {
        tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(5_000) + 50)).await;
    }
}

#[test]
fn a_test_database_is_dated_by_its_name() {
    let name = format!("kr_test_{}", unique());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let made = made_at_ms(&name).expect("a date");
    assert!(now_ms.abs_diff(made) < 5_000, "{made} against {now_ms}");
    // 2026-12-06T00:00:00Z, the layout of a UUIDv7.
    assert_eq!(made_at_ms("kr_test_01a248a67c0070008000000000000000"), Some(1_796_515_200_000));
    assert_eq!(made_at_ms("kr_test_not-a-uuid"), None);
    assert_eq!(made_at_ms("kr_roll_01a248a67c0070008000000000000000"), None);
}

/// The sweep lists names as stored: one with upper-case letters (a UUID may be written so) is
/// dropped by that name, not by the lower-case one PostgreSQL folds an unquoted name to.
#[tokio::test]
async fn a_listed_database_is_dropped_by_its_stored_name() {
    let Some((base, _)) = services() else { return };
    let admin = Database::connect(base.as_str()).await.expect("connect to KEYROLL_TEST_DATABASE_URL");
    let name = format!("kr_test_{}", unique().to_uppercase());
    admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.expect("create a database");
    let listed = |admin: &sea_orm::DatabaseConnection| {
        let sql = format!("SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'");
        let admin = admin.clone();
        async move {
            let row = admin
                .query_one_raw(sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql))
                .await
                .expect("list databases")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("a count")
        }
    };
    assert_eq!(listed(&admin).await, 1);
    drop_database(&admin, &name).await.expect("dropped");
    assert_eq!(listed(&admin).await, 0, "{name} is still there");
    admin.close().await.ok();
}

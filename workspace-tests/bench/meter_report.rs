//! How long reporting one closed hour to Stripe's meter takes for many teams, on PostgreSQL,
//! against the recording Stripe stand-in (`interop/stripe_recorder.py`, on loopback): the
//! database part read per team, one query each (the first way it was written), against one
//! grouped read; then the whole pass (grouped read and the meter events, 16 in flight).
//!
//! `cargo bench -p workspace-tests --bench meter_report`; BENCH_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test) names a server where a scratch database is made and
//! dropped; BENCH_TENANTS (default 10000).

use std::io::BufRead;
use std::time::Instant;

use chrono::{DurationRound, TimeDelta, Utc};
use keyroll::app::billing::meter;
use keyroll::domain::TenantId;
use sea_orm::{ConnectionTrait, Database};

#[tokio::main]
async fn main() {
    let base = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let n: usize = std::env::var("BENCH_TENANTS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/stripe_recorder.py");
    let mut recorder = std::process::Command::new("python3")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(recorder.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    let stripe = format!("http://127.0.0.1:{}", line.trim());

    let name = format!("kr_bench_meter_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(base.as_str()).await.expect("connect to BENCH_DATABASE_URL");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let (head, _) = base.rsplit_once('/').expect("a database url");
    let db = Database::connect(format!("{head}/{name}").as_str()).await.expect("connect");
    keyroll::store::migrate(&db).await.expect("migrate");
    let hour = (Utc::now() - TimeDelta::hours(2)).duration_trunc(TimeDelta::hours(1)).expect("hour");
    let at = hour + TimeDelta::minutes(7);
    // n teams with a Stripe customer, each with one key used 3 times (2 accepted, 1 rejected)
    // in the hour, written as the flushes would.
    db.execute_unprepared(&format!(
        "INSERT INTO tenants (id, name, slug, plan, settings, created_at) \
         SELECT 'ten_bench' || g, 'Team ' || g, 'team-' || g, 'free', '{{}}', now() FROM generate_series(1, {n}) g; \
         INSERT INTO billing_accounts (tenant_id, stripe_customer_id, subscription_status, notice_level, updated_at) \
         SELECT 'ten_bench' || g, 'cus_bench' || g, 'none', 0, now() FROM generate_series(1, {n}) g; \
         INSERT INTO usage_rollups (bucket_start, granularity, key_id, code, tenant_id, count) \
         SELECT '{at}'::timestamptz, 'minute', 'key_bench' || g, c.code, 'ten_bench' || g, c.n \
         FROM generate_series(1, {n}) g, (VALUES ('VALID', 2), ('REVOKED', 1)) AS c(code, n);",
        at = at.to_rfc3339()
    ))
    .await
    .expect("teams and counts");
    let settings = keyroll::config::Settings::from_pairs([
        ("billing.stripe_secret_key", "sk_test_bench"),
        ("billing.stripe_api_base", stripe.as_str()),
        ("billing.plans.free.name", "Free"),
    ])
    .expect("settings");
    let state = keyroll::state::AppState::standalone(settings, db.clone());
    let end = hour + TimeDelta::hours(1);

    let started = Instant::now();
    let mut per_team = 0;
    for i in 1..=n {
        let t = TenantId::from_trusted(format!("ten_bench{i}"));
        per_team += keyroll::store::billed_usage::tenant_total(&db, &t, hour, end).await.expect("total");
    }
    let one_by_one = started.elapsed();
    let started = Instant::now();
    let grouped: u64 =
        keyroll::store::billed_usage::tenant_totals(&db, hour, end).await.expect("totals").values().sum();
    let grouped_time = started.elapsed();
    assert_eq!(per_team, grouped, "both reads count the same");

    keyroll::store::usage::mark(&db, meter::MARK, hour).await.expect("mark");
    let started = Instant::now();
    let sent = meter::report(&state, end + TimeDelta::minutes(5)).await.expect("report");
    let pass = started.elapsed();
    assert_eq!(sent, n, "one event per team");
    println!(
        "{n} teams, one hour: read one query per team {:.2} s, one grouped read {:.3} s ({:.0}x); \
         the whole pass (grouped read and {sent} meter events, 16 in flight, to a loopback stand-in) {:.2} s",
        one_by_one.as_secs_f64(),
        grouped_time.as_secs_f64(),
        one_by_one.as_secs_f64() / grouped_time.as_secs_f64().max(1e-9),
        pass.as_secs_f64()
    );
    let _ = recorder.kill();
    let _ = recorder.wait();
    db.close().await.ok();
    admin.execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)")).await.ok();
}

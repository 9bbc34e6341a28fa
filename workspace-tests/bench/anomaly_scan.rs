//! How long the anomaly detector takes to read one minute in which many keys were used, on
//! PostgreSQL: the first minute (baselines created) and the next (baselines updated).
//!
//! `cargo bench -p workspace-tests --bench anomaly_scan`; BENCH_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/test) names a server where a scratch database is made and
//! dropped; BENCH_KEYS (default 20000, comma-separated for several sizes).

use std::time::Instant;

use chrono::{DurationRound, TimeDelta, Utc};
use keyroll::alerts::scan;
use keyroll::store::usage::{UsageCount, add_minute_counts};
use sea_orm::{ConnectionTrait, Database};

#[tokio::main]
async fn main() {
    let base = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let sizes: Vec<usize> = std::env::var("BENCH_KEYS")
        .unwrap_or_else(|_| "20000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in sizes {
        let name = format!("kr_bench_scan_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(base.as_str()).await.expect("connect to BENCH_DATABASE_URL");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let (head, _) = base.rsplit_once('/').expect("a database url");
        let db = Database::connect(format!("{head}/{name}").as_str()).await.expect("connect");
        keyroll::store::migrate(&db).await.expect("migrate");
        let settings = keyroll::config::Settings::from_pairs([]).expect("default settings");
        let state = keyroll::state::AppState::standalone(settings, db.clone());
        let t = keyroll::app::tenants::create(&state, "Bench", "ops@bench.test", keyroll::app::tenants::Via::Cli)
            .await
            .expect("tenant");
        let first = (Utc::now() - TimeDelta::minutes(10)).duration_trunc(TimeDelta::minutes(1)).expect("minute");
        for minute in [first, first + TimeDelta::minutes(1)] {
            let mut cells = Vec::with_capacity(2 * n);
            for i in 0..n {
                let key_id = format!("key_{i:026}");
                for (code, count) in [("VALID", 10 + i64::try_from(i % 7).unwrap_or(0)), ("INSUFFICIENT_SCOPE", 1)] {
                    cells.push(UsageCount {
                        bucket_start: minute,
                        key_id: key_id.clone(),
                        tenant_id: t.tenant.id.clone(),
                        code,
                        count,
                    });
                }
            }
            add_minute_counts(&db, cells).await.expect("counts");
        }
        scan::set_mark(&db, first.timestamp() / 60).await.expect("mark");
        let mut times = Vec::new();
        for closed in [first + TimeDelta::minutes(1), first + TimeDelta::minutes(2)] {
            // `run` reads the minutes before the one `now` falls in, less the settling time.
            let now = closed + TimeDelta::seconds(30);
            let started = Instant::now();
            let read = scan::run(&db, now, TimeDelta::seconds(5)).await.expect("scan");
            times.push((read, started.elapsed()));
        }
        println!(
            "{n} keys used in a minute: first minute read in {:.2} s (baselines created), next in {:.2} s \
             (baselines updated)",
            times[0].1.as_secs_f64(),
            times[1].1.as_secs_f64()
        );
        assert_eq!((times[0].0, times[1].0), (1, 1), "one minute each");
        db.close().await.ok();
        admin.execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)")).await.ok();
    }
}

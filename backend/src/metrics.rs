//! Platform metrics in Prometheus text format. Plain atomics: the verify path only increments.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::code::Code;

/// Upper bounds of the verify latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// Which cache answered.
#[derive(Debug, Clone, Copy)]
pub enum CacheTier {
    L1,
    L2,
    Database,
}

/// Counters of one node.
pub struct Metrics {
    verify: [AtomicU64; 10],
    /// Per outcome code: the histogram's buckets and the sum of durations.
    latency: [[AtomicU64; BUCKETS.len() + 1]; 10],
    latency_sum_nanos: [AtomicU64; 10],
    cache: [[AtomicU64; 2]; 3],
    /// -1: no Redis configured; 0: down; 1: up.
    redis_up: AtomicI64,
}

impl Metrics {
    #[must_use]
    pub fn new(redis_configured: bool) -> Self {
        Self {
            verify: Default::default(),
            latency: Default::default(),
            latency_sum_nanos: Default::default(),
            cache: Default::default(),
            redis_up: AtomicI64::new(if redis_configured { 0 } else { -1 }),
        }
    }

    pub fn verified(&self, code: Code, took: Duration) {
        self.verify[code.index()].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.latency[code.index()][bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos[code.index()].fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn cache_lookup(&self, tier: CacheTier, hit: bool) {
        self.cache[tier as usize][usize::from(hit)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(i64::from(up), Ordering::Relaxed);
    }

    #[must_use]
    pub fn verify_count(&self, code: Code) -> u64 {
        self.verify[code.index()].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP keyroll_verify_requests_total Verifications by outcome code.\n");
        out.push_str("# TYPE keyroll_verify_requests_total counter\n");
        for code in Code::ALL {
            let _ = writeln!(
                out,
                "keyroll_verify_requests_total{{code=\"{}\"}} {}",
                code.as_str(),
                self.verify_count(code)
            );
        }
        out.push_str("# HELP keyroll_verify_duration_seconds Time to answer a verification, by outcome code.\n");
        out.push_str("# TYPE keyroll_verify_duration_seconds histogram\n");
        for code in Code::ALL {
            let (name, i) = (code.as_str(), code.index());
            let mut cumulative = 0;
            for (b, bound) in BUCKETS.iter().enumerate() {
                cumulative += self.latency[i][b].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "keyroll_verify_duration_seconds_bucket{{code=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += self.latency[i][BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(out, "keyroll_verify_duration_seconds_bucket{{code=\"{name}\",le=\"+Inf\"}} {cumulative}");
            #[expect(clippy::cast_precision_loss, reason = "a sum of nanoseconds, shown as seconds")]
            let sum = self.latency_sum_nanos[i].load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "keyroll_verify_duration_seconds_sum{{code=\"{name}\"}} {sum}");
            let _ = writeln!(out, "keyroll_verify_duration_seconds_count{{code=\"{name}\"}} {cumulative}");
        }
        out.push_str("# HELP keyroll_cache_lookups_total Key cache lookups by tier and result.\n");
        out.push_str("# TYPE keyroll_cache_lookups_total counter\n");
        for (tier, name) in [(CacheTier::L1, "l1"), (CacheTier::L2, "l2"), (CacheTier::Database, "database")] {
            for (hit, result) in [(true, "hit"), (false, "miss")] {
                let n = self.cache[tier as usize][usize::from(hit)].load(Ordering::Relaxed);
                let _ = writeln!(out, "keyroll_cache_lookups_total{{tier=\"{name}\",result=\"{result}\"}} {n}");
            }
        }
        let up = self.redis_up.load(Ordering::Relaxed);
        if up >= 0 {
            out.push_str("# HELP keyroll_redis_up Whether the invalidation bus is connected.\n");
            out.push_str("# TYPE keyroll_redis_up gauge\n");
            let _ = writeln!(out, "keyroll_redis_up {up}");
        }
        out
    }
}

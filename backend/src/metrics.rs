//! Platform metrics in Prometheus text format. Plain atomics, striped by thread: the verify path
//! only increments.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
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

/// Stripes of counters: each thread counts in one, so the verify path's increments on two
/// cores do not pass the same cache lines back and forth. Reading sums the stripes.
const STRIPES: usize = 8;

/// One stripe, on cache lines of its own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    verify: [AtomicU64; 10],
    /// Per outcome code: the histogram's buckets and the sum of durations.
    latency: [[AtomicU64; BUCKETS.len() + 1]; 10],
    latency_sum_nanos: [AtomicU64; 10],
    cache: [[AtomicU64; 2]; 3],
}

/// The stripe of the current thread: threads take stripes in turn as they first count.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|i| *i)
}

/// Counters of one node.
pub struct Metrics {
    stripes: Box<[Stripe; STRIPES]>,
    /// -1: no Redis configured; 0: down; 1: up.
    redis_up: AtomicI64,
}

impl Metrics {
    #[must_use]
    pub fn new(redis_configured: bool) -> Self {
        Self { stripes: Box::default(), redis_up: AtomicI64::new(if redis_configured { 0 } else { -1 }) }
    }

    fn mine(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    fn sum(&self, counter: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().map(|s| counter(s).load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }

    pub fn verified(&self, code: Code, took: Duration) {
        let s = self.mine();
        s.verify[code.index()].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        s.latency[code.index()][bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        s.latency_sum_nanos[code.index()].fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn cache_lookup(&self, tier: CacheTier, hit: bool) {
        self.mine().cache[tier as usize][usize::from(hit)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(i64::from(up), Ordering::Relaxed);
    }

    #[must_use]
    pub fn verify_count(&self, code: Code) -> u64 {
        self.sum(|s| &s.verify[code.index()])
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
                cumulative += self.sum(|s| &s.latency[i][b]);
                let _ = writeln!(
                    out,
                    "keyroll_verify_duration_seconds_bucket{{code=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += self.sum(|s| &s.latency[i][BUCKETS.len()]);
            let _ = writeln!(out, "keyroll_verify_duration_seconds_bucket{{code=\"{name}\",le=\"+Inf\"}} {cumulative}");
            #[expect(clippy::cast_precision_loss, reason = "a sum of nanoseconds, shown as seconds")]
            let sum = self.sum(|s| &s.latency_sum_nanos[i]) as f64 / 1e9;
            let _ = writeln!(out, "keyroll_verify_duration_seconds_sum{{code=\"{name}\"}} {sum}");
            let _ = writeln!(out, "keyroll_verify_duration_seconds_count{{code=\"{name}\"}} {cumulative}");
        }
        out.push_str("# HELP keyroll_cache_lookups_total Key cache lookups by tier and result.\n");
        out.push_str("# TYPE keyroll_cache_lookups_total counter\n");
        for (tier, name) in [(CacheTier::L1, "l1"), (CacheTier::L2, "l2"), (CacheTier::Database, "database")] {
            for (hit, result) in [(true, "hit"), (false, "miss")] {
                let n = self.sum(|s| &s.cache[tier as usize][usize::from(hit)]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_every_thread_are_summed() {
        let m = std::sync::Arc::new(Metrics::new(false));
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.verified(Code::Valid, Duration::from_micros(70));
                        m.cache_lookup(CacheTier::L1, true);
                    }
                    m.verified(Code::Revoked, Duration::from_secs(2));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread");
        }
        let n = u64::try_from(STRIPES + 3).expect("small");
        assert_eq!(m.verify_count(Code::Valid), 100 * n);
        assert_eq!(m.verify_count(Code::Revoked), n);
        let text = m.render();
        for line in [
            format!("keyroll_verify_requests_total{{code=\"VALID\"}} {}", 100 * n),
            "keyroll_verify_duration_seconds_bucket{code=\"VALID\",le=\"0.00005\"} 0".to_owned(),
            format!("keyroll_verify_duration_seconds_bucket{{code=\"VALID\",le=\"0.0001\"}} {}", 100 * n),
            "keyroll_verify_duration_seconds_bucket{code=\"REVOKED\",le=\"0.5\"} 0".to_owned(),
            format!("keyroll_verify_duration_seconds_bucket{{code=\"REVOKED\",le=\"+Inf\"}} {n}"),
            format!("keyroll_verify_duration_seconds_sum{{code=\"REVOKED\"}} {}", 2 * n),
            format!("keyroll_cache_lookups_total{{tier=\"l1\",result=\"hit\"}} {}", 100 * n),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("keyroll_redis_up"));
    }
}

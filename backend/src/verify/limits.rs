//! Per-key rate limits on the verify path: `limit` verifications per fixed window of
//! `window_seconds`, counted in Redis with one atomic script per verification when Redis is
//! configured (every node shares the count), and in process otherwise (exact on one node). When
//! Redis does not answer, the node counts on its own until it does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::cache::KeyCache;
use crate::domain::input::RateLimit;

/// What a rate limit says about one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateVerdict {
    pub allowed: bool,
    pub limit: u32,
    /// Verifications left in this window after this one.
    pub remaining: u32,
    /// When the window ends (Unix milliseconds).
    pub reset_at_ms: i64,
    /// The window's first refusal (exactly one verification per window is).
    pub first_refusal: bool,
}

/// Counts kept in process: per key, the window and its count.
#[derive(Debug, Default)]
pub struct RateLimiter {
    local: Mutex<HashMap<Arc<str>, (i64, u64)>>,
}

/// Entries kept in process before stale windows are dropped.
const LOCAL_ENTRIES: usize = 100_000;

impl RateLimiter {
    /// Counts one verification of `key_id` and says whether it is within the limit.
    pub async fn hit(&self, cache: &KeyCache, key_id: &Arc<str>, rl: RateLimit, now_ms: i64) -> RateVerdict {
        let window_ms = i64::from(rl.window_seconds.max(1)) * 1_000;
        let window = now_ms.div_euclid(window_ms);
        let reset_at_ms = (window + 1) * window_ms;
        let count = match cache.live_l2() {
            Some(redis) => match redis.count_in_window(key_id, window, window_ms).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "rate limit counted in process while Redis is away");
                    cache.l2_failed(&e);
                    self.count_locally(key_id, window)
                }
            },
            None => self.count_locally(key_id, window),
        };
        let limit = u64::from(rl.limit);
        RateVerdict {
            allowed: count <= limit,
            limit: rl.limit,
            remaining: u32::try_from(limit.saturating_sub(count)).unwrap_or(0),
            reset_at_ms,
            first_refusal: count == limit + 1,
        }
    }

    fn count_locally(&self, key_id: &Arc<str>, window: i64) -> u64 {
        let mut map = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= LOCAL_ENTRIES && !map.contains_key(key_id) {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(Arc::clone(key_id)).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_within_a_window_and_starts_again_in_the_next() {
        let limiter = RateLimiter::default();
        let metrics = Arc::new(crate::metrics::Metrics::new(false));
        let cache = KeyCache::new(&crate::config::CacheSettings::default(), None, metrics);
        let key: Arc<str> = Arc::from("key_a");
        let rl = RateLimit { limit: 2, window_seconds: 10 };
        let at = 1_000_000_i64;
        let a = limiter.hit(&cache, &key, rl, at).await;
        let b = limiter.hit(&cache, &key, rl, at + 1).await;
        let c = limiter.hit(&cache, &key, rl, at + 2).await;
        assert_eq!((a.allowed, a.remaining), (true, 1));
        assert_eq!((b.allowed, b.remaining), (true, 0));
        assert_eq!((c.allowed, c.remaining), (false, 0));
        assert_eq!(a.reset_at_ms, 1_010_000);
        let next = limiter.hit(&cache, &key, rl, 1_010_000).await;
        assert_eq!((next.allowed, next.remaining), (true, 1));
        let other = limiter.hit(&cache, &Arc::from("key_b"), rl, at).await;
        assert!(other.allowed, "keys are counted apart");
    }
}

//! The invalidation bus: a task that stays subscribed to `keyroll:invalidate` and drops what it
//! hears from L1 — the fast path. While it is disconnected Redis is not trusted (messages may be
//! lost); the log tail carries every invalidation meanwhile and, once the bus is back, purges L2
//! before Redis is used again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::KeyCache;
use super::redis_tier::RedisTier;
use crate::domain::KeyHash;

/// Runs until the process ends. With several clients (the seed nodes of a cluster, where a
/// message published on any node reaches every node's subscribers) a lost subscription is
/// made again through the next.
pub async fn run(
    clients: Vec<redis::Client>,
    prefix: String,
    cache: Arc<KeyCache>,
    ready: tokio::sync::oneshot::Sender<()>,
    subscribed: Arc<AtomicBool>,
) {
    let channel = RedisTier::channel(&prefix);
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    let mut turn = 0_usize;
    loop {
        let Some(client) = clients.get(turn % clients.len().max(1)) else { return };
        turn = turn.wrapping_add(1);
        match subscribe(client, &channel).await {
            Ok(mut pubsub) => {
                // Redis is trusted again at the tail's next probe, after its purge.
                subscribed.store(true, Ordering::Release);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                backoff = Duration::from_millis(50);
                tracing::info!("invalidation bus subscribed");
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    let hashes: Vec<KeyHash> = payload.split(' ').filter_map(KeyHash::from_hex).collect();
                    cache.drop_local(&hashes);
                }
                tracing::warn!("invalidation bus disconnected; serving with short cache lifetimes");
            }
            Err(e) => tracing::warn!(error = %e, "invalidation bus cannot subscribe; retrying"),
        }
        subscribed.store(false, Ordering::Release);
        cache.bus_down();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

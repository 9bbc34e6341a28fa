//! L2: key records in Redis, shared by every node, with tombstones against stale fills.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::redis_conn::RedisConn;

use crate::domain::KeyHash;
use crate::store::keys::KeyRecordData;

/// How long a tombstone blocks fills after a mutation: far longer than any read takes.
const TOMBSTONE_SECONDS: u64 = 10;

/// The Redis side of the key cache.
#[derive(Clone)]
pub struct RedisTier {
    /// Replaced as a whole when a cluster's topology has to be read again.
    conn: Arc<RwLock<RedisConn>>,
    /// A cluster's client, to connect again from the seed nodes.
    cluster: Option<Arc<redis::cluster::ClusterClient>>,
    prefix: Arc<str>,
    ttl_seconds: u64,
    timeout: Duration,
    /// Shared: a clone (one per round of credit spends) copies no script.
    scripts: Arc<Scripts>,
}

struct Scripts {
    fill: Script,
    window: Script,
}

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
    #[error("unreadable cached record: {0}")]
    Decode(#[from] serde_json::Error),
}

impl RedisTier {
    #[must_use]
    pub fn new(
        (conn, cluster): (RedisConn, Option<redis::cluster::ClusterClient>),
        prefix: &str,
        ttl_seconds: u64,
        timeout: Duration,
    ) -> Self {
        Self {
            conn: Arc::new(RwLock::new(conn)),
            cluster: cluster.map(Arc::new),
            prefix: Arc::from(prefix),
            ttl_seconds,
            timeout,
            scripts: Arc::new(Scripts {
                // Set the record only while no tombstone stands next to it.
                fill: Script::new(
                    "if redis.call('EXISTS', KEYS[2]) == 0 then \
                       redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 \
                     end return 0",
                ),
                // One verification in a rate-limit window: the count after it; the counter goes
                // with the window.
                window: Script::new(
                    "local n = redis.call('INCR', KEYS[1]) \
                     if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
                ),
            }),
        }
    }

    /// Counts one verification of `key_id` in rate-limit window `window` (of `window_ms`);
    /// returns the count so far, this one included.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn count_in_window(&self, key_id: &str, window: i64, window_ms: i64) -> Result<u64, TierError> {
        let mut conn = self.connection();
        let key = format!("{}kr:rl:{{{key_id}}}:{window}", self.prefix);
        let mut call = self.scripts.window.key(key);
        call.arg(window_ms + 1_000);
        self.timed(call.invoke_async(&mut conn)).await
    }

    /// The pub/sub channel of invalidations.
    #[must_use]
    pub fn channel(prefix: &str) -> String {
        format!("{prefix}keyroll:invalidate")
    }

    // `{hash}` is a Redis Cluster hash tag: a record and its tombstone share a slot.
    fn record_key(&self, h: &KeyHash) -> String {
        format!("{}kr:{{{}}}:rec", self.prefix, h.to_hex())
    }

    fn tombstone_key(&self, h: &KeyHash) -> String {
        format!("{}kr:{{{}}}:inv", self.prefix, h.to_hex())
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) async fn timed<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, TierError> {
        tokio::time::timeout(self.timeout, f).await.map_err(|_| TierError::Timeout)?.map_err(TierError::from)
    }

    /// # Errors
    /// Redis unreachable, slow, or the record unreadable.
    pub async fn get(&self, h: &KeyHash) -> Result<Option<KeyRecordData>, TierError> {
        let mut conn = self.connection();
        let key = self.record_key(h);
        let raw: Option<String> = self.timed(conn.get(&key)).await?;
        raw.map(|s| serde_json::from_str(&s)).transpose().map_err(TierError::from)
    }

    /// # Errors
    /// Redis unreachable or slow.
    pub async fn fill(&self, h: &KeyHash, data: &KeyRecordData) -> Result<(), TierError> {
        let mut conn = self.connection();
        let body = serde_json::to_string(data)?;
        let mut inv = self.scripts.fill.key(self.record_key(h));
        inv.key(self.tombstone_key(h)).arg(body).arg(self.ttl_seconds);
        let _: i64 = self.timed(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    /// Tombstones and deletes the records, then publishes the hashes on the bus.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn tombstone_and_publish(&self, hashes: &[KeyHash]) -> Result<(), TierError> {
        let pair = |h: &KeyHash| {
            let mut pipe = redis::pipe();
            pipe.set_ex(self.tombstone_key(h), 1, TOMBSTONE_SECONDS).ignore();
            pipe.del(self.record_key(h)).ignore();
            pipe
        };
        if self.cluster.is_some() {
            // A record and its tombstone share a slot; the records of a change do not.
            self.each_slot(hashes.iter().map(pair)).await?;
        } else {
            let mut pipe = redis::pipe();
            for h in hashes {
                pipe.set_ex(self.tombstone_key(h), 1, TOMBSTONE_SECONDS).ignore();
                pipe.del(self.record_key(h)).ignore();
            }
            let _: () = self.timed(pipe.query_async(&mut self.connection())).await?;
        }
        self.publish(hashes).await
    }

    /// Tells every node to drop the hashes from L1.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn publish(&self, hashes: &[KeyHash]) -> Result<(), TierError> {
        let mut conn = self.connection();
        let payload = hashes.iter().map(KeyHash::to_hex).collect::<Vec<_>>().join(" ");
        let _: i64 = self.timed(conn.publish(Self::channel(&self.prefix), payload)).await?;
        Ok(())
    }

    /// A round trip, for readiness.
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub async fn ping(&self) -> Result<(), TierError> {
        let mut conn = self.connection();
        self.timed(conn.ping()).await
    }

    /// On a cluster, connects again from the seed nodes, reading the topology afresh: after a
    /// failover the client may still send a slot to the master that died. Called before Redis is
    /// trusted again after a fault; nothing to do for one server (its manager reconnects).
    ///
    /// # Errors
    /// No seed node answered in time.
    pub async fn reconnect(&self) -> Result<(), TierError> {
        let Some(client) = &self.cluster else { return Ok(()) };
        let fresh = tokio::time::timeout(Duration::from_secs(2), client.get_async_connection())
            .await
            .map_err(|_| TierError::Timeout)??;
        *self.conn.write().unwrap_or_else(PoisonError::into_inner) = RedisConn::Cluster(fresh);
        Ok(())
    }

    #[must_use]
    pub fn connection(&self) -> RedisConn {
        self.conn.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs pipelines that each stay in one slot, side by side (on a cluster, one pipeline may
    /// not span slots).
    ///
    /// # Errors
    /// Redis unreachable or slow.
    pub(super) async fn each_slot(&self, pipes: impl Iterator<Item = redis::Pipeline>) -> Result<(), TierError> {
        let calls = pipes.map(|pipe| {
            let mut conn = self.connection();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        let _: Vec<()> = self.timed(futures_util::future::try_join_all(calls)).await?;
        Ok(())
    }
}

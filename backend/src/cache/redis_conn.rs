//! The connection to Redis: one server (a connection manager that reconnects) or a Redis Cluster
//! (the cluster client, which follows slot moves and failovers). Every key Keyroll writes carries
//! a hash tag, so each command, script and pipeline stays within one slot.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// One Redis or a cluster, used the same way.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to `url`: one address, or with `cluster` a cluster's seed nodes (comma-separated),
    /// and then also returns the cluster's client, to connect again with.
    ///
    /// # Errors
    /// Unusable addresses, or no node answered within 5 s.
    pub async fn connect(url: &str, cluster: bool) -> anyhow::Result<(Self, Option<ClusterClient>)> {
        let seeds = crate::config::redis_seeds(url);
        let connect = async {
            if cluster {
                let client = ClusterClient::builder(seeds)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(2))
                    .retries(2)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok::<_, redis::RedisError>((Self::Cluster(conn), Some(client)))
            } else {
                let client = redis::Client::open(seeds.first().copied().unwrap_or(url))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                Ok((Self::Single(client.get_connection_manager_with_config(config).await?), None))
            }
        };
        tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not answer within 5 s"))?
            .map_err(anyhow::Error::from)
    }

    /// A round trip. On a cluster, to one master: a node that failed over (or a replica being
    /// replaced) is not asked, as PING to every node would.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => redis::cmd("PING").query_async(c).await,
            Self::Cluster(c) => {
                use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                c.route_command(redis::cmd("PING"), route).await.map(drop)
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The clients the invalidation bus subscribes through, tried in turn: in a cluster a message
/// published on any node reaches the subscribers of every node, so one node at a time will do.
///
/// # Errors
/// An unusable address.
pub fn bus_clients(url: &str) -> redis::RedisResult<Vec<redis::Client>> {
    crate::config::redis_seeds(url).into_iter().map(redis::Client::open).collect()
}

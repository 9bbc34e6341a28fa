//! `KEYROLL_REDIS_URL` and `KEYROLL_REDIS__*`: one Redis, or the seed nodes of a Redis Cluster.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `KEYROLL_REDIS__*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RedisOptions {
    /// `KEYROLL_REDIS_URL` names seed nodes of a Redis Cluster, comma-separated.
    pub(super) cluster: bool,
}

/// The addresses of `KEYROLL_REDIS_URL`: one, or a cluster's seed nodes, comma-separated.
#[must_use]
pub fn redis_seeds(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

/// Checks every address: several only for a cluster, and no Unix socket in a cluster.
pub(super) fn check(url: &str, cluster: bool) -> Result<(), ConfigError> {
    let seeds = redis_seeds(url);
    if !cluster && seeds.len() > 1 {
        return Err(ConfigError(
            "KEYROLL_REDIS_URL: several addresses need KEYROLL_REDIS__CLUSTER=true (a Redis Cluster)".into(),
        ));
    }
    for seed in seeds {
        let schemes: &[&str] =
            if cluster { &["redis://", "rediss://"] } else { &["redis://", "rediss://", "redis+unix://"] };
        if !schemes.iter().any(|s| seed.starts_with(s)) {
            return Err(ConfigError(format!(
                "KEYROLL_REDIS_URL: each address must start with {}",
                schemes.join(" or ")
            )));
        }
        redis::Client::open(seed)
            .map_err(|e| ConfigError(format!("KEYROLL_REDIS_URL: not a usable Redis address ({e})")))?;
    }
    Ok(())
}

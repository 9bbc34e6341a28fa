//! The registry of serving nodes. Each node writes its address and a probe token at start-up and
//! refreshes its row every few seconds; a node not seen for [`LIVE_FOR`] is taken for gone. A
//! playbook run's validation asks every live node, through `POST /internal/probe`, what it would
//! answer for a set of key hashes right now — through the node's own caches, so a node still
//! holding a stale entry is caught.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};

use crate::domain::{KeyHash, KeyState};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::entities::node;

/// How often a node refreshes its row.
pub const BEAT: Duration = Duration::from_secs(3);
/// A node whose row is older than this is no longer counted as live.
pub const LIVE_FOR: TimeDelta = TimeDelta::seconds(10);

/// A fresh probe token.
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes (or rewrites) this node's row.
///
/// # Errors
/// Database errors.
pub async fn register(state: &AppState, url: &str) -> Result<(), StoreError> {
    let now = Utc::now();
    let row = node::Model {
        id: state.node_id.to_string(),
        url: url.to_owned(),
        probe_token: state.probe_token.to_string(),
        started_at: now,
        last_seen_at: now,
    };
    node::Entity::insert(sea_orm::IntoActiveModel::into_active_model(row))
        .on_conflict(
            OnConflict::column(node::Column::Id)
                .update_columns([node::Column::Url, node::Column::ProbeToken, node::Column::LastSeenAt])
                .to_owned(),
        )
        .exec_without_returning(&state.db)
        .await?;
    Ok(())
}

/// Refreshes this node's row until the task is dropped; rows of nodes gone for a day are removed.
pub async fn heartbeat_loop(state: AppState, url: String) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for beat in 0_u64.. {
        tick.tick().await;
        if let Err(e) = register(&state, &url).await {
            tracing::warn!(error = %e, "could not refresh this node's registration");
        }
        // Rows of long-gone nodes are cleared now and then (every 20 minutes), not every beat.
        if beat % 400 != 0 {
            continue;
        }
        let gone = Utc::now() - TimeDelta::days(1);
        if let Err(e) = node::Entity::delete_many().filter(node::Column::LastSeenAt.lt(gone)).exec(&state.db).await {
            tracing::debug!(error = %e, "could not remove long-gone nodes");
        }
    }
}

/// Removes this node's row (a clean shutdown).
pub async fn deregister(state: &AppState) {
    if let Err(e) = node::Entity::delete_by_id(state.node_id.to_string()).exec(&state.db).await {
        tracing::debug!(error = %e, "could not remove this node's registration");
    }
}

/// Nodes seen within [`LIVE_FOR`] of `now`, by id.
///
/// # Errors
/// Database errors.
pub async fn live(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<node::Model>, StoreError> {
    Ok(node::Entity::find()
        .filter(node::Column::LastSeenAt.gt(now - LIVE_FOR))
        .order_by_asc(node::Column::Id)
        .all(db)
        .await?)
}

/// `POST /internal/probe` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeRequest {
    pub hashes: Vec<String>,
}

/// What one node answers for one hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeResult {
    pub hash: String,
    /// `valid`, `superseded`, `revoked`, `expired`, `disabled` or `not_found`.
    pub state: String,
    /// Whether a verification would pass (valid, or superseded but within its grace).
    pub accepted: bool,
}

/// A node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub node_id: String,
    pub results: Vec<ProbeResult>,
}

/// At most this many hashes per probe.
pub const MAX_PROBE: usize = 1_000;

/// Answers a probe on this node, through its caches.
///
/// # Errors
/// Database errors (L1 and L2 missed and the database could not be read).
pub async fn answer(state: &AppState, hashes: &[KeyHash]) -> Result<ProbeAnswer, StoreError> {
    let now = Utc::now();
    let mut results = Vec::with_capacity(hashes.len());
    for h in hashes {
        let rec = state.cache.get(h, &state.db).await?;
        let (label, accepted) = match rec {
            None => ("not_found", false),
            Some(r) => {
                let s = KeyState::derive(&r.times, now);
                (s.as_str(), matches!(s, KeyState::Valid | KeyState::Superseded))
            }
        };
        results.push(ProbeResult { hash: h.to_hex(), state: label.to_owned(), accepted });
    }
    Ok(ProbeAnswer { node_id: state.node_id.to_string(), results })
}

/// One node's part of a probe: its answer, or why there is none.
#[derive(Debug, Clone, Serialize)]
pub struct NodeProbe {
    pub node_id: String,
    pub url: String,
    pub answer: Option<ProbeAnswer>,
    pub error: Option<String>,
}

/// Asks every live node about `hashes` (at most [`MAX_PROBE`]), all at once.
///
/// # Errors
/// Database errors reading the registry.
pub async fn probe_all(state: &AppState, hashes: &[String]) -> Result<Vec<NodeProbe>, StoreError> {
    let nodes = live(&state.db, Utc::now()).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StoreError::Conflict(format!("cannot build an HTTP client: {e}")))?;
    let body = ProbeRequest { hashes: hashes.iter().take(MAX_PROBE).cloned().collect() };
    let asks = nodes.into_iter().map(|n| {
        let client = client.clone();
        let body = &body;
        async move {
            let sent = client
                .post(format!("{}/internal/probe", n.url.trim_end_matches('/')))
                .bearer_auth(&n.probe_token)
                .json(body)
                .send()
                .await;
            let (answer, error) = match sent {
                Ok(r) if r.status().is_success() => match r.json::<ProbeAnswer>().await {
                    Ok(a) if a.node_id == n.id => (Some(a), None),
                    Ok(a) => (None, Some(format!("answered as {} (another node at that address)", a.node_id))),
                    Err(e) => (None, Some(format!("unreadable answer: {e}"))),
                },
                Ok(r) => (None, Some(format!("answered {}", r.status()))),
                Err(e) => (None, Some(format!("unreachable: {e}"))),
            };
            NodeProbe { node_id: n.id, url: n.url, answer, error }
        }
    });
    Ok(futures_util::future::join_all(asks).await)
}

//! Migration progress of a rotation: traffic on the old and new versions since it started,
//! the last use of each, and a verdict.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde::Serialize;

use crate::store::entities::{key, rotation};
use crate::store::{StoreError, rotations};

/// One side of a rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionTraffic {
    pub key_id: String,
    pub version: i32,
    /// Successful verifications since the rotation started (as of the last usage flush).
    pub uses_since_start: i64,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Old versus new.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub old: VersionTraffic,
    pub new: VersionTraffic,
    /// Share of successful verifications on the new version since the start (0–1), if any.
    pub new_share: Option<f64>,
    /// A sentence for people.
    pub verdict: String,
}

/// Computes the progress from the usage rollups.
///
/// # Errors
/// Database errors.
pub async fn progress(
    db: &impl ConnectionTrait,
    r: &rotation::Model,
    from: &key::Model,
    to: &key::Model,
) -> Result<Progress, StoreError> {
    let tenant = crate::domain::TenantId::from_trusted(r.tenant_id.clone());
    let old_uses = rotations::valid_uses_since(db, &tenant, &from.id, r.started_at).await?;
    let new_uses = rotations::valid_uses_since(db, &tenant, &to.id, r.started_at).await?;
    let total = old_uses + new_uses;
    #[expect(clippy::cast_precision_loss, reason = "a share for display")]
    let new_share = (total > 0).then(|| new_uses as f64 / total as f64);
    let old_last = from.last_used_at.filter(|t| *t >= r.started_at);
    let verdict = match (new_uses, old_last) {
        (0, _) => "The new version has not been used yet.".to_owned(),
        (_, None) => "Traffic has moved: the old version has not been used since the rotation started.".to_owned(),
        (_, Some(t)) => format!("Both versions in use; the old one last at {}.", crate::time::rfc3339(t)),
    };
    Ok(Progress {
        old: VersionTraffic {
            key_id: from.id.clone(),
            version: from.version,
            uses_since_start: old_uses,
            last_used_at: from.last_used_at,
        },
        new: VersionTraffic {
            key_id: to.id.clone(),
            version: to.version,
            uses_since_start: new_uses,
            last_used_at: to.last_used_at,
        },
        new_share,
        verdict,
    })
}

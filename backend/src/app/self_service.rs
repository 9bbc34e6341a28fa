//! What a consumer does with its own key: rotate it, and pick up a version a policy issued.
//! The context's actor is the consumer; the key is the one it presented.

use chrono::TimeDelta;

use super::rotation::{RotateRequest, Rotated, rotate, rules_for};
use super::{Ctx, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::KeyId;
use crate::domain::rotation::{RetireMode, Trigger};
use crate::store::entities::key;
use crate::store::{keys, policies};

/// The overlap a consumer gets when it does not ask for one: one hour.
pub const SELF_DEFAULT_OVERLAP_SECONDS: i64 = 3_600;
/// The longest overlap a consumer may ask for itself: seven days.
pub const SELF_MAX_OVERLAP_SECONDS: i64 = 7 * 86_400;

/// Rotates the presented key; it stays valid beside the new one for the overlap.
///
/// # Errors
/// `Invalid` for an overlap out of bounds, `Conflict` when a rule refuses.
pub async fn rotate_own(ctx: &Ctx<'_>, key_id: &KeyId, overlap_seconds: Option<i64>) -> Result<Rotated, ServiceError> {
    let overlap = overlap_seconds.unwrap_or(SELF_DEFAULT_OVERLAP_SECONDS);
    if !(0..=SELF_MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(ServiceError::field(
            "overlap_seconds",
            format!("must be between 0 and {SELF_MAX_OVERLAP_SECONDS}"),
        ));
    }
    let current = keys::get(ctx.db(), &ctx.tenant, key_id, false).await?;
    let request = RotateRequest {
        rules: rules_for(ctx.db(), &current).await?,
        overlap: TimeDelta::seconds(overlap),
        scopes: None,
        meta: None,
        retire_mode: RetireMode::AtDeadline,
        trigger: Trigger::SelfService,
        compromise: false,
        expires_at: None,
        handoff: None,
    };
    rotate(ctx, key_id, false, request).await
}

/// Takes the new version a rotation policy issued for the presented key's lineage, once.
///
/// # Errors
/// `NotFound` when nothing is waiting (or no master key can open it).
pub async fn pickup(ctx: &Ctx<'_>, key_id: &KeyId) -> Result<(key::Model, String), ServiceError> {
    let nothing = || ServiceError::NotFound("no new key is waiting for pickup");
    let current = keys::get(ctx.db(), &ctx.tenant, key_id, false).await?;
    let master = ctx.state.master_key.clone().ok_or_else(nothing)?;
    let pending = commit(ctx, async |txn, change| {
        let pending = policies::take_secret(txn, &ctx.tenant, &current.lineage_id).await?.ok_or_else(nothing)?;
        change.audit(
            Entry::new(
                "key.secret_picked_up",
                "key",
                pending.key_id.clone(),
                format!("The consumer fetched the new version of key {} with its current key", current.start),
            )
            .with(serde_json::json!({ "lineage_id": current.lineage_id, "presented_key_id": current.id })),
        );
        Ok(pending)
    })
    .await?;
    let secret = master.open(&pending.sealed).and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
        ServiceError::Internal(anyhow::anyhow!("a held secret cannot be opened with this master key"))
    })?;
    let key = keys::get(ctx.db(), &ctx.tenant, &KeyId::from_trusted(pending.key_id), false).await?;
    Ok((key, secret))
}

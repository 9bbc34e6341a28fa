//! The periodic sweep: rotations past their deadline are marked completed, and `when_drained`
//! rotations are completed early once traffic has moved (new version used, old one silent for
//! the quiet period, and at least the minimum overlap passed). Idempotent.

use chrono::{TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::app::{Ctx, ServiceError};
use crate::domain::rotation::{RetireMode, RotationState};
use crate::domain::{KeyId, RotationId, TenantId};
use crate::state::AppState;
use crate::store::entities::{job, rotation};
use crate::store::keys;

/// Is the old version drained?
#[must_use]
pub fn drained(
    now: chrono::DateTime<Utc>,
    started_at: chrono::DateTime<Utc>,
    old_last_used: Option<chrono::DateTime<Utc>>,
    new_last_used: Option<chrono::DateTime<Utc>>,
    quiet: TimeDelta,
    min_overlap: TimeDelta,
) -> bool {
    now >= started_at + min_overlap
        && new_last_used.is_some_and(|t| t >= started_at)
        && old_last_used.is_none_or(|t| t <= now - quiet)
}

/// One sweep.
///
/// # Errors
/// Database errors.
pub async fn sweep(state: &AppState) -> anyhow::Result<()> {
    let now = Utc::now();
    let open = rotation::Entity::find()
        .filter(rotation::Column::State.eq(RotationState::InProgress.as_str()))
        .all(&state.db)
        .await?;
    let (quiet, min_overlap) = (state.settings.rotation.quiet(), state.settings.rotation.min_overlap());
    for r in open {
        let tenant = TenantId::from_trusted(r.tenant_id.clone());
        let ctx = Ctx::system(state, tenant.clone());
        let id = RotationId::from_trusted(r.id.clone());
        if r.grace_ends_at <= now {
            super::retire_at_deadline(&ctx, &id).await?;
            continue;
        }
        if RetireMode::parse(&r.retire_mode) != Some(RetireMode::WhenDrained) {
            continue;
        }
        let from = keys::get_any(&state.db, &tenant, &KeyId::from_trusted(r.from_key_id.clone())).await?;
        let to = keys::get_any(&state.db, &tenant, &KeyId::from_trusted(r.to_key_id.clone())).await?;
        if drained(now, r.started_at, from.last_used_at, to.last_used_at, quiet, min_overlap) {
            tracing::info!(rotation_id = %r.id, "old version drained; retiring it early");
            match super::complete(&ctx, &id).await {
                // Completed or ended meanwhile by another node or a person.
                Ok(_) | Err(ServiceError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // Done jobs are kept a day for inspection.
    job::Entity::delete_many()
        .filter(job::Column::State.eq(crate::store::jobs::DONE))
        .filter(job::Column::UpdatedAt.lt(now - TimeDelta::days(1)))
        .exec(&state.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn drain_rules() {
        let q = TimeDelta::seconds(100);
        let m = TimeDelta::seconds(50);
        assert!(drained(at(200), at(0), Some(at(90)), Some(at(150)), q, m), "new used, old silent 110 s");
        assert!(drained(at(200), at(0), None, Some(at(150)), q, m), "old never used");
        assert!(!drained(at(200), at(0), Some(at(150)), Some(at(150)), q, m), "old used 50 s ago");
        assert!(!drained(at(200), at(0), None, None, q, m), "new never used");
        assert!(!drained(at(200), at(0), None, Some(at(-5)), q, m), "new only used before the start");
        assert!(!drained(at(40), at(0), None, Some(at(10)), q, m), "before the minimum overlap");
    }
}

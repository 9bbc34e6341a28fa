//! Incident handling: the step catalogue and built-in playbooks, playbook runs, the registry of
//! nodes that runs probe, and `leak`, which contains keys that secret scanners report.

pub mod catalogue;
pub mod execute;
pub mod leak;
pub mod nodes;
pub mod runs;
mod validate;

use chrono::Utc;

use crate::app::{self, Permission, ServiceError};
use crate::domain::PlaybookId;
use crate::store::entities::playbook;

/// Saves a playbook of the team's own.
///
/// # Errors
/// `Conflict` past the team's limit of playbooks.
pub async fn create(ctx: &app::Ctx<'_>, d: &catalogue::Definition) -> Result<playbook::Model, ServiceError> {
    ctx.require(Permission::PlaybooksRun)?;
    let now = Utc::now();
    let row = playbook::Model {
        id: PlaybookId::generate().into_string(),
        tenant_id: ctx.tenant.as_str().to_owned(),
        name: d.name.clone(),
        description: d.description.clone(),
        target_kind: d.target.as_str().to_owned(),
        steps: serde_json::to_value(&d.steps).unwrap_or_default(),
        created_by: Some(ctx.actor_id()),
        created_at: now,
        updated_at: now,
    };
    app::commit(ctx, async |txn, change| {
        let saved = crate::store::playbooks::insert(txn, row).await?;
        change.audit(
            crate::audit::Entry::new(
                "playbook.created",
                "playbook",
                saved.id.clone(),
                format!("Created the playbook \"{}\" ({} steps, on a {})", d.name, d.steps.len(), d.target.as_str()),
            )
            .with(serde_json::json!({"target": d.target.as_str(), "steps": d.steps})),
        );
        Ok(saved)
    })
    .await
}

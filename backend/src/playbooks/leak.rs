//! A reported leak: each token a scanner sends is checked (format, checksum, then its hash);
//! a key that exists is contained as its API's leak policy says — `notify`, `rotate` with a
//! short grace (a compromise rotation: no rollback, the new secret kept for the consumer), or
//! `revoke` at once — and `leak.reported` goes to the tenant's and the consumer's endpoints and
//! email, with an audit entry, in the same transaction. A key reported again within a day is
//! not acted on twice. Unknown and malformed tokens are answered as false positives and
//! otherwise ignored.

use chrono::{TimeDelta, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::catalogue::{self, Definition, Step};
use super::execute;
use super::runs::{self, Target};
use crate::app::{self, Actor, ServiceError, rotation};
use crate::domain::input::LeakPolicy;
use crate::domain::{ApiId, ApiKey, EventType, KeyState, RunId, TenantId};
use crate::state::AppState;
use crate::store::entities::{audit_event, key, playbook_run};
use crate::store::{apis, keys};

/// One token a scanner found.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub token: String,
    /// The scanner's name for the kind of token.
    #[serde(rename = "type", default)]
    pub token_type: String,
    /// Where it was found.
    #[serde(default)]
    pub url: String,
    /// What the scanner was looking at (`content`, `commit`, `issue`, …).
    #[serde(default)]
    pub source: String,
}

/// The answer for one token, as GitHub's partner programme expects it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verdict {
    pub token_raw: String,
    pub token_type: String,
    /// `true_positive` for a key of ours (in any state), `false_positive` otherwise.
    pub label: &'static str,
}

/// What was done about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Notified,
    Rotated,
    /// Already in grace: its grace now ends sooner.
    GraceShortened,
    Revoked,
    /// Revoked, expired, or reported within the last day: nothing more to do.
    AlreadyContained,
}

impl Action {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Notified => "notified",
            Self::Rotated => "rotated",
            Self::GraceShortened => "grace_shortened",
            Self::Revoked => "revoked",
            Self::AlreadyContained => "already_contained",
        }
    }
}

/// Starts the *leaked key* playbook on `k` with `steps` and executes it at once.
async fn run_leaked_key(
    ctx: &app::Ctx<'_>,
    k: &key::Model,
    reporter: &str,
    steps: Vec<Step>,
) -> Result<playbook_run::Model, ServiceError> {
    let (state, tenant) = (ctx.state, &ctx.tenant);
    let builtin = catalogue::builtin("leaked_key").ok_or(ServiceError::NotFound("no leaked_key playbook"))?;
    let def = Definition { name: format!("Leaked key (reported by {reporter})"), steps, ..builtin.definition };
    let target = Target { key_id: Some(k.id.clone()), ..Target::default() };
    let resume_at = Utc::now() + TimeDelta::seconds(30);
    let run = runs::start(ctx, builtin.id, &def, &target, resume_at).await?;
    if let Err(e) = execute::run(state, "", &run.id).await {
        tracing::warn!(run_id = %run.id, error = %e, "leak containment interrupted; its job resumes it");
    }
    Ok(crate::store::playbooks::get_run(&state.db, tenant, &RunId::from_trusted(run.id)).await?)
}

/// Handles a batch of reports from `reporter` (`github`, `scanner`).
///
/// # Errors
/// Database errors (the scanner should send the batch again).
pub async fn handle(state: &AppState, reporter: &str, reports: Vec<Report>) -> Result<Vec<Verdict>, ServiceError> {
    let mut out = Vec::with_capacity(reports.len());
    for r in reports {
        let found = match ApiKey::parse(r.token.trim()) {
            Ok(k) => keys::find_by_hash(&state.db, &k.hash()).await?,
            Err(_) => None,
        };
        let label = if found.is_some() { "true_positive" } else { "false_positive" };
        if let Some(k) = found {
            let action = contain(state, reporter, &r, k).await?;
            tracing::warn!(reporter, action = action.as_str(), url = %r.url, "a leaked key was reported");
        }
        out.push(Verdict { token_raw: r.token, token_type: r.token_type, label });
    }
    Ok(out)
}

async fn contain(state: &AppState, reporter: &str, r: &Report, k: key::Model) -> Result<Action, ServiceError> {
    let tenant = TenantId::from_trusted(k.tenant_id.clone());
    let ctx = app::Ctx::acting(state, tenant.clone(), Actor::Scanner(reporter.to_owned()));
    let now = Utc::now();
    let api = apis::get_any(&state.db, &tenant, &ApiId::from_trusted(k.api_id.clone())).await?;
    let grace = TimeDelta::seconds(api.leak_grace_seconds.clamp(0, LeakPolicy::MAX_GRACE_SECONDS));
    let reported_lately = audit_event::Entity::find()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::Action.eq("key.leaked"))
        .filter(audit_event::Column::TargetId.eq(k.id.as_str()))
        .filter(audit_event::Column::OccurredAt.gt(now - TimeDelta::days(1)))
        .one(&state.db)
        .await?
        .is_some();
    let state_now = KeyState::derive(&rotation::times(&k), now);
    let action = if reported_lately || matches!(state_now, KeyState::Revoked | KeyState::Expired) {
        Action::AlreadyContained
    } else {
        match (api.leak_action.as_str(), state_now) {
            ("notify", _) => Action::Notified,
            ("rotate", KeyState::Valid) if state.master_key.is_some() && !k.is_root => Action::Rotated,
            ("rotate", KeyState::Superseded) => Action::GraceShortened,
            // Disabled keys, root keys, and installs with no master key to keep a new secret
            // for the consumer: the key is refused at once.
            _ => Action::Revoked,
        }
    };

    // The report itself: event, email and audit entry, in one transaction.
    app::commit(&ctx, async |txn, change| {
        let audience = crate::notify::audience_of(txn, k.consumer_id.as_deref()).await?;
        let data = json!({
            "key_id": k.id, "key_start": k.start, "lineage_id": k.lineage_id, "version": k.version,
            "consumer_id": k.consumer_id, "api_id": k.api_id, "reporter": reporter, "url": r.url,
            "source": r.source, "token_type": r.token_type, "action": action.as_str(),
        });
        change.emit(EventType::LeakReported, data.clone(), &audience);
        change.audit(
            crate::audit::Entry::new(
                "key.leaked",
                if k.is_root { "root_key" } else { "key" },
                k.id.clone(),
                format!(
                    "Key {} v{} was reported leaked by {reporter}{}; action: {}",
                    k.start,
                    k.version,
                    if r.url.is_empty() { String::new() } else { format!(" at {}", r.url) },
                    action.as_str().replace('_', " ")
                ),
            )
            .with(data),
        );
        Ok(())
    })
    .await?;

    // Containment runs as the *leaked key* playbook, with the policy's grace, executed here
    // and now; its job only picks it up again if this execution is cut short.
    let revoke = || vec![Step::Revoke {}, Step::Validate {}];
    match action {
        Action::Notified | Action::AlreadyContained => {}
        Action::Revoked if k.is_root => {
            // Root keys are not keys of an API, so not a playbook's target: revoked directly.
            let reason = format!("leaked: reported by {reporter}");
            app::root_keys::revoke(&ctx, &k.id, &reason).await?;
        }
        Action::Revoked => {
            run_leaked_key(&ctx, &k, reporter, revoke()).await?;
        }
        Action::Rotated => {
            let overlap = grace.num_seconds();
            let steps = vec![Step::Rotate { overlap_seconds: overlap }, Step::Validate {}];
            let run = run_leaked_key(&ctx, &k, reporter, steps).await?;
            if run.state == runs::state::FAILED && run.current_step == 0 {
                // The lineage refuses another version: refuse the leaked one instead.
                tracing::warn!(key_id = %k.id, reason = ?run.error, "leaked key not rotatable; revoking it");
                run_leaked_key(&ctx, &k, reporter, revoke()).await?;
            }
        }
        Action::GraceShortened => {
            let seconds = grace.num_seconds();
            let steps = vec![Step::ShortenGrace { grace_seconds: seconds }, Step::Validate {}];
            run_leaked_key(&ctx, &k, reporter, steps).await?;
        }
    }
    Ok(action)
}

//! The application layer: every operation that changes state, one function each. Adapters (the
//! management API, the dashboard, self-service, the command line, playbooks, the scheduler,
//! leak intake) parse their input, build a [`Ctx`] and call one operation here; an operation
//! checks the actor's permission, applies the rules of `domain/`, and hands its change to
//! [`commit`], the one place that writes rows, audit entries, outbox events and invalidations
//! in one transaction and then does the cache work.

pub mod accounts;
pub mod alerts;
pub mod apis;
pub mod billing;
pub mod commit;
pub mod consumers;
pub mod error;
pub mod imports;
pub mod keys;
pub mod members;
pub mod permission;
pub mod policies;
pub mod portal;
pub mod reveals;
pub mod root_keys;
pub mod rotation;
pub mod self_service;
pub mod signing_keys;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

use sea_orm::DatabaseConnection;

pub use commit::{Change, commit};
pub use error::{Checks, FieldError, ServiceError};
pub use permission::{Grants, Permission, Role};

use crate::domain::TenantId;
pub use crate::domain::{Actor, EventType, Origin};
use crate::state::AppState;

/// Who acts, for which tenant, from where, with what they may do, and the node's resources.
#[derive(Clone)]
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub tenant: TenantId,
    pub actor: Actor,
    pub origin: Origin,
    grants: Grants,
}

impl<'a> Ctx<'a> {
    #[must_use]
    pub fn new(state: &'a AppState, tenant: TenantId, actor: Actor, grants: Grants, origin: Origin) -> Self {
        Self { state, tenant, actor, origin, grants }
    }

    /// Keyroll acting on its own (jobs, scans): every permission, no request.
    #[must_use]
    pub fn system(state: &'a AppState, tenant: TenantId) -> Self {
        Self::acting(state, tenant, Actor::System)
    }

    /// An automatic actor (a policy, a playbook run, a scanner) acting for the team.
    #[must_use]
    pub fn acting(state: &'a AppState, tenant: TenantId, actor: Actor) -> Self {
        Self { state, tenant, actor, origin: Origin::default(), grants: Grants::all() }
    }

    /// A consumer acting on its own key (authenticated by it): it may rotate that key and
    /// nothing else of the team's.
    #[must_use]
    pub fn consumer(state: &'a AppState, tenant: TenantId, consumer_id: &str, origin: Origin) -> Self {
        let grants = Grants::only(&[Permission::KeysRotate]);
        Self { state, tenant, actor: Actor::Consumer(consumer_id.to_owned()), origin, grants }
    }

    /// # Errors
    /// `Forbidden` naming the permission the actor lacks.
    pub fn require(&self, p: Permission) -> Result<(), ServiceError> {
        if self.grants.has(p) { Ok(()) } else { Err(ServiceError::Forbidden(p)) }
    }

    #[must_use]
    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// The actor as stored (`created_by`, audit rows).
    #[must_use]
    pub fn actor_id(&self) -> String {
        self.actor.to_string()
    }
}

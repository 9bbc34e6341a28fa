//! What an operation can fail with. Each adapter renders it in its own form: problem+json for
//! the API, inline form errors for the dashboard.

use serde::Serialize;

use super::permission::Permission;
use crate::store::StoreError;

/// One invalid field, in JSON notation (`scopes[1]`, `ratelimit.limit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Why an operation did not happen. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule; every broken rule is named.
    #[error("{}", detail(.0))]
    Invalid(Vec<FieldError>),
    /// What is named does not exist in this tenant (or belongs to another one).
    #[error("{0}")]
    NotFound(&'static str),
    /// The actor lacks this permission.
    #[error("lacks the permission {}", .0.scope())]
    Forbidden(Permission),
    /// The state of things forbids it (a revoked key, a rotation in progress, a taken name).
    #[error("{0}")]
    Conflict(String),
    /// Creating this would go beyond a limit of the tenant's plan.
    #[error("the plan's limit of {} is reached ({allowed}, limit {}): upgrade the plan or free some", .limit.words(), .limit.as_str())]
    PlanLimit { limit: crate::domain::plan::Limit, allowed: u64 },
    /// A service Keyroll depends on (Stripe) is out of reach; try again later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn detail(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
}

impl ServiceError {
    /// One invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("no such object"),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Db(e) => Self::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::from(e).into()
    }
}

/// Collects the field errors of one input, so that every broken rule is reported at once.
#[derive(Debug, Default)]
pub struct Checks(pub Vec<FieldError>);

impl Checks {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Keeps the value or records the error.
    pub fn take<T, E: Into<String>>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|m| self.push(field, m)).ok()
    }

    /// An optional name: absent stays `None`; present must be a valid name.
    pub fn optional_name(&mut self, name: Option<&str>) -> Option<Option<String>> {
        match name {
            Some(n) => self.take("name", crate::domain::input::Name::parse(n)).map(|n| Some(n.into_string())),
            None => Some(None),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// # Errors
    /// `Invalid` when any check failed.
    pub fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() { Ok(()) } else { Err(ServiceError::Invalid(self.0)) }
    }
}

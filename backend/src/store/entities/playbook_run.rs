use sea_orm::entity::prelude::*;

/// One run of a playbook against one target, with each step's state and evidence.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "playbook_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// `pbk_…` or the id of a built-in playbook.
    pub playbook_id: String,
    pub playbook_name: String,
    pub target_kind: String,
    pub target: Json,
    /// `[{step, state, started_at, finished_at, evidence, error}]`, in order.
    pub steps: Json,
    /// `awaiting_approval`, `running`, `waiting`, `completed`, `failed`.
    pub state: String,
    pub current_step: i32,
    pub started_by: String,
    pub approved_by: Option<String>,
    /// The job executing (or last to execute) the run; its progress is the current step's.
    pub job_id: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}

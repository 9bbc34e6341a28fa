use sea_orm::entity::prelude::*;

/// Something worth a person's attention: raised by the anomaly detector or beside a notice, then
/// acknowledged and resolved by staff. One live alert per tenant, kind and subject.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// `domain::anomaly::AlertKind`.
    pub kind: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The key (or, for `NOT_FOUND` bursts, the API) it is about.
    pub subject_id: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// The latest occurrence, in words.
    pub summary: String,
    /// The latest occurrence's figures.
    pub evidence: Json,
    pub occurrences: i64,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTimeUtc>,
    pub resolved_by: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}

//! Reading the log: filtered pages, exports as JSON Lines or CSV, and retention.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::{Entry, Filter};
use crate::domain::TenantId;
use crate::store::Page;
use crate::store::entities::{audit_event, audit_head};

fn filtered(tenant: &TenantId, f: &Filter) -> sea_orm::Select<audit_event::Entity> {
    let mut q = audit_event::Entity::find().filter(audit_event::Column::TenantId.eq(tenant.as_str()));
    if let Some(t) = f.from {
        q = q.filter(audit_event::Column::OccurredAt.gte(t));
    }
    if let Some(t) = f.to {
        q = q.filter(audit_event::Column::OccurredAt.lt(t));
    }
    if let Some(a) = &f.actor {
        q = q.filter(audit_event::Column::Actor.eq(a.as_str()));
    }
    if let Some(a) = &f.action {
        q = match a.strip_suffix('.') {
            Some(prefix) => q.filter(audit_event::Column::Action.starts_with(format!("{prefix}."))),
            None => q.filter(audit_event::Column::Action.eq(a.as_str())),
        };
    }
    if let Some(t) = &f.target_id {
        q = q.filter(audit_event::Column::TargetId.eq(t.as_str()));
    }
    q
}

/// A page of entries, newest first. The cursor is the last sequence number seen.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    f: &Filter,
    limit: u64,
    before_seq: Option<i64>,
) -> Result<Page<audit_event::Model>, DbErr> {
    let mut q = filtered(tenant, f);
    if let Some(s) = before_seq {
        q = q.filter(audit_event::Column::Seq.lt(s));
    }
    let mut rows = q.order_by_desc(audit_event::Column::Seq).limit(limit + 1).all(db).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { rows.last().map(|r| crate::store::Cursor::encode(&r.seq.to_string())) } else { None };
    Ok(Page { items: rows, next_cursor })
}

/// The distinct actors of a tenant's log, for the filter's choices.
///
/// # Errors
/// Database errors.
pub async fn actors(db: &impl ConnectionTrait, tenant: &TenantId) -> Result<Vec<String>, DbErr> {
    audit_event::Entity::find()
        .select_only()
        .column(audit_event::Column::Actor)
        .distinct()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .order_by_asc(audit_event::Column::Actor)
        .limit(200)
        .into_tuple()
        .all(db)
        .await
}

/// An entry as the API and the exports show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: String,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    /// `user:usr_…`, `root_key:key_…`, `policy:pol_…`, `consumer:con_…` or `system`.
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub summary: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    /// Details, with `before` and `after` where they matter.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<audit_event::Model> for AuditView {
    fn from(e: audit_event::Model) -> Self {
        Self {
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
            id: e.id,
            seq: e.seq,
            occurred_at: e.occurred_at,
            actor: e.actor,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            summary: e.summary,
            request_id: e.request_id,
            ip: e.ip,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" | "ndjson" => Some(Self::JsonLines),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::JsonLines => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    #[must_use]
    pub const fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv => "csv",
        }
    }
}

const CSV_HEADER: &str =
    "seq,id,occurred_at,actor,action,target_type,target_id,summary,request_id,ip,data,prev_hash,hash\r\n";

/// One CSV field: quoted when it must be, and with a leading `'` when a spreadsheet would
/// otherwise read it as a formula.
fn csv_field(out: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula || s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if formula {
            out.push('\'');
        }
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn render(format: Format, e: &audit_event::Model, out: &mut String) {
    match format {
        Format::JsonLines => {
            let view = AuditView::from(e.clone());
            out.push_str(&serde_json::to_string(&view).unwrap_or_default());
            out.push('\n');
        }
        Format::Csv => {
            let occurred = e.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            let fields = [
                e.seq.to_string().as_str(),
                &e.id,
                &occurred,
                &e.actor,
                &e.action,
                &e.target_type,
                e.target_id.as_deref().unwrap_or(""),
                &e.summary,
                e.request_id.as_deref().unwrap_or(""),
                e.ip.as_deref().unwrap_or(""),
                &e.data,
                &e.prev_hash,
                &e.hash,
            ]
            .map(str::to_owned);
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(out, f);
            }
            out.push_str("\r\n");
        }
    }
}

/// The export as a stream of chunks, oldest entry first, read 1 000 entries at a time.
pub fn stream(
    db: DatabaseConnection,
    tenant: TenantId,
    f: Filter,
    format: Format,
) -> impl futures_util::Stream<Item = Result<actix_web::web::Bytes, DbErr>> {
    let start = (Some(0_i64), format == Format::Csv);
    futures_util::stream::try_unfold(start, move |(after, header)| {
        let (db, tenant, f) = (db.clone(), tenant.clone(), f.clone());
        async move {
            let Some(after) = after else { return Ok(None) };
            let rows = filtered(&tenant, &f)
                .filter(audit_event::Column::Seq.gt(after))
                .order_by_asc(audit_event::Column::Seq)
                .limit(1_000)
                .all(&db)
                .await?;
            let mut out = String::new();
            if header {
                out.push_str(CSV_HEADER);
            }
            for e in &rows {
                render(format, e, &mut out);
            }
            let next = if rows.len() == 1_000 { rows.last().map(|r| r.seq) } else { None };
            if out.is_empty() && next.is_none() {
                return Ok(None);
            }
            Ok(Some((actix_web::web::Bytes::from(out), (next, false))))
        }
    })
}

/// Removes the tenant's entries older than `before`, keeping the chain checkable: the head
/// records where the kept part starts and the hash it chains to, and an `audit.pruned` entry
/// says what was removed, by whom and when.
///
/// # Errors
/// Database errors.
pub async fn prune(
    db: &DatabaseConnection,
    tenant: &TenantId,
    before: DateTime<Utc>,
    actor: &str,
) -> Result<u64, DbErr> {
    let txn = crate::store::begin_write(db).await?;
    // Takes the chain head first, so two nodes pruning at once take turns.
    super::lock_head(&txn, tenant).await?;
    let last_old: Option<audit_event::Model> = audit_event::Entity::find()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::OccurredAt.lt(before))
        .order_by_desc(audit_event::Column::Seq)
        .one(&txn)
        .await?;
    let Some(last_old) = last_old else { return Ok(0) };
    let gone = audit_event::Entity::delete_many()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::Seq.lte(last_old.seq))
        .exec(&txn)
        .await?
        .rows_affected;
    let entry = Entry::new(
        "audit.pruned",
        "audit_log",
        tenant.as_str(),
        format!("Removed {gone} audit entries older than {}", before.format("%Y-%m-%d %H:%M UTC")),
    )
    .with(serde_json::json!({ "through_seq": last_old.seq, "anchor_hash": last_old.hash, "removed": gone }));
    super::record(&txn, tenant, actor, &crate::domain::Origin::default(), vec![entry]).await?;
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::PrunedSeq, sea_orm::sea_query::Expr::value(last_old.seq))
        .col_expr(audit_head::Column::AnchorHash, sea_orm::sea_query::Expr::value(last_old.hash))
        .filter(audit_head::Column::TenantId.eq(tenant.as_str()))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(gone)
}

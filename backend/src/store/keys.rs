//! Key versions: insert, read, list, update, revoke, and the record the verify path caches.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, FromQueryResult,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use super::entities::key;
use super::page::{Cursor, Page, paginate};
use crate::domain::input::{Credits, IpAllowlist, RateLimit};
use crate::domain::{ApiId, ApiKey, ConsumerId, KeyHash, KeyHead, KeyId, KeyState, KeyTimes, ScopeSet, TenantId};

/// A key to insert. The secret is generated here and returned once.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant_id: TenantId,
    pub api_id: ApiId,
    pub consumer_id: Option<ConsumerId>,
    pub is_root: bool,
    /// `(lineage, version)` for a new version of an existing lineage; `None` starts one.
    pub lineage: Option<(KeyId, i32)>,
    pub name: Option<String>,
    pub scopes: ScopeSet,
    pub meta: Value,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    pub ip_allowlist: Option<IpAllowlist>,
    pub created_by: Option<String>,
}

impl NewKey {
    /// A root key: a key of the tenant's system API, with management scopes.
    #[must_use]
    pub fn root(
        tenant_id: TenantId,
        system_api: ApiId,
        name: Option<String>,
        scopes: ScopeSet,
        expires_at: Option<DateTime<Utc>>,
        created_by: Option<String>,
    ) -> Self {
        Self {
            tenant_id,
            api_id: system_api,
            consumer_id: None,
            is_root: true,
            lineage: None,
            name,
            scopes,
            meta: Value::Object(serde_json::Map::new()),
            enabled: true,
            expires_at,
            ratelimit: None,
            credits: None,
            ip_allowlist: None,
            created_by,
        }
    }
}

/// Inserts a key version with a fresh secret.
///
/// # Errors
/// Database errors.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewKey,
    head: &KeyHead,
) -> Result<(key::Model, ApiKey), StoreError> {
    insert_with_secret(db, new, ApiKey::generate(head)).await
}

/// Inserts a key version with the given secret (tests and imports; callers normally use [`insert`]).
///
/// # Errors
/// Database errors, including a unique violation should the secret exist already.
pub async fn insert_with_secret(
    db: &impl ConnectionTrait,
    new: NewKey,
    secret: ApiKey,
) -> Result<(key::Model, ApiKey), StoreError> {
    let id = KeyId::generate();
    let now = Utc::now();
    let (lineage_id, version) = new.lineage.map_or_else(|| (id.clone(), 1), |(l, v)| (l, v));
    let model = key::Model {
        id: id.into_string(),
        tenant_id: new.tenant_id.into_string(),
        api_id: new.api_id.into_string(),
        consumer_id: new.consumer_id.map(ConsumerId::into_string),
        lineage_id: lineage_id.into_string(),
        version,
        is_root: new.is_root,
        hash: secret.hash().to_hex(),
        start: secret.start().to_owned(),
        name: new.name,
        scopes: serde_json::to_value(new.scopes.to_strings()).unwrap_or_default(),
        meta: new.meta,
        enabled: new.enabled,
        expires_at: new.expires_at,
        grace_ends_at: None,
        superseded_at: None,
        revoked_at: None,
        revoked_reason: None,
        last_used_at: None,
        ratelimit: new.ratelimit.and_then(|r| serde_json::to_value(r).ok()),
        credits: new.credits.and_then(|c| serde_json::to_value(c).ok()),
        ip_allowlist: new.ip_allowlist.map(|l| Value::from(l.to_strings())),
        created_by: new.created_by,
        created_at: now,
        updated_at: now,
    };
    let inserted = model.into_active_model().reset_all().insert(db).await?;
    if let Some(c) = new.credits {
        // A new lineage starts its balance; a new version keeps the one it shares.
        super::credits::set(db, &inserted.tenant_id, &inserted.lineage_id, &c, false).await?;
    }
    Ok((inserted, secret))
}

/// Which keys to list.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub api_id: Option<ApiId>,
    pub consumer_id: Option<ConsumerId>,
    pub lineage_id: Option<KeyId>,
    pub state: Option<KeyState>,
    /// Leave revoked keys out.
    pub unrevoked: bool,
    pub root: bool,
    /// A key's start (`acme_live_oN5A`, or its beginning), a whole secret, or part of a name.
    pub search: Option<String>,
}

/// Keys whose start begins with `q`, whose name contains it (case-insensitive), or, when `q` is
/// a whole secret, the key with that secret.
fn search_condition(q: &str) -> Condition {
    use sea_orm::sea_query::{Func, LikeExpr};
    if let Ok(secret) = ApiKey::parse(q) {
        return Condition::all().add(key::Column::Hash.eq(secret.hash().to_hex()));
    }
    // Names are at most 200 characters: a longer text matches nothing more.
    let q: String = q.chars().take(201).collect();
    let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    let start = LikeExpr::new(format!("{escaped}%")).escape('\\');
    let name = LikeExpr::new(format!("%{}%", escaped.to_lowercase())).escape('\\');
    Condition::any()
        .add(Expr::col(key::Column::Start).like(start))
        .add(Expr::expr(Func::lower(Expr::col(key::Column::Name))).like(name))
}

/// A page of one tenant's keys (API keys, or root keys with `filter.root`), newest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    filter: &KeyFilter,
    limit: u64,
    cursor: Option<&Cursor>,
) -> Result<Page<key::Model>, StoreError> {
    let mut q = key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::IsRoot.eq(filter.root));
    if let Some(a) = &filter.api_id {
        q = q.filter(key::Column::ApiId.eq(a.as_str()));
    }
    if let Some(c) = &filter.consumer_id {
        q = q.filter(key::Column::ConsumerId.eq(c.as_str()));
    }
    if let Some(l) = &filter.lineage_id {
        q = q.filter(key::Column::LineageId.eq(l.as_str()));
    }
    if let Some(s) = filter.state {
        q = q.filter(state_condition(s, Utc::now()));
    }
    if filter.unrevoked {
        q = q.filter(key::Column::RevokedAt.is_null());
    }
    let search = filter.search.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if let Some(text) = search {
        q = q.filter(search_condition(text));
    }
    if let Some(c) = cursor {
        q = q.filter(key::Column::Id.lt(c.after_id.as_str()));
    }
    let q = q.order_by_desc(key::Column::Id).limit(limit + 1);
    // A search of the team's or an API's keys by start or name reads only the narrow index
    // `keys_tenant_search` to find the page's ids, then the rows of those alone.
    let narrow =
        filter.state.is_none() && !filter.unrevoked && filter.consumer_id.is_none() && filter.lineage_id.is_none();
    if search.is_some() && narrow {
        let ids: Vec<String> = q.select_only().column(key::Column::Id).into_tuple().all(db).await?;
        if ids.is_empty() {
            return Ok(paginate(Vec::new(), limit, |k: &key::Model| &k.id));
        }
        let rows = key::Entity::find()
            .filter(key::Column::TenantId.eq(tenant.as_str()))
            .filter(key::Column::Id.is_in(ids))
            .order_by_desc(key::Column::Id)
            .all(db)
            .await?;
        return Ok(paginate(rows, limit, |k| &k.id));
    }
    let rows = q.all(db).await?;
    Ok(paginate(rows, limit, |k| &k.id))
}

/// Versions that are current now: [`KeyState::Valid`] (not revoked, enabled, not expired, not
/// superseded) — what a rotation renews.
#[must_use]
pub fn current(now: DateTime<Utc>) -> Condition {
    state_condition(KeyState::Valid, now)
}

/// The SQL form of [`KeyState::derive`].
fn state_condition(state: KeyState, now: DateTime<Utc>) -> Condition {
    use key::Column as C;
    let live = Condition::all().add(C::RevokedAt.is_null()).add(C::Enabled.eq(true));
    let not_expired = Condition::all()
        .add(Condition::any().add(C::ExpiresAt.is_null()).add(C::ExpiresAt.gt(now)))
        .add(Condition::any().add(C::GraceEndsAt.is_null()).add(C::GraceEndsAt.gt(now)));
    let expired = Condition::any().add(C::ExpiresAt.lte(now)).add(C::GraceEndsAt.lte(now));
    match state {
        KeyState::Revoked => Condition::all().add(C::RevokedAt.is_not_null()),
        KeyState::Disabled => Condition::all().add(C::RevokedAt.is_null()).add(C::Enabled.eq(false)),
        KeyState::Expired => live.add(expired),
        KeyState::Superseded => live.add(not_expired).add(C::GraceEndsAt.is_not_null()),
        KeyState::Valid => live.add(not_expired).add(C::GraceEndsAt.is_null()),
    }
}

/// One key of the tenant.
///
/// # Errors
/// `NotFound` when it does not exist in this tenant, or is of the other kind (root vs API key).
pub async fn get(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &KeyId,
    root: bool,
) -> Result<key::Model, StoreError> {
    key::Entity::find_by_id(id.as_str())
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::IsRoot.eq(root))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// One key of the tenant, root or not.
///
/// # Errors
/// `NotFound`.
pub async fn get_any(db: &impl ConnectionTrait, tenant: &TenantId, id: &KeyId) -> Result<key::Model, StoreError> {
    key::Entity::find_by_id(id.as_str())
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Changes to a key; `None` leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<Option<String>>,
    pub scopes: Option<ScopeSet>,
    pub meta: Option<Value>,
    pub enabled: Option<bool>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub ratelimit: Option<Option<RateLimit>>,
    pub credits: Option<Option<Credits>>,
    pub ip_allowlist: Option<Option<IpAllowlist>>,
}

/// Applies a patch.
///
/// # Errors
/// `NotFound`, or `Conflict` for a revoked key (revocation is final).
pub async fn update(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &KeyId,
    root: bool,
    p: KeyPatch,
) -> Result<key::Model, StoreError> {
    let current = get(db, tenant, id, root).await?;
    if current.revoked_at.is_some() {
        return Err(StoreError::Conflict("the key is revoked; a revoked key cannot be changed".into()));
    }
    let current_lineage = current.lineage_id.clone();
    let mut am = current.into_active_model();
    if let Some(v) = p.name {
        am.name = Set(v);
    }
    if let Some(v) = p.scopes {
        am.scopes = Set(Value::from(v.to_strings()));
    }
    if let Some(v) = p.meta {
        am.meta = Set(v);
    }
    if let Some(v) = p.enabled {
        am.enabled = Set(v);
    }
    if let Some(v) = p.expires_at {
        am.expires_at = Set(v);
    }
    if let Some(v) = p.ratelimit {
        am.ratelimit = Set(v.and_then(|r| serde_json::to_value(r).ok()));
    }
    if let Some(v) = p.credits {
        let lineage = current_lineage.clone();
        match &v {
            Some(c) => super::credits::set(db, tenant.as_str(), &lineage, c, true).await?,
            None => super::credits::clear(db, &lineage).await?,
        }
        am.credits = Set(v.and_then(|c| serde_json::to_value(c).ok()));
    }
    if let Some(v) = p.ip_allowlist {
        am.ip_allowlist = Set(v.map(|l| Value::from(l.to_strings())));
    }
    am.updated_at = Set(Utc::now());
    Ok(am.update(db).await?)
}

/// Revokes now. Revoking a revoked key keeps the first revocation.
///
/// # Errors
/// `NotFound`.
pub async fn revoke(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    id: &KeyId,
    root: bool,
    reason: &str,
) -> Result<key::Model, StoreError> {
    let current = get(db, tenant, id, root).await?;
    if current.revoked_at.is_some() {
        return Ok(current);
    }
    let now = Utc::now();
    let mut am = current.into_active_model();
    am.revoked_at = Set(Some(now));
    am.revoked_reason = Set(Some(reason.to_owned()));
    am.updated_at = Set(now);
    Ok(am.update(db).await?)
}

/// Revokes every live key of a consumer; returns their hashes for invalidation.
///
/// # Errors
/// Database errors.
pub async fn revoke_all_of_consumer(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    consumer: &ConsumerId,
    reason: &str,
) -> Result<Vec<key::Model>, StoreError> {
    let revoked = key::Entity::find()
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::ConsumerId.eq(consumer.as_str()))
        .filter(key::Column::RevokedAt.is_null())
        .all(db)
        .await?;
    let now = Utc::now();
    key::Entity::update_many()
        .col_expr(key::Column::RevokedAt, Expr::value(now))
        .col_expr(key::Column::RevokedReason, Expr::value(reason))
        .col_expr(key::Column::UpdatedAt, Expr::value(now))
        .filter(key::Column::TenantId.eq(tenant.as_str()))
        .filter(key::Column::ConsumerId.eq(consumer.as_str()))
        .filter(key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(revoked)
}

/// Keys of every tenant whose `expires_at` passed in `(since, now]` and whose expiry has not
/// been announced yet (announcements are [`super::policies::mark_notice`]s with lead time 0),
/// oldest first, at most `limit`. Revoked keys are left out: their end was announced already.
///
/// # Errors
/// Database errors.
pub async fn newly_expired(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<key::Model>, StoreError> {
    use super::entities::sent_notice;
    let announced = Query::select()
        .column(sent_notice::Column::KeyId)
        .from(sent_notice::Entity)
        .and_where(sent_notice::Column::LeadSeconds.eq(EXPIRY_NOTICE))
        .to_owned();
    Ok(key::Entity::find()
        .filter(key::Column::ExpiresAt.gt(since))
        .filter(key::Column::ExpiresAt.lte(now))
        .filter(key::Column::RevokedAt.is_null())
        .filter(key::Column::Id.not_in_subquery(announced))
        .order_by_asc(key::Column::ExpiresAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// The lead time under which a key's expiry itself (`key.expired`) is recorded as sent.
pub const EXPIRY_NOTICE: i64 = 0;
/// The lead time under which a policy's rotation falling due (`policy.rotation_due`) is recorded
/// as sent. Advance notices have lead times of a minute or more.
pub const DUE_NOTICE: i64 = -1;

/// Whose keys [`hashes_of`] names.
#[derive(Debug, Clone, Copy)]
pub enum KeysOf<'a> {
    /// A consumer's: a change to the consumer is in every one's cached record.
    Consumer(&'a ConsumerId),
    /// A lineage's versions: they share one credit balance.
    Lineage(&'a str),
}

/// Hashes of the tenant's keys that a change to a consumer or a lineage affects.
///
/// # Errors
/// Database errors.
pub async fn hashes_of(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    of: KeysOf<'_>,
) -> Result<Vec<KeyHash>, StoreError> {
    let q =
        key::Entity::find().select_only().column(key::Column::Hash).filter(key::Column::TenantId.eq(tenant.as_str()));
    let q = match of {
        KeysOf::Consumer(c) => q.filter(key::Column::ConsumerId.eq(c.as_str())),
        KeysOf::Lineage(l) => q.filter(key::Column::LineageId.eq(l)),
    };
    let hashes: Vec<String> = q.into_tuple().all(db).await?;
    Ok(hashes.iter().filter_map(|h| KeyHash::from_hex(h)).collect())
}

/// What the verify path caches for one key: the key, its consumer and its API's id, as read
/// from the database in one consistent moment. Serialized as is into the Redis tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecordData {
    pub id: String,
    /// Prefix plus the first four random characters: names the key in notices, never the secret.
    #[serde(default)]
    pub start: String,
    pub tenant_id: String,
    pub api_id: String,
    pub lineage_id: String,
    pub version: i32,
    pub is_root: bool,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Value,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
    pub successor_version: Option<i32>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub ratelimit: Option<RateLimit>,
    pub credits: Option<Credits>,
    pub ip_allowlist: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub consumer: Option<ConsumerData>,
    /// The database's clock (Unix ms) just before the row was read: a record read before an
    /// invalidation of its hash was written is stale, wherever it comes back from.
    #[serde(default)]
    pub read_ms: i64,
}

/// The consumer part of a cached record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsumerData {
    pub id: String,
    pub external_id: String,
    pub meta: Value,
}

impl KeyRecordData {
    #[must_use]
    pub fn times(&self) -> KeyTimes {
        KeyTimes {
            revoked_at: self.revoked_at,
            enabled: self.enabled,
            expires_at: self.expires_at,
            grace_ends_at: self.grace_ends_at,
        }
    }
}

/// The key version with this hash, in any tenant (for leak reports, which name no tenant).
///
/// # Errors
/// Database errors.
pub async fn find_by_hash(db: &impl ConnectionTrait, hash: &KeyHash) -> Result<Option<key::Model>, StoreError> {
    Ok(key::Entity::find().filter(key::Column::Hash.eq(hash.to_hex())).one(db).await?)
}

/// Reads what the verify path needs for one hash, or `None` when no key has it.
///
/// # Errors
/// Database errors.
pub async fn load_record(db: &impl ConnectionTrait, hash: &KeyHash) -> Result<Option<KeyRecordData>, StoreError> {
    // One statement: the key, its API (which must still exist), its consumer, the newest version
    // of its lineage when it is superseded, and the database's clock as the statement began.
    let backend = db.get_database_backend();
    let text = format!(
        "SELECT k.*, c.external_id AS c_external_id, c.meta AS c_meta, \
         CASE WHEN k.superseded_at IS NULL THEN NULL \
              ELSE (SELECT MAX(v.version) FROM keys v WHERE v.lineage_id = k.lineage_id) END AS successor_max, \
         {} AS read_ms \
         FROM keys k JOIN apis a ON a.id = k.api_id LEFT JOIN consumers c ON c.id = k.consumer_id \
         WHERE k.hash = ?",
        super::invalidations::statement_ms(backend)
    );
    let stmt = Statement::from_sql_and_values(backend, super::sql(backend, &text), [hash.to_hex().into()]);
    let Some(row) = db.query_one_raw(stmt).await? else {
        return Ok(None);
    };
    let k = key::Model::from_query_result(&row, "")?;
    let read_ms: i64 = row.try_get("", "read_ms")?;
    let successor_max: Option<i32> = row.try_get("", "successor_max")?;
    let consumer = match (&k.consumer_id, row.try_get::<Option<String>>("", "c_external_id")?) {
        (Some(cid), Some(external_id)) => Some(ConsumerData {
            id: cid.clone(),
            external_id,
            meta: row.try_get::<Option<Value>>("", "c_meta")?.unwrap_or(Value::Null),
        }),
        _ => None,
    };
    Ok(Some(KeyRecordData {
        scopes: serde_json::from_value(k.scopes).unwrap_or_default(),
        ratelimit: k.ratelimit.and_then(|v| serde_json::from_value(v).ok()),
        credits: k.credits.and_then(|v| serde_json::from_value(v).ok()),
        ip_allowlist: k.ip_allowlist.and_then(|v| serde_json::from_value(v).ok()),
        successor_version: successor_max.filter(|m| *m > k.version),
        id: k.id,
        start: k.start,
        tenant_id: k.tenant_id,
        api_id: k.api_id,
        lineage_id: k.lineage_id,
        version: k.version,
        is_root: k.is_root,
        name: k.name,
        meta: k.meta,
        enabled: k.enabled,
        expires_at: k.expires_at,
        grace_ends_at: k.grace_ends_at,
        superseded_at: k.superseded_at,
        revoked_at: k.revoked_at,
        created_at: k.created_at,
        consumer,
        read_ms,
    }))
}

//! The one commit path. An operation describes its side effects in a [`Change`] while it
//! writes its rows; [`commit`] then writes the outbox events, the audit entries and the
//! invalidation log in the same transaction, commits, and only then drops the changed keys from every cache and announces
//! the created ones — always in that order, so a caller cannot forget one or do them twice.

use sea_orm::DatabaseTransaction;
use serde_json::Value;

use super::{Ctx, ServiceError};
use crate::audit::Entry;
use crate::cache::KeyCache;
use crate::domain::{EventType, KeyHash, Origin, TenantId};
use crate::notify::{self, Audience};
use crate::state::AppState;

/// One event to write to the outbox.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub data: Value,
    pub audience: Audience,
}

/// What a change does besides its rows.
#[derive(Debug, Default)]
pub struct Change {
    entries: Vec<Entry>,
    events: Vec<Event>,
    invalidate: Vec<KeyHash>,
    created: Vec<KeyHash>,
    credits_changed: Vec<String>,
}

impl Change {
    /// Appends an audit entry (written last, in the same transaction).
    pub fn audit(&mut self, e: Entry) {
        self.entries.push(e);
    }

    /// Emits an event into the outbox for the audience (the team's endpoints always).
    pub fn emit(&mut self, kind: EventType, data: Value, audience: &Audience) {
        self.events.push(Event { kind, data, audience: audience.clone() });
    }

    /// The cached records of these keys must go, on every node, once the change is committed.
    pub fn invalidate(&mut self, hashes: impl IntoIterator<Item = KeyHash>) {
        self.invalidate.extend(hashes);
    }

    /// The cached record of the key with this stored hash must go.
    pub fn invalidate_hex(&mut self, hex: &str) {
        self.invalidate.extend(KeyHash::from_hex(hex));
    }

    /// The credit balance of this lineage was set or taken off: a balance cached in Redis must
    /// be read again from the database.
    pub fn credits_changed(&mut self, lineage_id: &str) {
        self.credits_changed.push(lineage_id.to_owned());
    }

    /// A key with this hash now exists: every node drops a cached miss for it.
    pub fn created(&mut self, hash: KeyHash) {
        self.created.push(hash);
    }

    /// Writes the events, the audit entries and the invalidation log in `txn`, and returns the
    /// cache work to do once it is committed.
    ///
    /// # Errors
    /// Database errors: the transaction must then be dropped.
    async fn write(
        self,
        txn: &DatabaseTransaction,
        tenant: &TenantId,
        actor: &str,
        origin: &Origin,
    ) -> Result<Committed, ServiceError> {
        write_events(txn, tenant, self.events).await?;
        // Appending locks the tenant's chain head until the transaction ends.
        crate::audit::record(txn, tenant, actor, origin, self.entries).await?;
        // Last, so its time is as close to the commit as can be: every node tails this log, so
        // an invalidation the Redis bus loses is still obeyed within a poll.
        // New keys too: another node may hold a cached miss for one of them.
        crate::store::invalidations::append(txn, &self.invalidate, &self.created).await?;
        Ok(Committed { invalidate: self.invalidate, created: self.created, credits_changed: self.credits_changed })
    }
}

/// The cache work of a committed change.
#[must_use = "the caches must be told once the transaction is committed"]
#[derive(Debug, Default)]
pub struct Committed {
    invalidate: Vec<KeyHash>,
    created: Vec<KeyHash>,
    credits_changed: Vec<String>,
}

impl Committed {
    /// Drops changed credit balances and the changed keys on every node, then announces the
    /// created ones.
    pub async fn publish(self, state: &AppState) {
        let cache: &KeyCache = &state.cache;
        state.credits.forget(cache, &self.credits_changed).await;
        cache.invalidate(&self.invalidate).await;
        if !self.created.is_empty() {
            cache.announce_created(&self.created).await;
        }
    }
}

/// Runs `work` in a write transaction of the context's tenant and commits it with its side
/// effects: rows (by `work`), outbox events, audit entries, then — after commit — cache
/// invalidation and the announcement of created keys.
///
/// # Errors
/// `work`'s own errors, or database errors; nothing is committed then.
pub async fn commit<T>(
    ctx: &Ctx<'_>,
    work: impl AsyncFnOnce(&DatabaseTransaction, &mut Change) -> Result<T, ServiceError>,
) -> Result<T, ServiceError> {
    let txn = crate::store::begin_write(ctx.db()).await?;
    let mut change = Change::default();
    let value = work(&txn, &mut change).await?;
    let done = change.write(&txn, &ctx.tenant, &ctx.actor_id(), &ctx.origin).await?;
    txn.commit().await?;
    done.publish(ctx.state).await;
    Ok(value)
}

/// Events of one type together go out in a few statements (bulk work emits thousands).
async fn write_events(txn: &DatabaseTransaction, tenant: &TenantId, events: Vec<Event>) -> Result<(), ServiceError> {
    let mut rest = events;
    while !rest.is_empty() {
        let kind = rest[0].kind;
        let (same, other): (Vec<Event>, Vec<Event>) = rest.into_iter().partition(|e| e.kind == kind);
        rest = other;
        if let [one] = same.as_slice() {
            notify::emit(txn, tenant, kind, one.data.clone(), &one.audience).await?;
        } else {
            notify::emit_many(txn, tenant, kind, same.into_iter().map(|e| (e.data, e.audience)).collect()).await?;
        }
    }
    Ok(())
}

/// A change to a person's own account (password, two-factor sign-in): its entry goes to the
/// chain of every team the person belongs to, since each team's owners should see it. No cache
/// or outbox work: accounts are not keys.
///
/// # Errors
/// `work`'s own errors, or database errors; nothing is committed then.
pub async fn commit_account<T>(
    state: &crate::state::AppState,
    user_id: &str,
    actor: &crate::domain::Actor,
    origin: &Origin,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<(T, Entry), ServiceError>,
) -> Result<T, ServiceError> {
    let txn = crate::store::begin_write(&state.db).await?;
    let (value, entry) = work(&txn).await?;
    crate::audit::record_for_user(&txn, user_id, &actor.to_string(), origin, entry).await?;
    txn.commit().await?;
    Ok(value)
}

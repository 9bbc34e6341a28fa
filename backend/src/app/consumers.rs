//! Consumers: the provider's customers. Deleting one revokes its keys.

use serde_json::{Value, json};

use super::keys::{cancel_rotations_in, revoked_event};
use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::input::{Email, ExternalId, Meta, Name, Reason};
use crate::domain::stripe::StripeCustomerId;
use crate::domain::{ConsumerId, EventType, KeyId};
use crate::store::consumers::{self as store, ConsumerPatch, NewConsumer};
use crate::store::entities::consumer;
use crate::store::{StoreError, keys};

/// A new consumer, as an adapter received it.
#[derive(Debug, Clone, Default)]
pub struct NewConsumerInput {
    pub external_id: String,
    pub name: String,
    pub email: Option<String>,
    pub meta: Option<Value>,
    pub stripe_customer_id: Option<String>,
}

/// What to change of a consumer; `email: Some(None)` (and `stripe_customer_id`) clears it.
#[derive(Debug, Clone, Default)]
pub struct ConsumerChanges {
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub meta: Option<Value>,
    pub stripe_customer_id: Option<Option<String>>,
}

/// Parses a consumer id; a malformed one names no consumer.
///
/// # Errors
/// `NotFound`.
pub fn consumer_id(id: &str) -> Result<ConsumerId, ServiceError> {
    ConsumerId::parse(id).map_err(|_| ServiceError::NotFound("no such consumer"))
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such consumer"),
        other => other.into(),
    }
}

fn audited(c: &consumer::Model) -> Value {
    json!({
        "external_id": c.external_id, "name": c.name, "email": c.email, "meta": c.meta,
        "stripe_customer_id": c.stripe_customer_id,
    })
}

/// Creates a consumer.
///
/// # Errors
/// `Invalid` naming every bad field, `Conflict` when the external id is taken.
pub async fn create(ctx: &Ctx<'_>, input: NewConsumerInput) -> Result<consumer::Model, ServiceError> {
    ctx.require(Permission::ConsumersWrite)?;
    let mut c = Checks::default();
    let external_id = c.take("external_id", ExternalId::parse(&input.external_id));
    let name = c.take("name", Name::parse(&input.name));
    let email = match &input.email {
        Some(e) => c.take("email", Email::parse(e)).map(|e| Some(e.into_string())),
        None => Some(None),
    };
    let meta = c.take("meta", Meta::parse(input.meta.unwrap_or_else(|| json!({}))));
    let stripe_customer_id = match &input.stripe_customer_id {
        Some(s) => c.take("stripe_customer_id", StripeCustomerId::parse(s)).map(|s| Some(s.into_string())),
        None => Some(None),
    };
    let (Some(external_id), Some(name), Some(email), Some(meta), Some(stripe_customer_id)) =
        (external_id, name, email, meta, stripe_customer_id)
    else {
        return Err(ServiceError::Invalid(c.0));
    };
    let new = NewConsumer {
        external_id: external_id.into_string(),
        name: name.into_string(),
        email,
        meta: meta.into_value(),
        stripe_customer_id,
    };
    commit(ctx, async |txn, change| {
        let con = store::create(txn, &ctx.tenant, new).await?;
        change.audit(
            Entry::new(
                "consumer.created",
                "consumer",
                con.id.clone(),
                format!("Created the consumer {} ({})", con.name, con.external_id),
            )
            .with(audited(&con)),
        );
        Ok(con)
    })
    .await
}

/// Changes a consumer; every cached key of it is dropped (its meta is in every answer).
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field, `Conflict` when the new external id is taken.
pub async fn update(ctx: &Ctx<'_>, id: &str, input: ConsumerChanges) -> Result<consumer::Model, ServiceError> {
    ctx.require(Permission::ConsumersWrite)?;
    let id = consumer_id(id)?;
    let mut c = Checks::default();
    let mut patch = ConsumerPatch::default();
    if let Some(x) = &input.external_id {
        patch.external_id = c.take("external_id", ExternalId::parse(x)).map(ExternalId::into_string);
    }
    if let Some(n) = &input.name {
        patch.name = c.take("name", Name::parse(n)).map(Name::into_string);
    }
    match input.email {
        Some(Some(e)) => patch.email = c.take("email", Email::parse(&e)).map(|e| Some(e.into_string())),
        Some(None) => patch.email = Some(None),
        None => {}
    }
    if let Some(m) = input.meta {
        patch.meta = c.take("meta", Meta::parse(m)).map(Meta::into_value);
    }
    match input.stripe_customer_id {
        Some(Some(s)) => {
            patch.stripe_customer_id =
                c.take("stripe_customer_id", StripeCustomerId::parse(&s)).map(|s| Some(s.into_string()));
        }
        Some(None) => patch.stripe_customer_id = Some(None),
        None => {}
    }
    c.finish()?;
    commit(ctx, async |txn, change| {
        let before = store::get(txn, &ctx.tenant, &id).await.map_err(not_found)?;
        let after = store::update(txn, &ctx.tenant, &id, patch).await?;
        change.audit(
            Entry::new(
                "consumer.updated",
                "consumer",
                after.id.clone(),
                format!("Changed the consumer {}", after.name),
            )
            .change(audited(&before), audited(&after)),
        );
        change.invalidate(keys::hashes_of(txn, &ctx.tenant, keys::KeysOf::Consumer(&id)).await?);
        Ok(after)
    })
    .await
}

/// Deletes a consumer (softly) and revokes its live keys, announcing each revocation; returns
/// how many keys were revoked.
///
/// # Errors
/// `NotFound`.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<usize, ServiceError> {
    ctx.require(Permission::ConsumersWrite)?;
    let id = consumer_id(id)?;
    let reason = Reason::parse("consumer deleted").map_err(|m| ServiceError::Internal(anyhow::anyhow!(m)))?;
    commit(ctx, async |txn, change| {
        let gone = store::get(txn, &ctx.tenant, &id).await.map_err(not_found)?;
        store::soft_delete(txn, &ctx.tenant, &id).await?;
        // One entry for the deletion, one event per key.
        let revoked = keys::revoke_all_of_consumer(txn, &ctx.tenant, &id, reason.as_str()).await?;
        let audience = crate::notify::audience_of(txn, Some(id.as_str())).await?;
        for k in &revoked {
            change.emit(EventType::KeyRevoked, revoked_event(k, reason.as_str(), &ctx.actor_id()), &audience);
            change.invalidate_hex(&k.hash);
            cancel_rotations_in(txn, change, &KeyId::from_trusted(k.id.clone())).await?;
        }
        change.audit(
            Entry::new(
                "consumer.deleted",
                "consumer",
                id.as_str(),
                format!("Deleted the consumer {} and revoked its {} active keys", gone.name, revoked.len()),
            )
            .with(json!({
                "consumer": audited(&gone),
                "revoked_key_ids": revoked.iter().map(|k| &k.id).collect::<Vec<_>>(),
            })),
        );
        Ok(revoked.len())
    })
    .await
}

/// The consumer with this external id, created (named after it) when there is none: for
/// adapters whose callers name owners by their own ids only.
///
/// # Errors
/// `Invalid` for a bad external id, `Forbidden` when it must be created without
/// `consumers:write`.
pub async fn ensure(ctx: &Ctx<'_>, external_id: &str, name: &str) -> Result<consumer::Model, ServiceError> {
    ExternalId::parse(external_id).map_err(|m| ServiceError::field("external_id", m))?;
    if let Some(found) = store::by_external_id(ctx.db(), &ctx.tenant, external_id).await? {
        return Ok(found);
    }
    let input = NewConsumerInput { external_id: external_id.to_owned(), name: name.to_owned(), ..Default::default() };
    match create(ctx, input).await {
        // Created at the same moment by another request: that one is the consumer.
        Err(ServiceError::Conflict(_)) => store::by_external_id(ctx.db(), &ctx.tenant, external_id)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the external id is taken".into())),
        other => other,
    }
}

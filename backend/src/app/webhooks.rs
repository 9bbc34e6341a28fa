//! Webhook endpoints: where events go.

use chrono::{TimeDelta, Utc};
use serde_json::json;

use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::plan::Limit;
use crate::domain::{ConsumerId, EventType, WebhookEndpointId};
use crate::store::entities::webhook_endpoint;
use crate::store::{StoreError, consumers, notify as store};

/// A new endpoint.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    /// `None`: every event (`*`).
    pub event_types: Option<Vec<String>>,
    /// Only this consumer's events (an endpoint run by the consumer).
    pub consumer_id: Option<String>,
}

/// What to change of an endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `true` turns a disabled endpoint back on (its failure streak starts again at zero).
    pub enabled: Option<bool>,
}

/// An endpoint and its signing secret, shown this once.
#[derive(Debug)]
pub struct WithSecret {
    pub endpoint: webhook_endpoint::Model,
    pub secret: String,
}

/// The longest the old secret of an endpoint keeps signing beside the new one: a week.
pub const MAX_SECRET_OVERLAP_SECONDS: i64 = 604_800;

/// Event types an endpoint may subscribe to: `*` or known types, at least one.
pub fn check_types(c: &mut Checks, types: &[String]) {
    if types.is_empty() {
        c.push("event_types", "must name at least one event type, or *");
    }
    for (i, t) in types.iter().enumerate() {
        if t != "*" && EventType::parse(t).is_none() {
            c.push(format!("event_types[{i}]"), "is not an event type");
        }
    }
}

fn check_url(c: &mut Checks, url: &str, allow_private: bool) {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() && url.len() <= 2_000 => {
            if !allow_private && crate::notify::webhook::names_private_address(&u) {
                c.push("url", "must not be a loopback, private or link-local address");
            }
        }
        _ => c.push("url", "must be an http(s) URL of at most 2000 characters"),
    }
}

fn endpoint_id(id: &str) -> Result<&str, ServiceError> {
    WebhookEndpointId::parse(id).map(|_| id).map_err(|_| ServiceError::NotFound("no such webhook endpoint"))
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such webhook endpoint"),
        other => other.into(),
    }
}

/// What the audit log keeps of an endpoint: never its secrets.
fn audited(ep: &webhook_endpoint::Model) -> serde_json::Value {
    json!({
        "url": ep.url, "consumer_id": ep.consumer_id, "event_types": ep.event_types, "enabled": ep.enabled,
        "previous_secret_until": ep.previous_secret_until.map(crate::time::rfc3339),
    })
}

/// Adds an endpoint with a new signing secret.
///
/// # Errors
/// `Invalid` naming every bad field, `NotFound` for a consumer not of this tenant.
pub async fn create(ctx: &Ctx<'_>, input: NewEndpoint) -> Result<WithSecret, ServiceError> {
    ctx.require(Permission::WebhooksWrite)?;
    let url = input.url.trim().to_owned();
    let mut c = Checks::default();
    check_url(&mut c, &url, ctx.state.settings.webhooks.allow_private);
    let types = input.event_types.unwrap_or_else(|| vec!["*".into()]);
    check_types(&mut c, &types);
    c.finish()?;
    if input.consumer_id.is_none() {
        super::billing::admit(ctx, Limit::WebhookEndpoints, 1).await?;
    }
    let consumer_id = match &input.consumer_id {
        Some(id) => {
            let cid = ConsumerId::parse(id).map_err(|_| ServiceError::NotFound("no such consumer"))?;
            match consumers::get(ctx.db(), &ctx.tenant, &cid).await {
                Err(StoreError::NotFound) => {
                    return Err(ServiceError::NotFound("consumer_id names no consumer of this tenant"));
                }
                other => Some(other?.id),
            }
        }
        None => None,
    };
    let secret = crate::notify::webhook::new_secret();
    // Kept sealed with the master key, like every secret at rest; shown once, here.
    let stored = crate::notify::webhook::seal_secret(ctx.state.master_key.as_deref(), &secret);
    commit(ctx, async |txn, change| {
        let ep = store::create_endpoint(txn, &ctx.tenant, consumer_id, url, stored, types).await?;
        change.audit(
            Entry::new(
                "webhook_endpoint.created",
                "webhook_endpoint",
                ep.id.clone(),
                format!("Added the webhook endpoint {}", ep.url),
            )
            .with(audited(&ep)),
        );
        Ok(WithSecret { endpoint: ep, secret })
    })
    .await
}

/// Changes an endpoint's URL or event types, or turns it on or off.
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field.
pub async fn update(ctx: &Ctx<'_>, id: &str, input: EndpointChanges) -> Result<webhook_endpoint::Model, ServiceError> {
    ctx.require(Permission::WebhooksWrite)?;
    let id = endpoint_id(id)?;
    let mut c = Checks::default();
    if let Some(url) = &input.url {
        check_url(&mut c, url, ctx.state.settings.webhooks.allow_private);
    }
    if let Some(types) = &input.event_types {
        check_types(&mut c, types);
    }
    c.finish()?;
    save(ctx, id, "webhook_endpoint.updated", move |ep| {
        if let Some(url) = input.url {
            ep.url = url;
        }
        if let Some(types) = input.event_types {
            ep.event_types = serde_json::Value::from(types);
        }
        match input.enabled {
            Some(true) if !ep.enabled => {
                ep.enabled = true;
                ep.failures = 0;
                ep.failing_since = None;
                ep.disabled_at = None;
            }
            Some(false) if ep.enabled => {
                ep.enabled = false;
                ep.disabled_at = Some(Utc::now());
            }
            _ => {}
        }
    })
    .await
}

/// A new signing secret; the old one keeps signing beside it for `overlap_seconds`
/// (default a day), so receivers can switch without missing an event.
///
/// # Errors
/// `NotFound`, `Invalid` for an overlap out of bounds.
pub async fn rotate_secret(ctx: &Ctx<'_>, id: &str, overlap_seconds: Option<i64>) -> Result<WithSecret, ServiceError> {
    ctx.require(Permission::WebhooksWrite)?;
    let id = endpoint_id(id)?;
    let overlap = overlap_seconds.unwrap_or(86_400);
    if !(0..=MAX_SECRET_OVERLAP_SECONDS).contains(&overlap) {
        return Err(ServiceError::field("overlap_seconds", "must be between 0 and 604800"));
    }
    let secret = crate::notify::webhook::new_secret();
    let fresh = crate::notify::webhook::seal_secret(ctx.state.master_key.as_deref(), &secret);
    let endpoint = save(ctx, id, "webhook_endpoint.secret_rotated", move |ep| {
        ep.previous_secret = Some(std::mem::replace(&mut ep.secret, fresh));
        ep.previous_secret_until = Some(Utc::now() + TimeDelta::seconds(overlap));
    })
    .await?;
    Ok(WithSecret { endpoint, secret })
}

async fn save(
    ctx: &Ctx<'_>,
    id: &str,
    action: &'static str,
    edit: impl FnOnce(&mut webhook_endpoint::Model),
) -> Result<webhook_endpoint::Model, ServiceError> {
    commit(ctx, async |txn, change| {
        let before = store::tenant_endpoint(txn, &ctx.tenant, id).await.map_err(not_found)?;
        let mut ep = before.clone();
        edit(&mut ep);
        let after = store::save_endpoint(txn, ep).await?;
        let summary = match (action, before.enabled, after.enabled) {
            ("webhook_endpoint.secret_rotated", ..) => format!("Rotated the signing secret of {}", after.url),
            (_, true, false) => format!("Disabled the webhook endpoint {}", after.url),
            (_, false, true) => format!("Enabled the webhook endpoint {}", after.url),
            _ => format!("Changed the webhook endpoint {}", after.url),
        };
        change.audit(
            Entry::new(action, "webhook_endpoint", after.id.clone(), summary).change(audited(&before), audited(&after)),
        );
        Ok(after)
    })
    .await
}

/// Deletes an endpoint and its delivery log.
///
/// # Errors
/// `NotFound`.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<(), ServiceError> {
    ctx.require(Permission::WebhooksWrite)?;
    let id = endpoint_id(id)?;
    commit(ctx, async |txn, change| {
        let ep = store::delete_endpoint(txn, &ctx.tenant, id).await.map_err(not_found)?;
        change.audit(
            Entry::new(
                "webhook_endpoint.deleted",
                "webhook_endpoint",
                ep.id.clone(),
                format!("Deleted the webhook endpoint {}", ep.url),
            )
            .with(json!({ "before": audited(&ep) })),
        );
        Ok(())
    })
    .await
}

//! APIs: keyspaces with their own key prefix, scope catalogue, default rate limit and leak
//! policy.

use serde_json::{Value, json};

use super::policies::DefaultPolicy;
use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::gateway::GatewayConfig;
use crate::domain::input::{LeakPolicy, Name, RateLimit};
use crate::domain::stripe::MeterEventName;
use crate::domain::{ApiId, Environment, KeyPrefix, ScopeSet};
use crate::store::apis::{self as store, ApiPatch};
use crate::store::entities::api;
use crate::store::{StoreError, policies};

/// A new API, as an adapter received it.
#[derive(Debug, Clone, Default)]
pub struct NewApiInput {
    pub name: String,
    pub key_prefix: String,
    pub environment: String,
    pub scope_catalogue: Vec<String>,
}

/// A leak policy as given: the action, and the grace of `rotate` (default 900 s).
#[derive(Debug, Clone, Default)]
pub struct LeakPolicyInput {
    pub action: String,
    pub grace_seconds: Option<i64>,
}

/// What to change of an API.
#[derive(Debug, Clone, Default)]
pub struct ApiChanges {
    pub name: Option<String>,
    pub scope_catalogue: Option<Vec<String>>,
    pub default_ratelimit: Option<Option<RateLimit>>,
    pub leak_policy: Option<LeakPolicyInput>,
    /// How long access tokens for its keys live: 60 to 900 seconds.
    pub token_ttl_seconds: Option<i64>,
    /// The meter event of the team's own Stripe account its verifications are reported to;
    /// `Some(None)` stops reporting.
    pub stripe_meter_event: Option<Option<String>>,
    /// The gateway endpoint's rules; `Some(None)` goes back to the defaults.
    pub gateway: Option<Option<GatewayConfig>>,
    /// Verification also accepts imported keys of a foreign format.
    pub legacy_key_formats: Option<bool>,
}

/// The shortest and longest life of an access token.
pub const TOKEN_TTL_BOUNDS: (i64, i64) = (60, 900);

/// Parses an API id; a malformed one names no API.
///
/// # Errors
/// `NotFound`.
pub fn api_id(id: &str) -> Result<ApiId, ServiceError> {
    ApiId::parse(id).map_err(|_| ServiceError::NotFound("no such API"))
}

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("no such API"),
        other => other.into(),
    }
}

fn catalogue(c: &mut Checks, field: &str, items: &[String]) -> Option<Vec<String>> {
    if items.len() > ScopeSet::MAX {
        c.push(field, "must have at most 100 scopes");
        return None;
    }
    match ScopeSet::parse_all(items) {
        Ok(s) => Some(s.to_strings()),
        Err((i, e)) => {
            c.push(format!("{field}[{i}]"), e.to_string());
            None
        }
    }
}

fn audited(a: &api::Model) -> Value {
    json!({
        "name": a.name, "key_prefix": a.key_prefix, "environment": a.environment,
        "scope_catalogue": a.scope_catalogue, "default_ratelimit": a.default_ratelimit,
        "leak_action": a.leak_action, "leak_grace_seconds": a.leak_grace_seconds,
        "token_ttl_seconds": a.token_ttl_seconds, "stripe_meter_event": a.stripe_meter_event,
        "gateway": a.gateway, "legacy_key_formats": a.legacy_key_formats,
    })
}

/// Creates an API.
///
/// # Errors
/// `Invalid` naming every bad field, `Conflict` when the prefix and environment are taken.
pub async fn create(ctx: &Ctx<'_>, input: NewApiInput) -> Result<api::Model, ServiceError> {
    ctx.require(Permission::ApisWrite)?;
    let mut c = Checks::default();
    let name = c.take("name", Name::parse(&input.name));
    let prefix = c.take("key_prefix", KeyPrefix::parse(input.key_prefix.trim()).map_err(|e| e.to_string()));
    if prefix.as_ref().is_some_and(|p| p.as_str() == store::SYSTEM_PREFIX) {
        c.push("key_prefix", "kr is reserved for root keys");
    }
    let env = c.take("environment", Environment::parse(&input.environment).ok_or("must be live or test"));
    let cat = catalogue(&mut c, "scope_catalogue", &input.scope_catalogue);
    let (Some(name), Some(prefix), Some(env), Some(cat), true) = (name, prefix, env, cat, c.is_empty()) else {
        return Err(ServiceError::Invalid(c.0));
    };
    commit(ctx, async |txn, change| {
        let api = store::create(txn, &ctx.tenant, name.into_string(), &prefix, env, cat).await?;
        change.audit(
            Entry::new(
                "api.created",
                "api",
                api.id.clone(),
                format!("Created the API {} (keys {}_{}_…)", api.name, api.key_prefix, api.environment),
            )
            .with(audited(&api)),
        );
        Ok(api)
    })
    .await
}

/// Checks the changes of an API into a patch; errors go into `c`.
fn patch_of(c: &mut Checks, input: &ApiChanges) -> ApiPatch {
    let mut patch = ApiPatch::default();
    if let Some(n) = &input.name {
        patch.name = c.take("name", Name::parse(n)).map(Name::into_string);
    }
    if let Some(cat) = &input.scope_catalogue {
        patch.scope_catalogue = catalogue(c, "scope_catalogue", cat);
    }
    if let Some(rl) = input.default_ratelimit {
        patch.default_ratelimit =
            Some(rl.and_then(|r| r.check().map_err(|(f, m)| c.push(format!("default_ratelimit.{f}"), m)).ok()));
    }
    if let Some(lp) = &input.leak_policy {
        match LeakPolicy::parse(&lp.action, lp.grace_seconds) {
            Ok(p) => patch.leak_policy = Some((p.action.as_str().to_owned(), p.grace_seconds)),
            Err((field, m)) => c.push(format!("leak_policy.{field}"), m),
        }
    }
    if let Some(ttl) = input.token_ttl_seconds {
        let (lo, hi) = TOKEN_TTL_BOUNDS;
        if (lo..=hi).contains(&ttl) {
            patch.token_ttl_seconds = Some(ttl);
        } else {
            c.push("token_ttl_seconds", format!("must be between {lo} and {hi}"));
        }
    }
    match &input.stripe_meter_event {
        Some(Some(name)) => {
            patch.stripe_meter_event =
                c.take("stripe_meter_event", MeterEventName::parse(name)).map(|n| Some(n.into_string()));
        }
        Some(None) => patch.stripe_meter_event = Some(None),
        None => {}
    }
    match &input.gateway {
        Some(Some(g)) => match g.clone().check() {
            Ok(g) => patch.gateway = Some(serde_json::to_value(g).ok()),
            Err((field, m)) => c.push(field, m),
        },
        Some(None) => patch.gateway = Some(None),
        None => {}
    }
    patch.legacy_key_formats = input.legacy_key_formats;
    patch
}

/// Changes an API's name, scope catalogue, default rate limit or leak policy.
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field.
pub async fn update(ctx: &Ctx<'_>, id: &str, input: ApiChanges) -> Result<api::Model, ServiceError> {
    save_settings(ctx, id, input, DefaultPolicy::Keep).await
}

/// Checks what [`save_settings`] would be given, without changing anything: every field error.
///
/// # Errors
/// `NotFound`, `Forbidden`.
pub async fn check_settings(
    ctx: &Ctx<'_>,
    id: &str,
    input: &ApiChanges,
    policy: DefaultPolicy,
) -> Result<Vec<super::FieldError>, ServiceError> {
    ctx.require(Permission::ApisWrite)?;
    let id = api_id(id)?;
    store::get(ctx.db(), &ctx.tenant, &id).await.map_err(not_found)?;
    let mut c = Checks::default();
    patch_of(&mut c, input);
    let existing = policies::of_api(ctx.db(), &ctx.tenant, id.as_str()).await?;
    super::policies::plan_default(ctx, &mut c, id.as_str(), existing.as_ref(), policy);
    Ok(c.0)
}

/// Changes an API and its own rotation policy together: every error of both is reported at
/// once, and either both change or nothing does.
///
/// # Errors
/// `NotFound`, `Invalid` naming every bad field (the policy's as `policy.{field}`).
pub async fn save_settings(
    ctx: &Ctx<'_>,
    id: &str,
    input: ApiChanges,
    policy: DefaultPolicy,
) -> Result<api::Model, ServiceError> {
    ctx.require(Permission::ApisWrite)?;
    if policy != DefaultPolicy::Keep {
        ctx.require(Permission::PoliciesWrite)?;
    }
    let id = api_id(id)?;
    store::get(ctx.db(), &ctx.tenant, &id).await.map_err(not_found)?;
    let mut c = Checks::default();
    let patch = patch_of(&mut c, &input);
    let existing = policies::of_api(ctx.db(), &ctx.tenant, id.as_str()).await?;
    let planned = super::policies::plan_default(ctx, &mut c, id.as_str(), existing.as_ref(), policy);
    c.finish()?;
    commit(ctx, async |txn, change| {
        let before = store::get(txn, &ctx.tenant, &id).await.map_err(not_found)?;
        let after = store::update(txn, &ctx.tenant, &id, patch).await?;
        // Through the API every call is recorded; the settings form only records real changes.
        if policy == DefaultPolicy::Keep || audited(&before) != audited(&after) {
            change.audit(
                Entry::new("api.updated", "api", after.id.clone(), format!("Changed the API {}", after.name))
                    .change(audited(&before), audited(&after)),
            );
        }
        if let Some(planned) = planned {
            let existing = policies::of_api(txn, &ctx.tenant, id.as_str()).await?;
            // Saving the form as it was changes nothing, and records nothing.
            let unchanged = match (&existing, &planned) {
                (Some(a), Some(b)) => super::policies::same(a, b),
                (None, None) => true,
                _ => false,
            };
            if !unchanged {
                super::policies::write_policy(txn, change, &ctx.tenant, existing, planned).await?;
            }
        }
        Ok(after)
    })
    .await
    .inspect(|a| {
        ctx.state.keyring.forget_ttl(&a.id);
        ctx.state.gateways.forget(&a.id);
        ctx.state.legacy.forget();
    })
}

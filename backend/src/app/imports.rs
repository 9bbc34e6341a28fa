//! Bringing existing keys over: up to [`MAX_KEYS`] per call, in clear or by their SHA-256, each
//! with its consumer (by external id, created when missing). Keys with a fault are reported by
//! index and the rest imported; a key whose secret exists already is skipped. One import id
//! runs once: sent again with the same body it answers the same report, with another body it
//! is refused. A dry run checks everything and writes nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::keys::{catalogue_of, check_scopes};
use super::{Checks, Ctx, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::import::{ImportId, ImportedSecret, MAX_KEYS};
use crate::domain::input::{ExternalId, Meta, Name};
use crate::domain::plan::Limit;
use crate::domain::{ApiId, Environment, KeyPrefix};
use crate::store::entities::api;
use crate::store::imports::{self as store, ImportedKey};
use crate::store::{StoreError, apis};

/// One key to import, as an adapter received it.
#[derive(Debug, Clone, Default)]
pub struct ImportKeyInput {
    pub plaintext: Option<String>,
    pub sha256: Option<String>,
    pub api_id: String,
    pub external_id: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Option<Value>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// An import, as an adapter received it.
#[derive(Debug, Clone, Default)]
pub struct ImportInput {
    pub import_id: String,
    pub dry_run: bool,
    pub keys: Vec<ImportKeyInput>,
}

/// A key left out because it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub index: usize,
    pub reason: String,
    /// The existing key, when it is this team's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// A key refused: its index in the request, and the field of that key (`plaintext`,
/// `scopes[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportError {
    pub index: usize,
    pub field: String,
    pub message: String,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub import_id: String,
    pub dry_run: bool,
    pub imported: usize,
    /// The new keys' ids, in the order of the request (empty for a dry run).
    pub key_ids: Vec<String>,
    /// Consumers created for external ids that had none.
    pub consumers_created: usize,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<ImportError>,
}

/// A key that passed every check.
struct Ready {
    secret: ImportedSecret,
    api_id: String,
    external_id: String,
    name: Option<String>,
    scopes: Vec<String>,
    meta: Value,
    expires_at: Option<DateTime<Utc>>,
}

/// Checks one key; its errors name the field within the key.
fn check_key(
    i: usize,
    k: &ImportKeyInput,
    api: Option<&api::Model>,
    now: DateTime<Utc>,
    errors: &mut Vec<ImportError>,
) -> Option<Ready> {
    let mut c = Checks::default();
    let secret = match (&k.plaintext, &k.sha256) {
        (Some(p), None) => c.take("plaintext", ImportedSecret::plaintext(p)),
        (None, Some(h)) => c.take("sha256", ImportedSecret::sha256(h)),
        _ => {
            c.push("plaintext", "give the key as plaintext or as sha256, one of the two");
            None
        }
    };
    match (api, &secret) {
        (None, _) => c.push("api_id", "names no API of this team"),
        (Some(a), Some(ImportedSecret::Ours(key))) => {
            let ours = KeyPrefix::parse(&a.key_prefix).ok().zip(Environment::parse(&a.environment));
            if crate::domain::ApiKey::head_of(key.expose()) != ours {
                c.push("plaintext", format!("is a Keyroll key of another API (this one's keys start {}_{}_)", a.key_prefix, a.environment));
            }
        }
        (Some(a), Some(ImportedSecret::Foreign(_))) if !a.legacy_key_formats => c.push(
            "plaintext",
            "is not a Keyroll key: turn on legacy_key_formats for the API (PATCH /v1/apis/{id}) to import keys of another format",
        ),
        _ => {}
    }
    let external_id = c.take("external_id", ExternalId::parse(&k.external_id)).map(ExternalId::into_string);
    let name = match &k.name {
        Some(n) => c.take("name", Name::parse(n)).map(|n| Some(n.into_string())),
        None => Some(None),
    };
    let scopes = api.and_then(|a| check_scopes(&mut c, "scopes", &k.scopes, &catalogue_of(a)));
    let meta = c.take("meta", Meta::parse(k.meta.clone().unwrap_or_else(|| json!({}))));
    if k.expires_at.is_some_and(|t| t <= now) {
        c.push("expires_at", "must be in the future");
    }
    if !c.0.is_empty() {
        errors.extend(c.0.into_iter().map(|e| ImportError { index: i, field: e.field, message: e.message }));
        return None;
    }
    Some(Ready {
        secret: secret?,
        api_id: api?.id.clone(),
        external_id: external_id?,
        name: name?,
        scopes: scopes?.to_strings(),
        meta: meta?.into_value(),
        expires_at: k.expires_at,
    })
}

/// The tenant's APIs named by the keys (API keys only, not the system API).
async fn apis_named(ctx: &Ctx<'_>, keys: &[ImportKeyInput]) -> Result<HashMap<String, api::Model>, ServiceError> {
    let mut out = HashMap::new();
    let named: HashSet<&str> = keys.iter().map(|k| k.api_id.as_str()).collect();
    for id in named {
        let Ok(api_id) = ApiId::parse(id) else { continue };
        // Never the system API: its keys are root keys.
        match apis::get(ctx.db(), &ctx.tenant, &api_id).await {
            Ok(a) => {
                out.insert(id.to_owned(), a);
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Imports keys (see the module's description). `fingerprint` identifies the request's body,
/// so that a retry is told from another import with the same id.
///
/// # Errors
/// `Invalid` for a bad import id or key count, `Conflict` for an import id used with another
/// body, `PlanLimit`, database errors. Faults of single keys are in the report instead.
pub async fn import(ctx: &Ctx<'_>, input: ImportInput, fingerprint: &str) -> Result<ImportReport, ServiceError> {
    ctx.require(Permission::KeysWrite)?;
    let mut c = Checks::default();
    let import_id = c.take("import_id", ImportId::parse(&input.import_id));
    if input.keys.is_empty() || input.keys.len() > MAX_KEYS {
        c.push("keys", format!("must hold 1 to {MAX_KEYS} keys"));
    }
    let Some(import_id) = import_id else { return Err(ServiceError::Invalid(c.0)) };
    c.finish()?;
    if let Some(done) = store::find(ctx.db(), &ctx.tenant, import_id.as_str()).await? {
        if done.fingerprint != fingerprint {
            return Err(ServiceError::Conflict("this import_id was used with another request".into()));
        }
        return serde_json::from_value(done.report).map_err(|e| ServiceError::Internal(e.into()));
    }
    let now = Utc::now();
    let apis = apis_named(ctx, &input.keys).await?;
    let mut errors = Vec::new();
    let checked: Vec<(usize, Ready)> = input
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| check_key(i, k, apis.get(&k.api_id), now, &mut errors).map(|r| (i, r)))
        .collect();
    // Secrets that exist already, or twice in this request, are skipped.
    let hexes: Vec<String> = checked.iter().map(|(_, r)| r.secret.hash().to_hex()).collect();
    let taken = store::taken(ctx.db(), &hexes.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    let mut ready = Vec::with_capacity(checked.len());
    for ((i, r), hex) in checked.into_iter().zip(hexes) {
        if let Some((tenant, id)) = taken.get(&hex) {
            let ours = tenant == ctx.tenant.as_str();
            let reason = if ours { "a key with this secret exists" } else { "this secret is taken" };
            skipped.push(Skipped { index: i, reason: reason.into(), key_id: ours.then(|| id.clone()) });
        } else if !seen.insert(hex.clone()) {
            skipped.push(Skipped {
                index: i,
                reason: "the same secret is earlier in this import".into(),
                key_id: None,
            });
        } else {
            ready.push((r, hex));
        }
    }
    if !ready.is_empty() {
        super::billing::admit(ctx, Limit::ActiveKeys, u64::try_from(ready.len()).unwrap_or(u64::MAX)).await?;
    }
    let mut wanted: Vec<String> = ready.iter().map(|(r, _)| r.external_id.clone()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let known = store::consumers_by_external_id(ctx.db(), &ctx.tenant, &names).await?;
    let missing: Vec<&str> = names.iter().copied().filter(|x| !known.contains_key(*x)).collect();
    if !missing.is_empty() {
        ctx.require(Permission::ConsumersWrite)?;
    }
    let mut report = ImportReport {
        import_id: import_id.as_str().to_owned(),
        dry_run: input.dry_run,
        imported: ready.len(),
        key_ids: Vec::new(),
        consumers_created: missing.len(),
        skipped,
        errors,
    };
    if input.dry_run {
        return Ok(report);
    }
    let actor = ctx.actor_id();
    commit(ctx, async |txn, change| {
        let mut owners = known.clone();
        owners.extend(store::create_consumers(txn, &ctx.tenant, &missing).await?);
        let api_ids: HashSet<String> = ready.iter().map(|(r, _)| r.api_id.clone()).collect();
        let rows: Vec<ImportedKey> = ready
            .into_iter()
            .map(|(r, hex)| {
                change.created(r.secret.hash());
                ImportedKey {
                    consumer_id: owners.get(&r.external_id).cloned().unwrap_or_default(),
                    api_id: r.api_id,
                    start: r.secret.start(),
                    hash: hex,
                    name: r.name,
                    scopes: r.scopes,
                    meta: r.meta,
                    expires_at: r.expires_at,
                }
            })
            .collect();
        report.key_ids = store::insert_keys(txn, &ctx.tenant, &actor, rows).await?;
        let summary = format!(
            "Imported {} keys ({} consumers created, {} skipped, {} refused) as {}",
            report.imported,
            report.consumers_created,
            report.skipped.len(),
            report.errors.len(),
            report.import_id
        );
        change.audit(Entry::new("key.imported", "import", report.import_id.clone(), summary).with(json!({
            "imported": report.imported, "consumers_created": report.consumers_created,
            "skipped": report.skipped.len(), "refused": report.errors.len(),
            "api_ids": api_ids, "first_key_id": report.key_ids.first(), "last_key_id": report.key_ids.last(),
        })));
        let stored = serde_json::to_value(&report).map_err(|e| ServiceError::Internal(e.into()))?;
        store::record(txn, &ctx.tenant, &report.import_id, fingerprint, stored, &actor).await?;
        Ok(report)
    })
    .await
}

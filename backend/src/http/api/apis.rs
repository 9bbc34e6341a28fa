//! `/v1/apis`: keyspaces.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::views::{ApiList, ApiView, Checks, CreateApi, PatchApi};
use crate::audit::Entry;
use crate::domain::input::Name;
use crate::domain::{ApiId, Environment, KeyPrefix, ScopeSet};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::idempotency;
use crate::http::json::Body;
use crate::http::pagination::{PageQuery, query};
use crate::state::AppState;
use crate::store::apis::{self, ApiPatch};

pub(crate) fn parse_id(s: &str) -> Result<ApiId, ApiError> {
    ApiId::parse(s).map_err(|_| ApiError::NotFound("no such API"))
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

/// Create an API.
#[utoipa::path(post, path = "/v1/apis", tag = "apis", request_body = CreateApi,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = ApiView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)),
    security(("root_key" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    root: Root,
    body: Body<CreateApi>,
) -> Result<HttpResponse, ApiError> {
    root.require("apis:write")?;
    let b = body.value;
    let mut c = Checks::default();
    let name = c.take("name", Name::parse(&b.name));
    let prefix = c.take("key_prefix", KeyPrefix::parse(&b.key_prefix).map_err(|e| e.to_string()));
    if prefix.as_ref().is_some_and(|p| p.as_str() == apis::SYSTEM_PREFIX) {
        c.push("key_prefix", "kr is reserved for root keys");
    }
    let env = c.take("environment", Environment::parse(&b.environment).ok_or("must be live or test"));
    let cat = catalogue(&mut c, "scope_catalogue", &b.scope_catalogue);
    c.finish()?;
    let (Some(name), Some(prefix), Some(env), Some(cat)) = (name, prefix, env, cat) else {
        return Err(ApiError::field("body", "is invalid"));
    };
    idempotency::once(&state, &req, &root.tenant_id, &body.raw, || async {
        let api =
            create_audited(&state.db, &root.tenant_id, &root.actor(), name.into_string(), &prefix, env, cat).await?;
        Ok((StatusCode::CREATED, serde_json::to_value(ApiView::from(api)).map_err(|e| ApiError::Internal(e.into()))?))
    })
    .await
}

/// List APIs, newest first.
#[utoipa::path(get, path = "/v1/apis", tag = "apis", params(PageQuery),
    responses((status = 200, body = ApiList), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("root_key" = [])))]
pub async fn list(state: web::Data<AppState>, req: HttpRequest, root: Root) -> Result<web::Json<ApiList>, ApiError> {
    root.require("apis:read")?;
    let (limit, cursor) = query::<PageQuery>(&req)?.parse()?;
    let page = apis::list(&state.db, &root.tenant_id, limit, cursor.as_ref()).await?;
    Ok(web::Json(ApiList::from_page(page)))
}

/// Read an API.
#[utoipa::path(get, path = "/v1/apis/{id}", tag = "apis", params(("id" = String, Path)),
    responses((status = 200, body = ApiView), (status = 404, body = Problem)), security(("root_key" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
) -> Result<web::Json<ApiView>, ApiError> {
    root.require("apis:read")?;
    let api = apis::get(&state.db, &root.tenant_id, &parse_id(&id)?).await?;
    Ok(web::Json(api.into()))
}

/// Update an API's name, scope catalogue or default rate limit.
#[utoipa::path(patch, path = "/v1/apis/{id}", tag = "apis", params(("id" = String, Path)), request_body = PatchApi,
    responses((status = 200, body = ApiView), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    root: Root,
    id: web::Path<String>,
    body: Body<PatchApi>,
) -> Result<web::Json<ApiView>, ApiError> {
    root.require("apis:write")?;
    let id = parse_id(&id)?;
    let b = body.value;
    let mut c = Checks::default();
    let mut patch = ApiPatch::default();
    if let Some(n) = &b.name {
        patch.name = c.take("name", Name::parse(n)).map(Name::into_string);
    }
    if let Some(cat) = &b.scope_catalogue {
        patch.scope_catalogue = catalogue(&mut c, "scope_catalogue", cat);
    }
    if let Some(rl) = b.default_ratelimit {
        let mut errs = Vec::new();
        patch.default_ratelimit = Some(rl.and_then(|r| r.check("default_ratelimit", &mut errs)));
        c.0.extend(errs);
    }
    if let Some(lp) = &b.leak_policy {
        let grace = lp.grace_seconds.unwrap_or(900);
        if !["notify", "rotate", "revoke"].contains(&lp.action.as_str()) {
            c.push("leak_policy.action", "must be notify, rotate or revoke");
        } else if !(0..=86_400).contains(&grace) {
            c.push("leak_policy.grace_seconds", "must be between 0 and 86400");
        } else {
            patch.leak_policy = Some((lp.action.clone(), if lp.action == "rotate" { grace } else { 0 }));
        }
    }
    c.finish()?;
    let api = update_audited(&state.db, &root.tenant_id, &root.actor(), &id, patch).await?;
    Ok(web::Json(api.into()))
}

/// Changes an API, recording before and after.
///
/// # Errors
/// `NotFound`, database errors.
pub(crate) async fn update_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &crate::domain::TenantId,
    actor: &str,
    id: &ApiId,
    patch: ApiPatch,
) -> Result<crate::store::entities::api::Model, crate::store::StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let before = apis::get(txn, tenant, id).await?;
        let after = apis::update(txn, tenant, id, patch).await?;
        let entry = Entry::new("api.updated", "api", after.id.clone(), format!("Changed the API {}", after.name))
            .change(audited(&before), audited(&after));
        Ok((after, vec![entry]))
    })
    .await
}

fn audited(a: &crate::store::entities::api::Model) -> serde_json::Value {
    serde_json::json!({
        "name": a.name, "key_prefix": a.key_prefix, "environment": a.environment,
        "scope_catalogue": a.scope_catalogue, "default_ratelimit": a.default_ratelimit,
        "leak_action": a.leak_action, "leak_grace_seconds": a.leak_grace_seconds,
    })
}

/// Creates an API, with its audit entry.
///
/// # Errors
/// `Conflict` when the prefix is taken, database errors.
pub(crate) async fn create_audited(
    db: &sea_orm::DatabaseConnection,
    tenant: &crate::domain::TenantId,
    actor: &str,
    name: String,
    prefix: &KeyPrefix,
    env: Environment,
    catalogue: Vec<String>,
) -> Result<crate::store::entities::api::Model, crate::store::StoreError> {
    crate::audit::write(db, tenant, actor, async |txn| {
        let api = apis::create(txn, tenant, name, prefix, env, catalogue).await?;
        let entry = Entry::new(
            "api.created",
            "api",
            api.id.clone(),
            format!("Created the API {} (keys {}_{}_…)", api.name, api.key_prefix, api.environment),
        )
        .with(audited(&api));
        Ok((api, vec![entry]))
    })
    .await
}

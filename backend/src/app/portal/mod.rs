//! The consumer portal: the provider mints a single-use link for one of its consumers; the link
//! becomes a portal session; in it the consumer sees and acts on its own keys only. Everything
//! the consumer does goes through the same operations as self-service, as `consumer:con_…`.

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Checks, Ctx, Grants, Permission, ServiceError, commit};
use crate::audit::Entry;
use crate::domain::{ConsumerId, KeyId, KeyState, PortalGrantId, TenantId};
use crate::state::AppState;
use crate::store::entities::{consumer, key, portal_grant, portal_session, signing_key};
use crate::store::{StoreError, consumers, keys, portal, signing_keys};
use crate::tokens::material;

mod branding;
pub use branding::{PortalSettings, SettingsChanges, settings, update_settings};

/// The longest a portal link lives; the default is ten minutes.
pub const MAX_LINK_SECONDS: i64 = 3_600;
pub const DEFAULT_LINK_SECONDS: i64 = 600;
/// How long a portal session lasts.
pub const SESSION_HOURS: i64 = 8;
/// The audience of portal links: only the portal takes them.
const AUDIENCE: &str = "keyroll-portal";

/// The claims of a portal link.
#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    iss: String,
    aud: String,
    sub: String,
    tid: String,
    jti: String,
    iat: i64,
    exp: i64,
    /// `link` (minted by the provider) or `magic` (sent by email).
    #[serde(default = "link_purpose")]
    pur: String,
}

fn link_purpose() -> String {
    "link".into()
}

/// How long a sign-in link sent by email works.
pub const MAGIC_LINK_MINUTES: i64 = 15;

/// What the provider asks for.
#[derive(Debug, Clone, Default)]
pub struct LinkInput {
    pub consumer_id: String,
    pub return_url: Option<String>,
    pub ttl_seconds: Option<i64>,
}

/// A minted link.
#[derive(Debug)]
pub struct Link {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

fn no_master() -> ServiceError {
    ServiceError::Conflict(
        "no master key is configured, so portal links cannot be signed (set KEYROLL_MASTER_KEY)".into(),
    )
}

/// The tenant's portal key (made on first use).
async fn portal_secret(state: &AppState, tenant: &TenantId) -> Result<[u8; 32], ServiceError> {
    let master = state.master_key.as_ref().ok_or_else(no_master)?;
    let open = |k: &signing_key::Model| master.open(&k.private_sealed).and_then(|b| material::decode_secret(&b));
    if let Some(k) =
        signing_keys::list(&state.db, tenant, signing_keys::PORTAL).await?.iter().find(|k| k.revoked_at.is_none())
    {
        return open(k).ok_or_else(|| {
            ServiceError::Internal(anyhow::anyhow!("the portal key cannot be opened with this master key"))
        });
    }
    let secret = material::random_secret();
    let sealed = master
        .seal(material::encode_secret(&secret).as_bytes())
        .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the portal key could not be sealed")))?;
    let now = Utc::now();
    let row = signing_key::Model {
        id: crate::domain::SigningKeyId::generate().into_string(),
        tenant_id: tenant.as_str().to_owned(),
        purpose: signing_keys::PORTAL.into(),
        alg: "HS256".into(),
        public_jwk: None,
        private_sealed: sealed,
        created_by: "system".into(),
        created_at: now,
        activates_at: now,
        revoked_at: None,
    };
    signing_keys::insert(&state.db, row).await?;
    // Two nodes making one at once: the oldest unrevoked wins on both.
    let keys = signing_keys::list(&state.db, tenant, signing_keys::PORTAL).await?;
    let first = keys.iter().find(|k| k.revoked_at.is_none()).ok_or(ServiceError::NotFound("no portal key"))?;
    open(first).ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("the portal key cannot be opened")))
}

/// A `return_url`: an absolute http(s) URL of at most 2 048 characters.
fn check_return_url(c: &mut Checks, u: &str) -> Option<String> {
    let ok = u.len() <= 2_048
        && url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some());
    if ok {
        Some(u.to_owned())
    } else {
        c.push("return_url", "must be an absolute http or https URL of at most 2048 characters");
        None
    }
}

/// Mints a single-use link into the portal for one of the tenant's consumers.
///
/// # Errors
/// `Invalid`, `NotFound` (no such consumer), `Conflict` without a master key.
pub async fn mint_link(ctx: &Ctx<'_>, input: LinkInput) -> Result<Link, ServiceError> {
    ctx.require(Permission::PortalWrite)?;
    let mut c = Checks::default();
    let consumer = c.take("consumer_id", ConsumerId::parse(&input.consumer_id).map_err(|e| e.to_string()));
    let ttl = input.ttl_seconds.unwrap_or(DEFAULT_LINK_SECONDS);
    if !(60..=MAX_LINK_SECONDS).contains(&ttl) {
        c.push("ttl_seconds", format!("must be between 60 and {MAX_LINK_SECONDS}"));
    }
    let return_url = input.return_url.as_deref().and_then(|u| check_return_url(&mut c, u));
    c.finish()?;
    let consumer = consumer.ok_or(ServiceError::NotFound("no such consumer"))?;
    let con = match consumers::get(ctx.db(), &ctx.tenant, &consumer).await {
        Ok(con) => con,
        Err(StoreError::NotFound) => {
            return Err(ServiceError::NotFound("consumer_id names no consumer of this tenant"));
        }
        Err(e) => return Err(e.into()),
    };
    let secret = portal_secret(ctx.state, &ctx.tenant).await?;
    let now = Utc::now();
    let expires_at = now + TimeDelta::seconds(ttl);
    let jti = PortalGrantId::generate().into_string();
    let claims = LinkClaims {
        iss: crate::tokens::issuer(&ctx.state.base_url, ctx.tenant.as_str()),
        aud: AUDIENCE.into(),
        sub: con.id.clone(),
        tid: ctx.tenant.as_str().to_owned(),
        jti: jti.clone(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
        pur: "link".into(),
    };
    let key = EncodingKey::from_secret(&secret).map_err(|e| ServiceError::Internal(e.into()))?;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| ServiceError::Internal(e.into()))?;
    let grant = portal_grant::Model {
        id: jti,
        tenant_id: ctx.tenant.as_str().to_owned(),
        consumer_id: con.id.clone(),
        purpose: "link".into(),
        return_url,
        created_at: now,
        expires_at,
        used_at: None,
    };
    commit(ctx, async |txn, change| {
        portal::add_grant(txn, grant).await?;
        change.audit(Entry::new(
            "portal.link_created",
            "consumer",
            con.id.clone(),
            format!("Opened the portal for {} with a single-use link (valid {} min)", con.name, ttl / 60),
        ));
        Ok(())
    })
    .await?;
    let url = format!("{}/portal/enter?token={token}", ctx.state.base_url.trim_end_matches('/'));
    Ok(Link { url, expires_at })
}

/// The tenant whose portal signs in by email at `/portal/{slug}/login`, if it allows it.
///
/// # Errors
/// Database errors.
pub async fn magic_tenant(
    state: &AppState,
    slug: &str,
) -> Result<Option<crate::store::entities::tenant::Model>, ServiceError> {
    if slug.len() > 64 {
        return Ok(None);
    }
    let t = match crate::store::tenants::by_slug(&state.db, slug).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let s = settings(state, &TenantId::from_trusted(t.id.clone())).await?;
    Ok(s.magic_link.then_some(t))
}

/// A sign-in link by email: for each live consumer of the tenant with this address, a
/// single-use link valid [`MAGIC_LINK_MINUTES`]. Returns `(address, link)` to send; nothing when
/// no consumer has the address (the page says the same either way).
///
/// # Errors
/// Database errors; `Conflict` without a master key.
pub async fn magic_links(
    state: &AppState,
    tenant: &TenantId,
    email: &str,
) -> Result<Vec<(String, String)>, ServiceError> {
    let found = consumers::by_email(&state.db, tenant, email).await?;
    let mut out = Vec::new();
    if found.is_empty() {
        return Ok(out);
    }
    let secret = portal_secret(state, tenant).await?;
    let key = EncodingKey::from_secret(&secret).map_err(|e| ServiceError::Internal(e.into()))?;
    for con in found {
        let now = Utc::now();
        let expires_at = now + TimeDelta::minutes(MAGIC_LINK_MINUTES);
        let jti = PortalGrantId::generate().into_string();
        let claims = LinkClaims {
            iss: crate::tokens::issuer(&state.base_url, tenant.as_str()),
            aud: AUDIENCE.into(),
            sub: con.id.clone(),
            tid: tenant.as_str().to_owned(),
            jti: jti.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            pur: "magic".into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| ServiceError::Internal(e.into()))?;
        let grant = portal_grant::Model {
            id: jti,
            tenant_id: tenant.as_str().to_owned(),
            consumer_id: con.id.clone(),
            purpose: "magic".into(),
            return_url: None,
            created_at: now,
            expires_at,
            used_at: None,
        };
        let ctx = Ctx::consumer(state, tenant.clone(), &con.id, crate::domain::Origin::default());
        commit(&ctx, async |txn, change| {
            portal::add_grant(txn, grant).await?;
            change.audit(Entry::new(
                "portal.sign_in_link_sent",
                "consumer",
                con.id.clone(),
                format!("Sent a portal sign-in link to the email address of {}", con.name),
            ));
            Ok(())
        })
        .await?;
        let email = con.email.clone().unwrap_or_default();
        out.push((email, format!("{}/portal/enter?token={token}", state.base_url.trim_end_matches('/'))));
    }
    Ok(out)
}

/// A new portal session: the cookie's token (to set) and the row.
#[derive(Debug)]
pub struct Entered {
    pub cookie: String,
    pub session: portal_session::Model,
}

/// Why a link does not open the portal.
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("the link is not valid, has expired, or was used already")]
    Unusable,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for EnterError {
    fn from(e: StoreError) -> Self {
        Self::Service(e.into())
    }
}

/// Takes a portal link, once: it becomes a session of its consumer.
///
/// # Errors
/// `Unusable` for any bad, expired or used link.
pub async fn enter(state: &AppState, token: &str) -> Result<Entered, EnterError> {
    if token.len() > 4_096 {
        return Err(EnterError::Unusable);
    }
    // The tenant names the key: read it first, then check the signature with that tenant's key.
    let unverified: LinkClaims =
        jsonwebtoken::dangerous::insecure_decode::<LinkClaims>(token).map_err(|_| EnterError::Unusable)?.claims;
    let tenant = TenantId::parse(&unverified.tid).map_err(|_| EnterError::Unusable)?;
    let secret = match portal_secret(state, &tenant).await {
        Ok(s) => s,
        Err(ServiceError::Conflict(_)) => return Err(EnterError::Unusable),
        Err(e) => return Err(e.into()),
    };
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 0;
    v.set_issuer(&[crate::tokens::issuer(&state.base_url, tenant.as_str())]);
    let key = DecodingKey::from_secret(&secret).map_err(|_| EnterError::Unusable)?;
    let claims = jsonwebtoken::decode::<LinkClaims>(token, &key, &v).map_err(|_| EnterError::Unusable)?.claims;
    if claims.tid != tenant.as_str() {
        return Err(EnterError::Unusable);
    }
    if !matches!(claims.pur.as_str(), "link" | "magic") {
        return Err(EnterError::Unusable);
    }
    let grant =
        portal::use_grant(&state.db, &claims.jti, tenant.as_str(), &claims.pur).await?.ok_or(EnterError::Unusable)?;
    if grant.consumer_id != claims.sub {
        return Err(EnterError::Unusable);
    }
    start_session(state, &tenant, &grant).await
}

async fn start_session(
    state: &AppState,
    tenant: &TenantId,
    grant: &portal_grant::Model,
) -> Result<Entered, EnterError> {
    let consumer = ConsumerId::from_trusted(grant.consumer_id.clone());
    let con = match consumers::get(&state.db, tenant, &consumer).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Err(EnterError::Unusable),
        Err(e) => return Err(e.into()),
    };
    let (cookie, digest) = crate::crypto::new_token();
    let (csrf, _) = crate::crypto::new_token();
    let now = Utc::now();
    let session = portal_session::Model {
        id: digest,
        tenant_id: tenant.as_str().to_owned(),
        consumer_id: con.id.clone(),
        csrf,
        return_url: grant.return_url.clone(),
        created_at: now,
        expires_at: now + TimeDelta::hours(SESSION_HOURS),
    };
    let ctx = Ctx::consumer(state, tenant.clone(), &con.id, crate::domain::Origin::default());
    let row = session.clone();
    commit(&ctx, async |txn, change| {
        portal::add_session(txn, row).await?;
        change.audit(Entry::new(
            "portal.signed_in",
            "consumer",
            con.id.clone(),
            format!(
                "{} entered the portal with a {} link",
                con.name,
                if grant.purpose == "magic" { "sign-in" } else { "portal" }
            ),
        ));
        Ok(())
    })
    .await?;
    Ok(Entered { cookie, session })
}

/// The portal session of a cookie, if it is current.
///
/// # Errors
/// Database errors.
pub async fn session_of(state: &AppState, cookie: &str) -> Result<Option<portal_session::Model>, ServiceError> {
    if cookie.len() > 128 {
        return Ok(None);
    }
    Ok(portal::session(&state.db, &crate::crypto::token_digest(cookie), Utc::now()).await?)
}

/// Ends a portal session.
///
/// # Errors
/// Database errors.
pub async fn sign_out(state: &AppState, session: &portal_session::Model) -> Result<(), ServiceError> {
    Ok(portal::end_session(&state.db, &session.id).await?)
}

/// The consumer's own key version, or `NotFound` (another consumer's key, a root key, or
/// another tenant's: all the same answer).
///
/// # Errors
/// `NotFound`, database errors.
pub async fn own_key(ctx: &Ctx<'_>, consumer: &str, id: &str) -> Result<key::Model, ServiceError> {
    let nothing = || ServiceError::NotFound("no such key");
    let id = KeyId::parse(id).map_err(|_| nothing())?;
    let k = match keys::get(ctx.db(), &ctx.tenant, &id, false).await {
        Ok(k) => k,
        Err(StoreError::NotFound) => return Err(nothing()),
        Err(e) => return Err(e.into()),
    };
    if k.consumer_id.as_deref() != Some(consumer) {
        return Err(nothing());
    }
    Ok(k)
}

/// The consumer behind a portal context.
///
/// # Errors
/// `NotFound` when it was deleted meanwhile.
pub async fn consumer_of(ctx: &Ctx<'_>, consumer: &str) -> Result<consumer::Model, ServiceError> {
    consumers::get(ctx.db(), &ctx.tenant, &ConsumerId::from_trusted(consumer.to_owned()))
        .await
        .map_err(|_| ServiceError::NotFound("no such consumer"))
}

/// Revokes one of the consumer's own keys, when another of its keys of the same API still works
/// (a consumer cannot lock itself out; it rotates instead).
///
/// # Errors
/// `NotFound`, `Conflict`.
pub async fn revoke_own(ctx: &Ctx<'_>, consumer: &str, id: &str) -> Result<key::Model, ServiceError> {
    let k = own_key(ctx, consumer, id).await?;
    let now = Utc::now();
    if KeyState::derive(&super::rotation::times(&k), now) == KeyState::Revoked {
        return Err(ServiceError::Conflict("the key is revoked already".into()));
    }
    let filter = keys::KeyFilter {
        consumer_id: Some(ConsumerId::from_trusted(consumer.to_owned())),
        api_id: Some(crate::domain::ApiId::from_trusted(k.api_id.clone())),
        ..keys::KeyFilter::default()
    };
    let others = keys::list(ctx.db(), &ctx.tenant, &filter, 200, None).await?;
    let another =
        others.items.iter().any(|o| o.id != k.id && KeyState::derive(&super::rotation::times(o), now).verifies());
    if !another {
        return Err(ServiceError::Conflict(
            "this is your only working key for this API: rotate it instead, so that you keep access".into(),
        ));
    }
    // Ownership is checked: revoke it as the consumer.
    let acting = Ctx::new(
        ctx.state,
        ctx.tenant.clone(),
        ctx.actor.clone(),
        Grants::only(&[Permission::KeysWrite]),
        ctx.origin.clone(),
    );
    super::keys::revoke(&acting, &k.id, "revoked by the consumer in the portal").await
}

/// Whether a new version waits for the consumer to pick it up (issued by a scheduled rotation).
///
/// # Errors
/// Database errors.
pub async fn pending_pickup(ctx: &Ctx<'_>, lineage: &str) -> Result<bool, ServiceError> {
    Ok(crate::store::policies::has_pending(ctx.db(), &ctx.tenant, lineage).await?)
}

/// The consumer acting with one more permission, on its own things only (the caller checked
/// that what is acted on is the consumer's).
fn acting_as_consumer<'a>(ctx: &Ctx<'a>, p: Permission) -> Ctx<'a> {
    Ctx::new(ctx.state, ctx.tenant.clone(), ctx.actor.clone(), Grants::only(&[p]), ctx.origin.clone())
}

/// The consumer's own notification address: `None` stops the emails.
///
/// # Errors
/// `Invalid` for a malformed address.
pub async fn set_email(ctx: &Ctx<'_>, consumer: &str, email: Option<String>) -> Result<consumer::Model, ServiceError> {
    let changes = super::consumers::ConsumerChanges { email: Some(email), ..Default::default() };
    super::consumers::update(&acting_as_consumer(ctx, Permission::ConsumersWrite), consumer, changes).await
}

/// The consumer's own webhook endpoints (those that receive only its events).
///
/// # Errors
/// Database errors.
pub async fn endpoints(
    ctx: &Ctx<'_>,
    consumer: &str,
) -> Result<Vec<crate::store::entities::webhook_endpoint::Model>, ServiceError> {
    let all = crate::store::notify::list_endpoints(ctx.db(), &ctx.tenant, 100, None).await?;
    Ok(all.items.into_iter().filter(|e| e.consumer_id.as_deref() == Some(consumer)).collect())
}

/// Adds an endpoint that receives the consumer's own events; its signing secret is returned
/// once.
///
/// # Errors
/// `Invalid` (the URL, private addresses as for every endpoint), `Conflict` at ten endpoints.
pub async fn add_endpoint(
    ctx: &Ctx<'_>,
    consumer: &str,
    url: String,
) -> Result<super::webhooks::WithSecret, ServiceError> {
    if endpoints(ctx, consumer).await?.len() >= 10 {
        return Err(ServiceError::Conflict("at most ten endpoints per consumer".into()));
    }
    let input = super::webhooks::NewEndpoint { url, event_types: None, consumer_id: Some(consumer.to_owned()) };
    super::webhooks::create(&acting_as_consumer(ctx, Permission::WebhooksWrite), input).await
}

/// Removes one of the consumer's own endpoints (another's is "not found").
///
/// # Errors
/// `NotFound`.
pub async fn remove_endpoint(ctx: &Ctx<'_>, consumer: &str, id: &str) -> Result<(), ServiceError> {
    if !endpoints(ctx, consumer).await?.iter().any(|e| e.id == id) {
        return Err(ServiceError::NotFound("no such endpoint"));
    }
    super::webhooks::delete(&acting_as_consumer(ctx, Permission::WebhooksWrite), id).await
}

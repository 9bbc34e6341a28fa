//! The portal's pages: the consumer's keys, a key with its versions, usage and rotation, and
//! the forms to rotate, pick up and revoke.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::{Chrome, Consumer, PortalError, page_with, see_other};
use crate::app::reveals::Reveal;
use crate::app::{self, ServiceError};
use crate::domain::{ApiId, ConsumerId, KeyId, KeyState};
use crate::http::web::app::{KeyRow, When};
use crate::http::web::charts::Chart;
use crate::state::AppState;
use crate::store::entities::key;
use crate::store::keys::KeyFilter;
use crate::store::{apis, keys, rotations};

/// The most keys the portal lists.
const LISTED: u64 = 200;

/// A key in the list, with its last 30 days of use drawn small.
pub struct ListedKey {
    pub row: KeyRow,
    pub spark: String,
}

/// One API's keys.
pub struct ApiGroup {
    pub name: String,
    pub keys: Vec<ListedKey>,
}

/// Days in the list's usage sparklines.
const SPARK_DAYS: i64 = 30;

/// Each key's daily verifications over the last [`SPARK_DAYS`] days (today included), drawn.
async fn sparklines(state: &AppState, me: &Consumer, ids: &[String]) -> Result<BTreeMap<String, String>, PortalError> {
    use chrono::{DurationRound, TimeDelta};
    let now = Utc::now();
    let today = now.duration_trunc(TimeDelta::days(1)).unwrap_or(now);
    let from = today - TimeDelta::days(SPARK_DAYS - 1);
    let rows =
        crate::store::usage::daily_by_key(&state.db, &me.tenant, ids, from, now).await.map_err(ServiceError::from)?;
    let mut per_key: BTreeMap<&str, BTreeMap<chrono::DateTime<Utc>, i64>> = BTreeMap::new();
    for (day, key, n) in &rows {
        *per_key.entry(key.as_str()).or_default().entry(*day).or_default() += n;
    }
    Ok(ids
        .iter()
        .map(|id| {
            let counts = per_key.get(id.as_str());
            let days: Vec<_> = (0..SPARK_DAYS)
                .map(|i| {
                    let d = from + TimeDelta::days(i);
                    (d, counts.and_then(|c| c.get(&d)).copied().unwrap_or(0))
                })
                .collect();
            (id.clone(), crate::http::web::charts::sparkline(&days))
        })
        .collect())
}

#[derive(Template)]
#[template(path = "portal/index.html")]
struct IndexPage {
    c: Chrome,
    groups: Vec<ApiGroup>,
    pickups: Vec<String>,
}

async fn consumer_keys(state: &AppState, me: &Consumer) -> Result<Vec<key::Model>, PortalError> {
    let filter =
        KeyFilter { consumer_id: Some(ConsumerId::from_trusted(me.consumer_id().to_owned())), ..KeyFilter::default() };
    Ok(keys::list(&state.db, &me.tenant, &filter, LISTED, None).await.map_err(ServiceError::from)?.items)
}

async fn api_name(state: &AppState, me: &Consumer, id: &str) -> String {
    apis::get(&state.db, &me.tenant, &ApiId::from_trusted(id.to_owned())).await.map(|a| a.name).unwrap_or_default()
}

/// `GET /portal`: the consumer's keys, by API.
///
/// # Errors
/// `Ended` without a session.
pub async fn index(state: web::Data<AppState>, me: Consumer) -> Result<HttpResponse, PortalError> {
    let mut by_api: BTreeMap<String, Vec<ListedKey>> = BTreeMap::new();
    let ctx = me.ctx(&state);
    let mut pickups = Vec::new();
    let mut lineages = std::collections::BTreeSet::new();
    let listed = consumer_keys(&state, &me).await?;
    let ids: Vec<String> = listed.iter().map(|k| k.id.clone()).collect();
    let mut sparks = sparklines(&state, &me, &ids).await?;
    for k in listed {
        if lineages.insert(k.lineage_id.clone()) && app::portal::pending_pickup(&ctx, &k.lineage_id).await? {
            pickups.push(k.id.clone());
        }
        let spark = sparks.remove(&k.id).unwrap_or_default();
        by_api.entry(k.api_id.clone()).or_default().push(ListedKey { row: KeyRow::of(&k), spark });
    }
    let mut groups = Vec::new();
    for (api, mut rows) in by_api {
        rows.sort_by(|a, b| {
            (a.row.state == "revoked").cmp(&(b.row.state == "revoked")).then(b.row.version.cmp(&a.row.version))
        });
        groups.push(ApiGroup { name: api_name(&state, &me, &api).await, keys: rows });
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    page_with(StatusCode::OK, &IndexPage { c: me.chrome(), groups, pickups })
}

/// The rotation a key takes part in.
pub struct OpenRotation {
    pub old_version: i32,
    pub new_version: i32,
    pub deadline: Option<When>,
    pub old_uses: i64,
    pub new_uses: i64,
    pub verdict: String,
    pub chart: Chart,
}

#[derive(Template)]
#[template(path = "portal/key.html")]
struct KeyPage<'a> {
    c: Chrome,
    key: KeyRow,
    api_name: String,
    versions: Vec<KeyRow>,
    open: Option<OpenRotation>,
    usage: Chart,
    range: &'static str,
    pickup: bool,
    /// `(seconds, words)` the consumer may choose from.
    overlaps: Vec<(i64, &'static str)>,
    can_rotate: bool,
    can_revoke: bool,
    notice: Option<&'a str>,
    error: Option<String>,
    base: String,
}

#[derive(Deserialize)]
pub struct RangeQuery {
    #[serde(default)]
    range: String,
}

/// The overlaps offered: within the policy's bound and self-service's.
const OVERLAPS: [(i64, &str); 6] = [
    (3_600, "1 hour"),
    (6 * 3_600, "6 hours"),
    (86_400, "1 day"),
    (3 * 86_400, "3 days"),
    (7 * 86_400, "7 days"),
    (0, "None: the current key stops at once"),
];

async fn render_key(
    state: &AppState,
    me: &Consumer,
    id: &str,
    range: &str,
    notice: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PortalError> {
    let ctx = me.ctx(state);
    let k = app::portal::own_key(&ctx, me.consumer_id(), id).await?;
    let lineage = rotations::lineage(&state.db, &me.tenant, &k.lineage_id).await.map_err(ServiceError::from)?;
    let now = Utc::now();
    let open = match rotations::open_involving(&state.db, &KeyId::from_trusted(k.id.clone()))
        .await
        .map_err(ServiceError::from)?
    {
        Some(r) if app::rotation::effective_state(&r, now) == crate::domain::rotation::RotationState::InProgress => {
            match (lineage.iter().find(|v| v.id == r.from_key_id), lineage.iter().find(|v| v.id == r.to_key_id)) {
                (Some(from), Some(to)) => {
                    let p =
                        app::rotation::progress::progress(&state.db, &r, from, to).await.map_err(ServiceError::from)?;
                    let chart = crate::http::web::keys::rotation_chart(state, &me.tenant, &r, now)
                        .await
                        .map_err(|e| PortalError::Internal(anyhow::anyhow!("{e}")))?;
                    Some(OpenRotation {
                        old_version: from.version,
                        new_version: to.version,
                        deadline: When::opt(from.grace_ends_at),
                        old_uses: p.old.uses_since_start,
                        new_uses: p.new.uses_since_start,
                        verdict: p.verdict,
                        chart,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    let ids: Vec<String> = lineage.iter().map(|v| v.id.clone()).take(300).collect();
    let range = if range == "30d" { "30d" } else { "24h" };
    let (usage, range) =
        crate::http::web::charts::usage_chart(&state.db, &me.tenant, crate::store::usage::Scope::Keys(&ids), range)
            .await
            .map_err(ServiceError::from)?;
    let state_now = KeyState::derive(&app::rotation::times(&k), now);
    let rules = app::rotation::rules_for(&state.db, &k).await.map_err(ServiceError::from)?;
    let max = rules.max_overlap.num_seconds().min(app::self_service::SELF_MAX_OVERLAP_SECONDS);
    let overlaps = OVERLAPS.iter().copied().filter(|(s, _)| *s <= max).collect();
    // Revoking is offered while another of the consumer's keys of this API still works.
    let others = consumer_keys(state, me).await?;
    let another = others
        .iter()
        .any(|o| o.id != k.id && o.api_id == k.api_id && KeyState::derive(&app::rotation::times(o), now).verifies());
    let mut versions: Vec<KeyRow> = lineage.iter().rev().map(KeyRow::of).collect();
    versions.truncate(20);
    let pickup = app::portal::pending_pickup(&ctx, &k.lineage_id).await?;
    let api_name = api_name(state, me, &k.api_id).await;
    page_with(
        status,
        &KeyPage {
            c: me.chrome(),
            key: KeyRow::of(&k),
            api_name,
            versions,
            open,
            usage,
            range,
            pickup,
            overlaps,
            can_rotate: state_now == KeyState::Valid,
            can_revoke: state_now.verifies() && another,
            notice,
            error,
            base: format!("/portal/keys/{}", k.id),
        },
    )
}

/// `GET /portal/keys/{id}`.
///
/// # Errors
/// `NotFound` for any key that is not the consumer's own.
pub async fn key_page(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    q: web::Query<RangeQuery>,
) -> Result<HttpResponse, PortalError> {
    render_key(&state, &me, &id, &q.range, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    overlap_seconds: String,
}

/// Holds a new secret for its one view and redirects there.
async fn reveal(
    state: &AppState,
    me: &Consumer,
    heading: &str,
    k: &key::Model,
    secret: &str,
) -> Result<HttpResponse, PortalError> {
    let reveal = Reveal {
        heading: heading.to_owned(),
        label: format!("Your new key (version {})", k.version),
        secret: secret.to_owned(),
        start: Some(k.start.clone()),
        note: "Put it where your application reads its key, then check that requests still succeed.".into(),
        done: format!("/portal/keys/{}", k.id),
        back: Some(("All your keys".into(), "/portal".into())),
        lines: false,
    };
    Ok(see_other(&app::reveals::hold_at(&me.ctx(state), &reveal, "/portal/shown").await?))
}

/// `POST /portal/keys/{id}/rotate`: a new version; the current one works on for the overlap.
///
/// # Errors
/// `NotFound`, `Csrf`.
pub async fn rotate(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    form: web::Form<RotateForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    let ctx = me.ctx(&state);
    let k = app::portal::own_key(&ctx, me.consumer_id(), &id).await?;
    let Ok(overlap) = form.overlap_seconds.trim().parse::<i64>() else {
        let e = "Choose how long your current key keeps working.".to_owned();
        return render_key(&state, &me, &id, "", None, Some(e), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    match app::self_service::rotate_own(&ctx, &KeyId::from_trusted(k.id.clone()), Some(overlap)).await {
        Ok(rotated) => reveal(&state, &me, "Key rotated", &rotated.key, rotated.secret.expose()).await,
        Err(ServiceError::Invalid(errs)) => {
            let e = errs
                .iter()
                .map(|e| crate::http::web::session::sentence(&format!("Overlap {}", e.message)))
                .collect::<Vec<_>>()
                .join(" ");
            render_key(&state, &me, &id, "", None, Some(e), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::Conflict(m)) => {
            render_key(&state, &me, &id, "", None, Some(crate::http::web::session::sentence(&m)), StatusCode::CONFLICT)
                .await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /portal/keys/{id}/pickup`: the version a scheduled rotation issued, shown once.
///
/// # Errors
/// `NotFound`, `Csrf`.
pub async fn pickup(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    form: web::Form<super::CsrfForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    let ctx = me.ctx(&state);
    let k = app::portal::own_key(&ctx, me.consumer_id(), &id).await?;
    match app::self_service::pickup(&ctx, &KeyId::from_trusted(k.id.clone())).await {
        Ok((new, secret)) => reveal(&state, &me, "Your new key", &new, &secret).await,
        Err(ServiceError::NotFound(_)) => {
            let e = "No new key is waiting: it was picked up already, or it expired.".to_owned();
            render_key(&state, &me, &id, "", None, Some(e), StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /portal/keys/{id}/revoke`: refused at once, after the consumer confirmed.
///
/// # Errors
/// `NotFound`, `Csrf`.
pub async fn revoke(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, PortalError> {
    me.check_csrf(&form.csrf)?;
    let ctx = me.ctx(&state);
    app::portal::own_key(&ctx, me.consumer_id(), &id).await?;
    if form.confirm != "yes" {
        let e = "Tick the box to confirm: requests with this key will be refused at once.".to_owned();
        return render_key(&state, &me, &id, "", None, Some(e), StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    match app::portal::revoke_own(&ctx, me.consumer_id(), &id).await {
        Ok(_) => {
            render_key(
                &state,
                &me,
                &id,
                "",
                Some("The key is revoked: it is refused from now on."),
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(ServiceError::Conflict(m)) => {
            render_key(&state, &me, &id, "", None, Some(crate::http::web::session::sentence(&m)), StatusCode::CONFLICT)
                .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "portal/shown.html")]
struct ShownPage {
    c: Chrome,
    reveal: Option<Reveal>,
}

#[derive(Deserialize)]
pub struct ShownQuery {
    #[serde(default)]
    k: String,
}

/// `GET /portal/shown/{id}?k=…`: a new secret, once.
///
/// # Errors
/// `Ended` without a session.
pub async fn shown(
    state: web::Data<AppState>,
    me: Consumer,
    id: web::Path<String>,
    q: web::Query<ShownQuery>,
) -> Result<HttpResponse, PortalError> {
    let reveal = app::reveals::take(&me.ctx(&state), &id, &q.k).await?;
    let status = if reveal.is_some() { StatusCode::OK } else { StatusCode::GONE };
    page_with(status, &ShownPage { c: me.chrome(), reveal })
}

//! Keys in the dashboard: a lineage's page with its timeline and settings, rotate / complete /
//! roll back / extend, disable and revoke (the new-key form is in `key_new`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use super::app::{Chrome, KeyRow, RotationRow, When, tenant};
use super::key_fields::KeyFields;
use super::session::{FormErrors, Signed, WebError, form_errors, page_with, see_other, sentence};
use crate::app::rotation::{self, RotateInput};
use crate::app::{self, ServiceError};
use crate::domain::input::Reason;
use crate::domain::rotation::{RetireMode, Trigger};
use crate::domain::{ApiId, ConsumerId, KeyId, RotationId};
use crate::state::AppState;
use crate::store::entities::{consumer, key};
use crate::store::{apis, consumers, keys, rotations};

/// "Expires after N days" from a form: `Some(None)` when left empty, `None` (with the error
/// next to the `expires_days` field) when it is not 1 to 3650.
pub(crate) fn expiry_days(raw: &str, errors: &mut FormErrors) -> Option<Option<DateTime<Utc>>> {
    match raw.trim() {
        "" => Some(None),
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(Some(Utc::now() + TimeDelta::days(n))),
            _ => {
                errors.insert("expires_days", "Enter a number of days from 1 to 3650, or leave it empty.".into());
                None
            }
        },
    }
}

/// A list typed into one field, separated by commas, spaces or new lines.
pub(crate) fn split_list(raw: &str) -> Vec<String> {
    raw.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[derive(Template)]
#[template(path = "app/key.html")]
struct KeyPage<'a> {
    c: Chrome,
    key: KeyRow,
    consumer: Option<consumer::Model>,
    api_name: String,
    api_id: String,
    versions: Vec<KeyRow>,
    /// Versions not shown (the newest `SHOWN` are).
    older: usize,
    open: Option<OpenRotation>,
    rotations: Vec<RotationRow>,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
    /// What was typed into the revoke form, shown again next to its errors.
    reason: &'a str,
    /// Every version's verifications.
    usage: super::charts::Chart,
    range: &'static str,
    base: String,
    /// The settings form of the current version: as typed, or filled from the key.
    fields: KeyFields,
    /// Its expiry as the form shows it (`YYYY-MM-DDTHH:MM`, UTC; empty for never).
    expires_input: String,
    catalogue: String,
}

/// The rotation in progress on a lineage, with its migration progress.
pub struct OpenRotation {
    pub row: RotationRow,
    pub compromise: bool,
    pub old_version: i32,
    pub new_version: i32,
    pub old_uses: i64,
    pub new_uses: i64,
    pub old_last: Option<When>,
    pub new_last: Option<When>,
    /// 0–100, when there was any traffic.
    pub new_percent: Option<u32>,
    pub verdict: String,
    /// Old versus new traffic since the rotation started.
    pub chart: super::charts::Chart,
}

/// Old versus new traffic of a rotation since it started, in buckets that fit its age.
pub(crate) async fn rotation_chart(
    state: &AppState,
    t: &crate::domain::TenantId,
    r: &crate::store::entities::rotation::Model,
    now: chrono::DateTime<Utc>,
) -> Result<super::charts::Chart, WebError> {
    let window = crate::app::rotation::migration::Window::since(r.started_at, now);
    let points = crate::app::rotation::migration::series(
        &state.db,
        t,
        std::slice::from_ref(&r.from_key_id),
        std::slice::from_ref(&r.to_key_id),
        window,
    )
    .await?;
    Ok(super::charts::migration_chart(&points, window.step))
}

/// Versions and rotations listed on a lineage's page.
const SHOWN: usize = 20;

fn key_id(s: &str) -> Result<KeyId, WebError> {
    KeyId::parse(s).map_err(|_| WebError::NotFound)
}

/// `GET /app/keys/{id}`: the lineage of a key version, its open rotation and actions.
pub async fn key_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
    q: web::Query<super::app::ListQuery>,
) -> Result<HttpResponse, WebError> {
    let shown = Shown { errors: &FormErrors::new(), notice: None, reason: "", range: &q.range, edit: None };
    render_key_shown(&state, &me, &key_id(&id)?, &shown, StatusCode::OK).await
}

/// What a key page shows beside the key: form errors, a notice, what was typed, the chart range.
struct Shown<'a> {
    errors: &'a FormErrors,
    notice: Option<&'a str>,
    reason: &'a str,
    range: &'a str,
    /// The settings form as typed, when it had errors.
    edit: Option<&'a EditKeyForm>,
}

async fn render_key(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    render_key_typed(state, me, id, errors, notice, "", status).await
}

async fn render_key_typed(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    errors: &FormErrors,
    notice: Option<&str>,
    reason: &str,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    render_key_shown(state, me, id, &Shown { errors, notice, reason, range: "24h", edit: None }, status).await
}

async fn render_key_shown(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    shown: &Shown<'_>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let Shown { errors, notice, reason, range, edit } = *shown;
    let t = tenant(me);
    let k = keys::get(&state.db, &t, id, false).await?;
    let lineage = rotations::lineage(&state.db, &t, &k.lineage_id).await?;
    let mut versions: Vec<&key::Model> = lineage.iter().collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let consumer = match &k.consumer_id {
        Some(c) => consumers::get(&state.db, &t, &ConsumerId::from_trusted(c.clone())).await.ok(),
        None => None,
    };
    let api = apis::get(&state.db, &t, &ApiId::from_trusted(k.api_id.clone())).await?;
    let all = rotations::of_lineage(&state.db, &t, &k.lineage_id).await?;
    let now = Utc::now();
    let mut open = None;
    if let Some(r) =
        all.iter().find(|r| rotation::effective_state(r, now) == crate::domain::rotation::RotationState::InProgress)
        && let (Some(from), Some(to)) =
            (lineage.iter().find(|v| v.id == r.from_key_id), lineage.iter().find(|v| v.id == r.to_key_id))
    {
        let p = crate::app::rotation::progress::progress(&state.db, r, from, to).await?;
        let chart = rotation_chart(state, &t, r, now).await?;
        open = Some(OpenRotation {
            chart,
            row: RotationRow::of(r),
            compromise: r.compromise,
            old_version: from.version,
            new_version: to.version,
            old_uses: p.old.uses_since_start,
            new_uses: p.new.uses_since_start,
            old_last: When::opt(p.old.last_used_at),
            new_last: When::opt(p.new.last_used_at),
            #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a percentage for display")]
            new_percent: p.new_share.map(|s| (s * 100.0).round() as u32),
            verdict: p.verdict,
        });
    }
    let ids: Vec<String> = lineage.iter().map(|v| v.id.clone()).take(300).collect();
    let (usage, range) =
        super::charts::usage_chart(&state.db, &t, crate::store::usage::Scope::Keys(&ids), range).await?;
    // Who did it, in words: members by name, the rest by kind.
    let actors = super::audit::Actors::of(state, me).await?;
    let label = |actor: &str| actors.label(actor);
    // The page is about the lineage's newest version that is not revoked (after a rollback, the
    // version rolled back to), or else its newest; older ones are on the consumer's page.
    let head = versions.iter().find(|v| v.revoked_at.is_none()).or(versions.first()).copied().unwrap_or(&k);
    let current = KeyRow::of(head);
    let (fields, expires_input) = match edit {
        Some(f) => (f.fields.clone(), f.expires.clone()),
        None => (KeyFields::of(head), expires_input(head.expires_at)),
    };
    let older = versions.len().saturating_sub(SHOWN);
    versions.truncate(SHOWN);
    page_with(
        status,
        &KeyPage {
            c: Chrome::of(me, "consumers"),
            key: current,
            consumer,
            catalogue: app::keys::catalogue_of(&api).to_strings().join(", "),
            api_name: api.name,
            api_id: api.id,
            fields,
            expires_input,
            versions: versions
                .into_iter()
                .map(|v| {
                    let mut row = KeyRow::of(v);
                    row.created_by = label(&row.created_by);
                    row
                })
                .collect(),
            open,
            rotations: all.iter().take(SHOWN).map(RotationRow::of).collect(),
            older,
            errors,
            notice,
            reason,
            base: format!("/app/keys/{}", id.as_str()),
            usage,
            range,
        },
    )
}

/// A moment as a `datetime-local` field shows it, in UTC.
fn expires_input(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default()
}

/// What the settings form of a key sends.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EditKeyForm {
    pub csrf: String,
    /// `YYYY-MM-DDTHH:MM` in UTC (seconds allowed); empty for never.
    pub expires: String,
    #[serde(flatten)]
    pub fields: KeyFields,
}

/// Reads the expiry field: `Some(None)` when empty, `None` (with its error) when unreadable.
fn read_expiry(raw: &str, errors: &mut FormErrors) -> Option<Option<DateTime<Utc>>> {
    use chrono::NaiveDateTime;
    let raw = raw.trim();
    if raw.is_empty() {
        return Some(None);
    }
    let parsed = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|n| n.and_utc())
        .or_else(|| DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc)));
    match parsed {
        Some(t) if t > Utc::now() => Some(Some(t)),
        Some(_) => {
            errors.insert("expires", "Choose a time in the future (UTC), or leave it empty for never.".into());
            None
        }
        None => {
            errors.insert("expires", "Enter a date and time such as 2027-01-31T12:00 (UTC), or leave it empty.".into());
            None
        }
    }
}

/// `POST /app/keys/{id}/settings`: changes the name, scopes, expiry, rate limit, credits, IP
/// allowlist and metadata of a key version. Fields left as they were are not sent (so a
/// credit balance is not reset by saving another field).
pub async fn edit_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EditKeyForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let k = keys::get(&state.db, &tenant(&me), &id, false).await?;
    let mut errors = FormErrors::new();
    let was = KeyFields::of(&k);
    let expiry_changed = form.expires.trim() != expires_input(k.expires_at);
    let expires = if expiry_changed { read_expiry(&form.expires, &mut errors) } else { Some(k.expires_at) };
    let api = apis::get(&state.db, &tenant(&me), &ApiId::from_trusted(k.api_id.clone())).await?;
    let settings = form.fields.read(&app::keys::catalogue_of(&api), &mut errors);
    let (Some(expires), Some(s)) = (expires, settings) else {
        let shown = Shown { errors: &errors, notice: None, reason: "", range: "24h", edit: Some(&form) };
        return render_key_shown(&state, &me, &id, &shown, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let f = &form.fields;
    let credits_changed = (f.credits.trim(), f.refill_amount.trim(), f.refill_interval.as_str())
        != (was.credits.as_str(), was.refill_amount.as_str(), was.refill_interval.as_str());
    let changes = app::keys::KeyChanges {
        name: Some(s.name),
        scopes: Some(s.scopes),
        meta: Some(s.meta),
        expires_at: expiry_changed.then_some(expires),
        ratelimit: Some(s.ratelimit),
        credits: credits_changed.then_some(s.credits),
        ip_allowlist: Some(s.ip_allowlist),
        ..app::keys::KeyChanges::default()
    };
    match app::keys::update(&me.ctx(&state), id.as_str(), changes).await {
        Ok(_) => Ok(see_other(&format!("/app/keys/{}#settings", id.as_str()))),
        Err(ServiceError::Invalid(errs)) => {
            let errors = form_errors(&errs, &super::key_fields::error_places("expires"), "name");
            let shown = Shown { errors: &errors, notice: None, reason: "", range: "24h", edit: Some(&form) };
            render_key_shown(&state, &me, &id, &shown, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the rotate form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotateForm {
    pub csrf: String,
    /// Seconds, from the presets, or `custom`.
    pub overlap: String,
    /// Hours, when `overlap` is `custom`.
    pub custom_hours: String,
    pub retire_mode: String,
    /// The new version's expiry: `keep` (the lineage's, the default), `none`, or `days`.
    pub expires: String,
    /// With `days`: days from now, 1 to 3650.
    pub expires_days: String,
}

/// `POST /app/keys/{id}/rotate`: the new secret is on this answer only.
pub async fn rotate_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RotateForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let mut errors = FormErrors::new();
    let overlap = if form.overlap == "custom" {
        match form.custom_hours.trim().parse::<f64>() {
            #[expect(clippy::cast_possible_truncation, reason = "bounded above")]
            Ok(h) if (0.0..=720.0).contains(&h) => Some((h * 3600.0) as i64),
            _ => {
                errors.insert("custom_hours", "Enter hours from 0 to 720.".into());
                None
            }
        }
    } else {
        match form.overlap.parse::<i64>() {
            Ok(s) if (0..=2_592_000).contains(&s) => Some(s),
            _ => {
                errors.insert("overlap", "Choose how long the current key stays valid.".into());
                None
            }
        }
    };
    let expires_at = match form.expires.as_str() {
        // The form shows the date the new version keeps; "none" removes it, "days" sets another.
        "none" => Some(None),
        "days" if form.expires_days.trim().is_empty() => {
            errors.insert("expires_days", "Enter a number of days from 1 to 3650.".into());
            None
        }
        "days" => expiry_days(&form.expires_days, &mut errors),
        _ => None,
    };
    let (Some(overlap), true) = (overlap, errors.is_empty()) else {
        return render_key(&state, &me, &id, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let input = RotateInput {
        overlap_seconds: Some(overlap),
        retire_mode: RetireMode::parse(&form.retire_mode).map(|m| m.as_str().to_owned()),
        expires_at,
        ..RotateInput::new(Trigger::Manual)
    };
    match rotation::rotate_key(&me.ctx(&state), id.as_str(), false, input).await {
        Ok(r) => {
            let back =
                r.key.consumer_id.as_ref().map(|c| ("Back to the consumer".to_owned(), format!("/app/consumers/{c}")));
            let done = format!("/app/keys/{}", r.key.id);
            super::shown::reveal_key(&state, &me, "Key rotated", &r.key, r.secret.expose(), done, back).await
        }
        Err(e) => rotation_refused(&state, &me, &id, e).await,
    }
}

async fn rotation_refused(
    state: &AppState,
    me: &Signed,
    id: &KeyId,
    e: ServiceError,
) -> Result<HttpResponse, WebError> {
    let why = match e {
        ServiceError::Conflict(m) => sentence(&m),
        ServiceError::Invalid(errs) => errs
            .iter()
            .map(|f| sentence(&format!("{} {}", f.field.replace('_', " "), f.message)))
            .collect::<Vec<_>>()
            .join(" "),
        other => return Err(other.into()),
    };
    let mut errors = FormErrors::new();
    errors.insert("rotation", why);
    render_key(state, me, id, &errors, None, StatusCode::CONFLICT).await
}

/// What the disable / enable form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EnabledForm {
    pub csrf: String,
    /// `true` or `false`.
    pub enabled: String,
    /// `yes` from the confirmation page (disabling only).
    pub confirm: String,
}

/// `POST /app/keys/{id}/enabled`: disabling is immediate on every node and reversible.
pub async fn set_enabled(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let enabled = form.enabled == "true";
    if !enabled && !super::confirm::confirmed(&form.confirm) {
        return Ok(super::session::see_other(&format!("/app/keys/{}/disable", id.as_str())));
    }
    match app::keys::set_enabled(&me.ctx(&state), id.as_str(), enabled).await {
        Ok(_) => {
            let notice = if enabled {
                "The key is enabled again."
            } else {
                "The key is disabled: refused everywhere until enabled again."
            };
            render_key(&state, &me, &id, &FormErrors::new(), Some(notice), StatusCode::OK).await
        }
        Err(ServiceError::Conflict(_)) => {
            let mut errors = FormErrors::new();
            errors.insert("rotation", "A revoked key cannot be changed.".into());
            render_key(&state, &me, &id, &errors, None, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// What the revoke form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevokeForm {
    pub csrf: String,
    pub reason: String,
    /// Must repeat the key's start, as a confirmation.
    pub confirm: String,
}

/// `POST /app/keys/{id}/revoke`.
pub async fn revoke_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    id: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let id = key_id(&id)?;
    let k = keys::get(&state.db, &tenant(&me), &id, false).await?;
    let mut errors = FormErrors::new();
    if let Err(e) = Reason::parse(&form.reason) {
        errors.insert("reason", sentence(&format!("The reason {e}")));
    }
    if form.confirm.trim() != k.start {
        errors.insert("confirm", format!("Type {} to confirm.", k.start));
    }
    if !errors.is_empty() {
        return render_key_typed(&state, &me, &id, &errors, None, &form.reason, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    app::keys::revoke(&me.ctx(&state), id.as_str(), &form.reason).await?;
    render_key(
        &state,
        &me,
        &id,
        &FormErrors::new(),
        Some("The key was revoked. It is refused everywhere from now on."),
        StatusCode::OK,
    )
    .await
}

/// What the rotation action forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotationActionForm {
    pub csrf: String,
    /// `extend`: hours to add to the grace period.
    pub hours: String,
    /// `yes` from the confirmation page (`complete` and `rollback`).
    pub confirm: String,
}

/// `POST /app/rotations/{id}/{action}`: complete, rollback or extend.
pub async fn rotation_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    path: web::Path<(String, String)>,
    form: web::Form<RotationActionForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let (id, action) = path.into_inner();
    let rid = RotationId::parse(&id).map_err(|_| WebError::NotFound)?;
    if matches!(action.as_str(), "complete" | "rollback") && !super::confirm::confirmed(&form.confirm) {
        return Ok(super::session::see_other(&format!("/app/rotations/{}/{action}", rid.as_str())));
    }
    let t = tenant(&me);
    let r = rotations::get(&state.db, &t, &rid).await?;
    let back = KeyId::from_trusted(r.to_key_id.clone());
    let ctx = me.ctx(&state);
    let done = match action.as_str() {
        "complete" => rotation::complete(&ctx, &rid).await.map(|_| "The old version was retired."),
        "rollback" => rotation::rollback(&ctx, &rid).await.map(|_| "Rolled back: the old version is current again."),
        "extend" => {
            let Some(hours) = form.hours.trim().parse::<i64>().ok().filter(|h| (1..=720).contains(h)) else {
                let mut errors = FormErrors::new();
                errors.insert("hours", "Enter hours from 1 to 720.".into());
                return render_key(&state, &me, &back, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
            };
            rotation::extend(&ctx, &rid, r.grace_ends_at + TimeDelta::hours(hours))
                .await
                .map(|_| "The grace period was extended.")
        }
        _ => return Err(WebError::NotFound),
    };
    let target = if action == "rollback" { KeyId::from_trusted(r.from_key_id.clone()) } else { back };
    match done {
        Ok(notice) => render_key(&state, &me, &target, &FormErrors::new(), Some(notice), StatusCode::OK).await,
        Err(e) => rotation_refused(&state, &me, &target, e).await,
    }
}

/// `GET /app/rotations/{id}`: to the lineage page of its new version.
pub async fn rotation_page(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let rid = RotationId::parse(&id).map_err(|_| WebError::NotFound)?;
    let r = rotations::get(&state.db, &tenant(&me), &rid).await?;
    Ok(see_other(&format!("/app/keys/{}", r.to_key_id)))
}

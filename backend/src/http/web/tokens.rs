//! `/app/tokens`: the team's token signing keys with their phases (rotate, revoke), and the
//! consumer portal's branding and sign-in options.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, When, human};
use super::session::{FormErrors, Signed, WebError, form_errors, page_with, sentence};
use crate::app::portal::{PortalSettings, SettingsChanges};
use crate::app::{self, ServiceError};
use crate::state::AppState;

/// A signing key as the page shows it.
pub struct SigningRow {
    pub kid: String,
    pub phase: &'static str,
    pub phase_words: String,
    pub created: When,
    pub activates: When,
    pub retires: Option<When>,
    pub published_until: Option<When>,
    pub revoked: Option<When>,
}

#[derive(Template)]
#[template(path = "app/tokens.html")]
struct TokensPage<'a> {
    c: Chrome,
    keys: Vec<SigningRow>,
    issuer: String,
    portal: &'a PortalForm,
    schedule: &'a ScheduleForm,
    next_rotation: Option<When>,
    login_url: String,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
}

/// What the schedule form sends (and shows again with its errors).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ScheduleForm {
    pub csrf: String,
    /// `interval` or `cron`.
    pub every: String,
    pub interval_days: String,
    pub cron: String,
    pub lead_hours: String,
}

impl ScheduleForm {
    fn of(s: &app::signing_keys::SigningSchedule) -> Self {
        Self {
            csrf: String::new(),
            every: if s.cron.is_some() { "cron".into() } else { "interval".into() },
            interval_days: s.interval_days.map(|d| d.to_string()).unwrap_or_default(),
            cron: s.cron.clone().unwrap_or_default(),
            lead_hours: format_hours(s.lead_seconds),
        }
    }

    /// The changes, or the errors of fields that are not numbers.
    fn changes(&self) -> Result<app::signing_keys::ScheduleChanges, FormErrors> {
        let mut errors = FormErrors::new();
        let max = app::signing_keys::MAX_LEAD_SECONDS / 3_600;
        let lead =
            self.lead_hours.trim().parse::<f64>().ok().filter(|h| h.is_finite() && (0.0..=max as f64).contains(h));
        if lead.is_none() {
            errors.insert("schedule_lead_hours", format!("Enter hours from 0 to {max}, such as 1 or 0.5."));
        }
        let mut ch = app::signing_keys::ScheduleChanges::default();
        if self.every == "cron" {
            if self.cron.trim().is_empty() {
                errors.insert("cron", "Enter a cron expression, such as 0 3 1 * * (03:00 UTC on the 1st).".into());
            }
            ch.cron = Some(self.cron.trim().to_owned());
        } else {
            match self.interval_days.trim().parse::<i64>().ok().filter(|d| (1..=3_650).contains(d)) {
                Some(d) => ch.interval_days = Some(d),
                None => {
                    errors.insert("interval_days", "Enter whole days from 1 to 3650.".into());
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        #[expect(clippy::cast_possible_truncation, reason = "checked to be within 0..=168 hours")]
        {
            ch.lead_seconds = lead.map(|h| (h * 3_600.0).round() as i64);
        }
        Ok(ch)
    }
}

fn format_hours(seconds: i64) -> String {
    if seconds % 3_600 == 0 {
        (seconds / 3_600).to_string()
    } else {
        #[expect(clippy::cast_precision_loss, reason = "at most a week of seconds")]
        let h = seconds as f64 / 3_600.0;
        format!("{h:.2}").trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// What the portal form sends (and shows again with its errors).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PortalForm {
    pub csrf: String,
    pub display_name: String,
    pub logo_url: String,
    pub accent_color: String,
    pub support_url: String,
    /// `on` when ticked.
    pub magic_link: String,
}

impl PortalForm {
    fn of(s: &PortalSettings) -> Self {
        Self {
            csrf: String::new(),
            display_name: s.display_name.clone().unwrap_or_default(),
            logo_url: s.logo_url.clone().unwrap_or_default(),
            accent_color: s.accent_color.clone().unwrap_or_default(),
            support_url: s.support_url.clone().unwrap_or_default(),
            magic_link: if s.magic_link { "on".into() } else { String::new() },
        }
    }

    fn changes(&self) -> SettingsChanges {
        let opt = |s: &str| Some(Some(s.trim().to_owned()).filter(|s| !s.is_empty()));
        SettingsChanges {
            display_name: opt(&self.display_name),
            logo_url: opt(&self.logo_url),
            accent_color: opt(&self.accent_color),
            support_url: opt(&self.support_url),
            magic_link: Some(self.magic_link == "on"),
        }
    }
}

/// A form the page shows again as it was sent (with its errors).
enum Sent<'a> {
    Nothing,
    Portal(&'a PortalForm),
    Schedule(&'a ScheduleForm),
}

async fn render(
    state: &AppState,
    me: &Signed,
    sent: Sent<'_>,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let ctx = me.ctx(state);
    let t = me.tenant_id();
    let mut keys = app::signing_keys::list(&ctx).await?;
    keys.reverse();
    let keys = keys
        .into_iter()
        .map(|k| SigningRow {
            published_until: When::opt(k.unpublished_at()),
            kid: k.row.id,
            phase: k.phase.as_str(),
            phase_words: human(k.phase.as_str()),
            created: When::of(k.row.created_at),
            activates: When::of(k.row.activates_at),
            retires: When::opt(k.superseded_at),
            revoked: When::opt(k.row.revoked_at),
        })
        .collect();
    let settings = app::portal::settings(state, &t).await?;
    let shown = PortalForm::of(&settings);
    let plan = ScheduleForm::of(&app::signing_keys::schedule(state, &t).await?);
    let next_rotation = When::opt(app::signing_keys::next_rotation(state, &t).await?);
    let tenant = crate::store::tenants::get(&state.db, &t).await.map_err(ServiceError::from)?;
    let base = state.base_url.trim_end_matches('/');
    page_with(
        status,
        &TokensPage {
            c: Chrome::of(me, "tokens"),
            keys,
            issuer: crate::tokens::issuer(base, t.as_str()),
            portal: if let Sent::Portal(f) = sent { f } else { &shown },
            schedule: if let Sent::Schedule(f) = sent { f } else { &plan },
            next_rotation,
            login_url: format!("{base}/portal/{}/login", tenant.slug),
            errors,
            notice,
        },
    )
}

/// `GET /app/tokens`.
///
/// # Errors
/// Admins and owners only.
pub async fn page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    me.require_admin()?;
    render(&state, &me, Sent::Nothing, &FormErrors::new(), None, StatusCode::OK).await
}

/// What the signing-key forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SigningForm {
    pub csrf: String,
    /// Hours between publication and signing (rotate).
    pub lead_hours: String,
}

/// `POST /app/tokens/rotate`: a new signing key, published now, signing after the lead.
///
/// # Errors
/// Admins and owners only.
pub async fn rotate(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<SigningForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let max = app::signing_keys::MAX_LEAD_SECONDS / 3_600;
    let Some(hours) = form.lead_hours.trim().parse::<i64>().ok().filter(|h| (0..=max).contains(h)) else {
        let mut errors = FormErrors::new();
        errors.insert("lead_hours", format!("Enter whole hours from 0 to {max}."));
        return render(&state, &me, Sent::Nothing, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    match app::signing_keys::rotate(&me.ctx(&state), Some(hours * 3_600)).await {
        Ok(k) => {
            let notice = format!(
                "Rotation started: {} is published now and signs from {}.",
                k.row.id,
                When::of(k.row.activates_at).exact
            );
            render(&state, &me, Sent::Nothing, &FormErrors::new(), Some(&notice), StatusCode::OK).await
        }
        Err(ServiceError::Conflict(m)) => {
            let mut errors = FormErrors::new();
            errors.insert("lead_hours", sentence(&m));
            render(&state, &me, Sent::Nothing, &errors, None, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /app/tokens/{kid}/revoke`: withdrawn at once.
///
/// # Errors
/// Admins and owners only; `NotFound`.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    kid: web::Path<String>,
    form: web::Form<SigningForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let k = app::signing_keys::revoke(&me.ctx(&state), &kid).await?;
    let notice = format!("{} is revoked: it left the key set, and the tokens it signed are refused.", k.row.id);
    render(&state, &me, Sent::Nothing, &FormErrors::new(), Some(&notice), StatusCode::OK).await
}

/// `POST /app/tokens/portal`: the portal's branding and sign-in options.
///
/// # Errors
/// Admins and owners only.
pub async fn save_portal(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<PortalForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    match app::portal::update_settings(&me.ctx(&state), form.changes()).await {
        Ok(_) => {
            render(&state, &me, Sent::Nothing, &FormErrors::new(), Some("Portal settings saved."), StatusCode::OK).await
        }
        Err(ServiceError::Invalid(errs)) => {
            let fields = [
                ("display_name", "display_name", ""),
                ("logo_url", "logo_url", "Enter an https address of an image, or leave it empty."),
                ("accent_color", "accent_color", "Enter a colour as #rrggbb, or leave it empty."),
                ("support_url", "support_url", "Enter an http(s) or mailto: address, or leave it empty."),
            ];
            let errors = form_errors(&errs, &fields, "display_name");
            render(&state, &me, Sent::Portal(&form), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /app/tokens/schedule`: when the signing key is replaced on its own.
///
/// # Errors
/// Admins and owners only.
pub async fn save_schedule(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<ScheduleForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let changes = match form.changes() {
        Ok(c) => c,
        Err(errors) => {
            return render(&state, &me, Sent::Schedule(&form), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match app::signing_keys::set_schedule(&me.ctx(&state), changes).await {
        Ok(_) => {
            render(&state, &me, Sent::Nothing, &FormErrors::new(), Some("Signing schedule saved."), StatusCode::OK)
                .await
        }
        Err(ServiceError::Invalid(errs)) => {
            let fields = [
                ("interval_days", "interval_days", ""),
                ("cron", "cron", ""),
                (
                    "lead_seconds",
                    "schedule_lead_hours",
                    "The lead must be shorter than the time between two rotations, and at most 168 hours.",
                ),
            ];
            let errors = form_errors(&errs, &fields, "interval_days");
            render(&state, &me, Sent::Schedule(&form), &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(e.into()),
    }
}

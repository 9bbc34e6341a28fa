//! `POST /v1/portal/sessions` and `GET/PATCH /v1/portal/settings`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::portal::{LinkInput, PortalSettings, SettingsChanges};
use crate::app::{self, Permission};
use crate::http::auth::Root;
use crate::http::errors::{ApiError, Problem};
use crate::http::json::Body;
use crate::http::json::double_option;
use crate::state::AppState;

/// `POST /v1/portal/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortalSession {
    pub consumer_id: String,
    /// Where the portal's "Back" link leads: your own app (absolute http or https URL).
    pub return_url: Option<String>,
    /// How long the link may wait for its one use: 60 to 3600 seconds (default 600).
    pub ttl_seconds: Option<i64>,
}

/// A single-use link into the portal.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLink {
    /// `{public_url}/portal/enter?token=…`: send the consumer there.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Open the consumer portal for one of your consumers: a single-use link, valid up to an hour.
#[utoipa::path(post, path = "/v1/portal/sessions", tag = "portal", request_body = CreatePortalSession,
    responses((status = 201, body = PortalLink), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("root_key" = [])))]
pub async fn create_session(
    state: web::Data<AppState>,
    root: Root,
    body: Body<CreatePortalSession>,
) -> Result<HttpResponse, ApiError> {
    let b = body.value;
    let input = LinkInput { consumer_id: b.consumer_id, return_url: b.return_url, ttl_seconds: b.ttl_seconds };
    let link = app::portal::mint_link(&root.ctx(&state), input).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(PortalLink { url: link.url, expires_at: link.expires_at }))
}

/// The portal's branding and sign-in options.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSettingsView {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_color: Option<String>,
    pub support_url: Option<String>,
    pub magic_link: bool,
    /// Where consumers sign in by email when `magic_link` is on.
    pub login_url: String,
}

impl PortalSettingsView {
    fn of(s: PortalSettings, login_url: String) -> Self {
        Self {
            display_name: s.display_name,
            logo_url: s.logo_url,
            accent_color: s.accent_color,
            support_url: s.support_url,
            magic_link: s.magic_link,
            login_url,
        }
    }
}

/// `PATCH /v1/portal/settings`: `null` clears a field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPortalSettings {
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    /// An https URL.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub logo_url: Option<Option<String>>,
    /// `#rrggbb`.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub accent_color: Option<Option<String>>,
    /// An http(s) or mailto: URL.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<String>)]
    pub support_url: Option<Option<String>>,
    pub magic_link: Option<bool>,
}

async fn login_url(state: &AppState, root: &Root) -> Result<String, ApiError> {
    let t = crate::store::tenants::get(&state.db, &root.tenant_id).await?;
    Ok(format!("{}/portal/{}/login", state.base_url.trim_end_matches('/'), t.slug))
}

/// The portal's branding and sign-in options.
#[utoipa::path(get, path = "/v1/portal/settings", tag = "portal",
    responses((status = 200, body = PortalSettingsView), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn get_settings(state: web::Data<AppState>, root: Root) -> Result<web::Json<PortalSettingsView>, ApiError> {
    root.require(Permission::PortalWrite)?;
    let s = app::portal::settings(&state, &root.tenant_id).await?;
    Ok(web::Json(PortalSettingsView::of(s, login_url(&state, &root).await?)))
}

/// Change the portal's branding and sign-in options.
#[utoipa::path(patch, path = "/v1/portal/settings", tag = "portal", request_body = PatchPortalSettings,
    responses((status = 200, body = PortalSettingsView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)),
    security(("root_key" = [])))]
pub async fn update_settings(
    state: web::Data<AppState>,
    root: Root,
    body: Body<PatchPortalSettings>,
) -> Result<web::Json<PortalSettingsView>, ApiError> {
    let b = body.value;
    let changes = SettingsChanges {
        display_name: b.display_name,
        logo_url: b.logo_url,
        accent_color: b.accent_color,
        support_url: b.support_url,
        magic_link: b.magic_link,
    };
    let s = app::portal::update_settings(&root.ctx(&state), changes).await?;
    Ok(web::Json(PortalSettingsView::of(s, login_url(&state, &root).await?)))
}

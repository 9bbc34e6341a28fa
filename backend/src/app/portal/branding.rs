//! A tenant's portal branding and sign-in options, kept in the tenant's settings (`portal`).

use serde::{Deserialize, Serialize};

use crate::app::{Checks, Ctx, Permission, ServiceError};
use crate::domain::TenantId;
use crate::state::AppState;

/// Branding and sign-in options of a tenant's portal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortalSettings {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    pub accent_color: Option<String>,
    pub support_url: Option<String>,
    /// Consumers may ask for a sign-in link by email at `/portal/{tenant_slug}/login`.
    #[serde(default)]
    pub magic_link: bool,
}

/// Changes to the settings; `Some(None)` clears a field.
#[derive(Debug, Clone, Default)]
pub struct SettingsChanges {
    pub display_name: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
    pub accent_color: Option<Option<String>>,
    pub support_url: Option<Option<String>>,
    pub magic_link: Option<bool>,
}

const SETTING: &str = "portal";

/// The tenant's portal settings.
///
/// # Errors
/// Database errors.
pub async fn settings(state: &AppState, tenant: &TenantId) -> Result<PortalSettings, ServiceError> {
    crate::app::tenants::setting(state, tenant, SETTING).await
}

fn https_url(c: &mut Checks, field: &str, u: &str) {
    let ok = u.len() <= 2_048 && url::Url::parse(u).is_ok_and(|p| p.scheme() == "https" && p.host().is_some());
    if !ok {
        c.push(field, "must be an https URL of at most 2048 characters");
    }
}

/// Changes the portal's branding and sign-in options.
///
/// # Errors
/// `Invalid` naming every bad field.
pub async fn update_settings(ctx: &Ctx<'_>, ch: SettingsChanges) -> Result<PortalSettings, ServiceError> {
    ctx.require(Permission::PortalWrite)?;
    let mut c = Checks::default();
    let mut s = settings(ctx.state, &ctx.tenant).await?;
    let before = s.clone();
    if let Some(v) = ch.display_name {
        if let Some(n) = &v {
            c.take("display_name", crate::domain::input::Name::parse(n));
        }
        s.display_name = v.map(|n| n.trim().to_owned());
    }
    if let Some(v) = ch.logo_url {
        if let Some(u) = &v {
            https_url(&mut c, "logo_url", u);
        }
        s.logo_url = v;
    }
    if let Some(v) = ch.support_url {
        if let Some(u) = &v {
            let ok = u.len() <= 2_048
                && (u.starts_with("mailto:") && u.len() > 7
                    || url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.host().is_some()));
            if !ok {
                c.push("support_url", "must be an http(s) or mailto: URL of at most 2048 characters");
            }
        }
        s.support_url = v;
    }
    if let Some(v) = ch.accent_color {
        if let Some(col) = &v {
            let ok = col.len() == 7 && col.starts_with('#') && col[1..].chars().all(|ch| ch.is_ascii_hexdigit());
            if !ok {
                c.push("accent_color", "must be a colour as #rrggbb");
            }
        }
        s.accent_color = v.map(|col| col.to_ascii_lowercase());
    }
    if let Some(m) = ch.magic_link {
        s.magic_link = m;
    }
    c.finish()?;
    if s == before {
        return Ok(s);
    }
    crate::app::tenants::put_setting(
        ctx,
        SETTING,
        &before,
        &s,
        "portal.settings_updated",
        "Changed the consumer portal's branding or sign-in",
    )
    .await?;
    Ok(s)
}

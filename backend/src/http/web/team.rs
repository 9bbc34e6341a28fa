//! The team: its members and their roles, and invitations by email. Owners and admins manage
//! members; only owners make or unmake owners, and a team always keeps one owner.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::app::Chrome;
use super::session::{FormErrors, Role, Signed, WebError, form_errors, page_with, sentence};
use crate::app::{self, ServiceError};
use crate::domain::input::Email;
use crate::state::AppState;
use crate::store::accounts;

/// A member as the page shows it.
pub struct MemberRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub invited: bool,
    pub is_me: bool,
    /// Whether the viewer may change this member.
    pub editable: bool,
    /// Whether the viewer may make a password link for them (a member of this team alone).
    pub linkable: bool,
}

#[derive(Template)]
#[template(path = "app/team.html")]
struct TeamPage<'a> {
    c: Chrome,
    members: Vec<MemberRow>,
    roles: Vec<&'static str>,
    form: &'a InviteForm,
    errors: &'a FormErrors,
    notice: Option<String>,
    /// The team's own Stripe account (owners only).
    stripe: Option<app::billing::consumers::Connection>,
}

/// What the invitation form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InviteForm {
    pub csrf: String,
    pub email: String,
    pub role: String,
}

/// The roles `me` may hand out.
fn grantable(me: &Signed) -> Vec<&'static str> {
    match me.role {
        Role::Owner => vec!["owner", "admin", "developer", "viewer"],
        Role::Admin => vec!["admin", "developer", "viewer"],
        _ => Vec::new(),
    }
}

/// May `me` change a member who has `role`?
fn may_manage(me: &Signed, role: &str) -> bool {
    me.role.can_administer() && (me.role == Role::Owner || role != "owner")
}

/// `GET /app/team`.
pub async fn team_page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    render_fresh(&state, &me, None).await
}

/// The page with an empty invitation form (developer preselected).
async fn render_fresh(state: &AppState, me: &Signed, notice: Option<String>) -> Result<HttpResponse, WebError> {
    let form = InviteForm { role: "developer".into(), ..InviteForm::default() };
    render(state, me, &form, &FormErrors::new(), notice, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    me: &Signed,
    form: &InviteForm,
    errors: &FormErrors,
    notice: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let mut members = Vec::new();
    for (m, u) in accounts::members(&state.db, &me.tenant_id()).await? {
        let editable = may_manage(me, &m.role) && u.id != me.user.id;
        let linkable = editable && accounts::memberships(&state.db, &u.id).await?.len() == 1;
        members.push(MemberRow {
            editable,
            linkable,
            is_me: u.id == me.user.id,
            invited: u.password_hash.is_none(),
            name: u.name.clone().unwrap_or_default(),
            email: u.email,
            role: m.role,
            user_id: u.id,
        });
    }
    let stripe =
        if me.role == Role::Owner { Some(app::billing::consumers::connection(&me.ctx(state)).await?) } else { None };
    let page = TeamPage { c: Chrome::of(me, "team"), members, roles: grantable(me), form, errors, notice, stripe };
    page_with(status, &page)
}

/// What the Stripe connection form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StripeForm {
    pub csrf: String,
    pub stripe_key: String,
}

/// `POST /app/team/stripe`: owners connect the team's own Stripe account (or replace its key),
/// to bill their consumers' verifications.
pub async fn connect_stripe(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<StripeForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    let mut errors = FormErrors::new();
    match app::billing::consumers::connect(&me.ctx(&state), &form.stripe_key).await {
        Ok(c) => {
            let hint = c.key_hint.unwrap_or_default();
            render_fresh(&state, &me, Some(format!("Your Stripe account is connected ({hint})."))).await
        }
        Err(ServiceError::Invalid(errs)) => {
            let fields = [(
                "stripe_key",
                "stripe_key",
                "Paste a restricted key of your Stripe account (rk_live_… or rk_test_…).",
            )];
            let errors = form_errors(&errs, &fields, "stripe_key");
            let invite = InviteForm { role: "developer".into(), ..InviteForm::default() };
            render(&state, &me, &invite, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::Conflict(m)) => {
            errors.insert("stripe_key", sentence(&m));
            let invite = InviteForm { role: "developer".into(), ..InviteForm::default() };
            render(&state, &me, &invite, &errors, None, StatusCode::CONFLICT).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /app/team/stripe/disconnect`: owners disconnect the team's Stripe account.
pub async fn disconnect_stripe(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<super::account::CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    let notice = match app::billing::consumers::disconnect(&me.ctx(&state)).await {
        Ok(()) => "Your Stripe account is disconnected: its key is deleted and nothing more is reported.",
        Err(ServiceError::NotFound(_)) => "No Stripe account was connected.",
        Err(e) => return Err(e.into()),
    };
    render_fresh(&state, &me, Some(notice.to_owned())).await
}

/// `POST /app/team/invite`: adds the person at once; a new account gets a link (by email) to
/// choose its password.
pub async fn invite(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let mut errors = FormErrors::new();
    let invited = match app::members::invite(&me.ctx(&state), &form.email, &form.role).await {
        Ok(i) => i,
        Err(ServiceError::Invalid(errs)) => {
            let fields =
                [("email", "email", "Enter an email address."), ("role", "role", "Choose a role you may give.")];
            let errors = form_errors(&errs, &fields, "email");
            return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(ServiceError::Forbidden(_)) => {
            errors.insert("role", "Choose a role you may give.".into());
            return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e @ ServiceError::PlanLimit { .. }) => {
            errors.insert("email", sentence(&e.to_string()));
            return render(&state, &me, &form, &errors, None, StatusCode::PAYMENT_REQUIRED).await;
        }
        Err(ServiceError::Conflict(m)) => {
            errors.insert("email", sentence(&m));
            return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(e.into()),
    };
    let user = invited.user;
    let email = user.email.clone();
    let email = Email::parse(&email).map_err(|m| WebError::Internal(anyhow::anyhow!(m)))?;
    let base = state.settings.public_url.clone().unwrap_or_else(|| format!("http://{}", state.settings.listen));
    let base = base.trim_end_matches('/');
    let mut link = None;
    let (subject, body) = if user.password_hash.is_none() {
        let token = accounts::start_reset(&state.db, &user.id, TimeDelta::days(7)).await?;
        let url = format!("{base}/reset/{token}");
        link = Some(url.clone());
        (
            format!("You are invited to {} on Keyroll", me.tenant.name),
            format!(
                "{} invited you to the team {} on Keyroll as {}.\n\nChoose your password to join (the link works once, for 7 days):\n{url}\n",
                me.user.email, me.tenant.name, form.role
            ),
        )
    } else {
        (
            format!("You were added to {} on Keyroll", me.tenant.name),
            format!(
                "{} added you to the team {} on Keyroll as {}.\n\nSign in: {base}/login\n",
                me.user.email, me.tenant.name, form.role
            ),
        )
    };
    let sent = super::account::send_mail(&state, email.as_str(), &subject, body).await;
    if !sent && let Some(url) = link {
        // No email went out: the inviter passes the link on, shown once after a redirect.
        let why = if state.settings.smtp_url.is_none() {
            "This install sends no email (KEYROLL_SMTP_URL is not set)"
        } else {
            "The invitation email could not be sent"
        };
        let reveal = app::reveals::Reveal {
            heading: format!("{} was invited", email.as_str()),
            label: format!("Invitation link for {}", email.as_str()),
            secret: url,
            start: None,
            note: format!(
                "{why}: send this link to them yourself, over a channel you trust. It works once, for 7 days; with it they choose their password and join as {}.",
                form.role
            ),
            done: "/app/team".into(),
            back: None,
            lines: false,
        };
        return super::shown::show_once(&me.ctx(&state), &reveal).await;
    }
    let notice = if sent {
        format!("{} was added as {} and notified by email.", email.as_str(), form.role)
    } else {
        format!(
            "{} was added as {}. No email could be sent; they can sign in with their existing password.",
            email.as_str(),
            form.role
        )
    };
    render_fresh(&state, &me, Some(notice)).await
}

/// What the member forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemberForm {
    pub csrf: String,
    /// A role, or empty to remove the member.
    pub role: String,
}

/// `POST /app/team/{user_id}`: changes a member's role, or removes them (`role` empty).
pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    user_id: web::Path<String>,
    form: web::Form<MemberForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let t = me.tenant_id();
    let Some(target) = accounts::membership(&state.db, &user_id, t.as_str()).await? else {
        return Err(WebError::NotFound);
    };
    if !may_manage(&me, &target.role) || *user_id == me.user.id {
        return Err(WebError::Forbidden("You cannot change this member."));
    }
    if !form.role.is_empty() && !grantable(&me).contains(&form.role.as_str()) {
        return Err(WebError::Forbidden("You cannot give this role."));
    }
    let new_role = Some(form.role.as_str()).filter(|r| !r.is_empty());
    match app::members::change(&me.ctx(&state), &user_id, new_role).await {
        Ok(()) => {}
        Err(ServiceError::Conflict(_)) => return Err(WebError::Forbidden("A team needs at least one owner.")),
        Err(e) => return Err(e.into()),
    }
    let notice = match new_role {
        None => "The member was removed.".to_owned(),
        Some(r) => format!("The member is now {r}."),
    };
    render_fresh(&state, &me, Some(notice)).await
}

/// `POST /app/team/{user_id}/password-link`: a single-use link with which a member chooses a new
/// password, for an install (or a person) that email does not reach; shown once.
pub async fn password_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    user_id: web::Path<String>,
    form: web::Form<super::account::CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_admin()?;
    let ctx = me.ctx(&state);
    let token = match app::members::password_link(&ctx, &user_id).await {
        Ok(t) => t,
        Err(ServiceError::Forbidden(_)) => {
            return Err(WebError::Forbidden(
                "You cannot make a password link for this member: it is yourself, a role above yours, or an account that is in other teams too (they can use “Forgot your password?”, or the operator `keyroll user password`).",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let email = accounts::user(&state.db, &user_id).await?.email;
    let base = state.settings.public_url.clone().unwrap_or_else(|| format!("http://{}", state.settings.listen));
    let reveal = app::reveals::Reveal {
        heading: format!("Password link for {email}"),
        label: format!("Single-use password link for {email}"),
        secret: format!("{}/reset/{token}", base.trim_end_matches('/')),
        start: None,
        note: "Send it to them over a channel you trust. It works once, for 24 hours; with it they choose a new password, and their other sessions end.".into(),
        done: "/app/team".into(),
        back: None,
        lines: false,
    };
    super::shown::show_once(&ctx, &reveal).await
}

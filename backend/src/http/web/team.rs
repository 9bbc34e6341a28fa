//! The team: its members and their roles, and invitations by email. Owners and admins manage
//! members; only owners make or unmake owners, and a team always keeps one owner.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::app::Chrome;
use super::session::{FormErrors, Role, Signed, WebError, page_with};
use crate::audit::Entry;
use crate::domain::input::Email;
use crate::state::AppState;
use crate::store::{StoreError, accounts};

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
    let members = accounts::members(&state.db, &me.tenant_id())
        .await?
        .into_iter()
        .map(|(m, u)| MemberRow {
            editable: may_manage(me, &m.role) && u.id != me.user.id,
            is_me: u.id == me.user.id,
            invited: u.password_hash.is_none(),
            name: u.name.clone().unwrap_or_default(),
            email: u.email,
            role: m.role,
            user_id: u.id,
        })
        .collect();
    page_with(status, &TeamPage { c: Chrome::of(me, "team"), members, roles: grantable(me), form, errors, notice })
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
    let email = Email::parse(&form.email).map_err(|_| errors.insert("email", "Enter an email address.".into())).ok();
    if !grantable(&me).contains(&form.role.as_str()) {
        errors.insert("role", "Choose a role you may give.".into());
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let t = me.tenant_id();
    let user = accounts::invited_user(&state.db, email.as_str()).await?;
    if accounts::membership(&state.db, &user.id, t.as_str()).await?.is_some() {
        errors.insert("email", "This person is already a member.".into());
        return render(&state, &me, &form, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    crate::audit::write(&state.db, &t, &me.actor(), async |txn| {
        accounts::add_member(txn, &user.id, &t, &form.role).await?;
        let entry = Entry::new(
            "member.invited",
            "member",
            user.id.clone(),
            format!("Invited {} as {}", email.as_str(), form.role),
        )
        .with(serde_json::json!({ "email": email.as_str(), "role": form.role, "new_account": user.password_hash.is_none() }));
        Ok::<_, StoreError>(((), vec![entry]))
    })
    .await?;
    let base = state.settings.public_url.clone().unwrap_or_else(|| format!("http://{}", state.settings.listen));
    let base = base.trim_end_matches('/');
    let (subject, body) = if user.password_hash.is_none() {
        let token = accounts::start_reset(&state.db, &user.id, TimeDelta::days(7)).await?;
        (
            format!("You are invited to {} on Keyroll", me.tenant.name),
            format!(
                "{} invited you to the team {} on Keyroll as {}.\n\nChoose your password to join (the link works once, for 7 days):\n{base}/reset/{token}\n",
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
    let notice = if sent {
        format!("{} was added as {} and notified by email.", email.as_str(), form.role)
    } else {
        format!(
            "{} was added as {}, but no email could be sent: configure KEYROLL_SMTP_URL, or ask them to use “Forgot your password?”.",
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
    let txn = crate::store::begin_write(&state.db).await.map_err(StoreError::from)?;
    let who = accounts::members(&txn, &t)
        .await?
        .into_iter()
        .find(|(m, _)| m.user_id == *user_id)
        .map(|(_, u)| u.email)
        .unwrap_or_default();
    let (notice, entry) = if form.role.is_empty() {
        accounts::remove_member(&txn, &user_id, &t).await?;
        let entry = Entry::new("member.removed", "member", user_id.as_str(), format!("Removed {who} from the team"))
            .with(serde_json::json!({ "email": who, "before": { "role": target.role } }));
        ("The member was removed.".to_owned(), entry)
    } else {
        if !grantable(&me).contains(&form.role.as_str()) {
            return Err(WebError::Forbidden("You cannot give this role."));
        }
        accounts::add_member(&txn, &user_id, &t, &form.role).await?;
        let entry = Entry::new(
            "member.role_changed",
            "member",
            user_id.as_str(),
            format!("Changed the role of {who} from {} to {}", target.role, form.role),
        )
        .with(serde_json::json!({ "email": who, "before": { "role": target.role }, "after": { "role": form.role } }));
        (format!("The member is now {}.", form.role), entry)
    };
    // A team never loses its last owner.
    if !accounts::members(&txn, &t).await?.iter().any(|(m, _)| m.role == "owner") {
        return Err(WebError::Forbidden("A team needs at least one owner."));
    }
    crate::audit::record(&txn, &t, &me.actor(), vec![entry]).await?;
    txn.commit().await.map_err(StoreError::from)?;
    render_fresh(&state, &me, Some(notice)).await
}

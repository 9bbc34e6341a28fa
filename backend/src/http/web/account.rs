//! First run, sign-up, sign-in, sign-out, password reset by email, and the team switcher.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::session::{
    FormErrors, SESSION_COOKIE, SESSION_DAYS, Signed, Throttle, WebError, anon_csrf, check_anon_csrf, client_ip, page,
    page_with, removal, safe_next, see_other, session_cookie,
};
use crate::app;
use crate::config::SignupPolicy;
use crate::crypto::password;
use crate::domain::input::{Email, Name};
use crate::state::AppState;
use crate::store::{StoreError, accounts, tenants};

/// What the first-run and sign-up forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AccountForm {
    pub csrf: String,
    /// A sign-up link's token, when the install signs up by invitation.
    pub invite: String,
    pub team: String,
    pub name: String,
    pub email: String,
    pub password: String,
}

#[derive(Template)]
#[template(path = "account/setup.html")]
struct SetupPage<'a> {
    csrf: &'a str,
    first_run: bool,
    form: &'a AccountForm,
    errors: &'a FormErrors,
}

/// Why `/signup` does not take this visitor.
#[derive(Template)]
#[template(path = "account/signup_closed.html")]
struct SignupClosedPage {
    invite_only: bool,
    had_link: bool,
}

/// May a team be created at `/signup` with this sign-up link (empty when none)? Answers the page
/// that says why not, when it may not.
async fn signup_refused(state: &AppState, invite: &str) -> Result<Option<HttpResponse>, WebError> {
    let closed = |invite_only, had_link| page_with(StatusCode::FORBIDDEN, &SignupClosedPage { invite_only, had_link });
    match state.settings.signup {
        SignupPolicy::Open => Ok(None),
        SignupPolicy::Closed => closed(false, false).map(Some),
        SignupPolicy::Invite => {
            let usable = !invite.is_empty()
                && crate::store::signup_links::usable(&state.db, &crate::crypto::token_digest(invite)).await?;
            if usable { Ok(None) } else { closed(true, !invite.is_empty()).map(Some) }
        }
    }
}

/// The query of `GET /signup`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupQuery {
    pub invite: String,
}

fn with_cookie(mut res: HttpResponse, cookie: Option<actix_web::cookie::Cookie<'static>>) -> HttpResponse {
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res
}

/// Checks a new account's fields; the password is hashed only when all are fine.
fn check_account(form: &AccountForm, errors: &mut FormErrors) -> Option<(Name, Name, Email)> {
    let team = Name::parse(&form.team).map_err(|e| errors.insert("team", format!("Team name {e}."))).ok();
    let name = Name::parse(&form.name).map_err(|e| errors.insert("name", format!("Your name {e}."))).ok();
    let email = Email::parse(&form.email).map_err(|_| errors.insert("email", "Enter an email address.".into())).ok();
    let len = form.password.chars().count();
    if !(10..=128).contains(&len) {
        errors.insert("password", "Use 10 to 128 characters.".into());
    }
    match (team, name, email) {
        (Some(t), Some(n), Some(e)) if errors.is_empty() => Some((t, n, e)),
        _ => None,
    }
}

async fn hash(password: String) -> Result<String, WebError> {
    web::block(move || password::hash(&password))
        .await
        .map_err(|e| WebError::Internal(e.into()))?
        .ok_or_else(|| WebError::Internal(anyhow::anyhow!("cannot hash the password")))
}

/// Starts a session and leads to `to`. With `mfa_pending` the session only admits the
/// two-factor step, which then replaces it with a full one.
pub(crate) async fn sign_in(
    state: &AppState,
    req: &HttpRequest,
    user_id: &str,
    tenant: Option<String>,
    to: &str,
    mfa_pending: bool,
) -> Result<HttpResponse, WebError> {
    // A new session at every sign-in: a token planted before it is worth nothing.
    if let Some(old) = req.cookie(SESSION_COOKIE) {
        accounts::end_session(&state.db, old.value()).await?;
    }
    let ttl = if mfa_pending { TimeDelta::minutes(10) } else { TimeDelta::days(SESSION_DAYS) };
    let origin = crate::http::request_id::origin();
    let token = app::accounts::sign_in(state, user_id, tenant, Some(client_ip(req)), ttl, mfa_pending, origin).await?;
    let to = if mfa_pending {
        let next: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
        format!("/login/2fa?next={next}")
    } else {
        to.to_owned()
    };
    let mut res = super::session::see_other(&to);
    let _ = res.add_cookie(&session_cookie(&state.settings, token));
    Ok(res)
}

/// `GET /setup`: the first tenant and its owner, on an empty install only.
pub async fn setup_form(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let first_run = !tenants::any(&state.db).await?;
    if !first_run {
        return Err(WebError::Redirect("/login".into()));
    }
    let (csrf, cookie) = anon_csrf(&req, &state.settings);
    let form = AccountForm::default();
    Ok(with_cookie(page(&SetupPage { csrf: &csrf, first_run, form: &form, errors: &FormErrors::new() })?, cookie))
}

/// `GET /signup`: a new team and its owner.
pub async fn signup_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<SignupQuery>,
) -> Result<HttpResponse, WebError> {
    if !tenants::any(&state.db).await? {
        return Err(WebError::Redirect("/setup".into()));
    }
    if let Some(refused) = signup_refused(&state, &q.invite).await? {
        return Ok(refused);
    }
    let (csrf, cookie) = anon_csrf(&req, &state.settings);
    let form = AccountForm { invite: q.invite.clone(), ..AccountForm::default() };
    Ok(with_cookie(
        page(&SetupPage { csrf: &csrf, first_run: false, form: &form, errors: &FormErrors::new() })?,
        cookie,
    ))
}

/// `POST /setup` and `POST /signup`.
pub async fn create_account(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<AccountForm>,
) -> Result<HttpResponse, WebError> {
    check_anon_csrf(&req, &form.csrf)?;
    let first_run = !tenants::any(&state.db).await?;
    if !first_run && let Some(refused) = signup_refused(&state, &form.invite).await? {
        return Ok(refused);
    }
    let mut errors = FormErrors::new();
    let checked = check_account(&form, &mut errors);
    // Any existing account, even one that has no password yet (invited, or made from the
    // command line): signing up must never be a way to claim someone else's address.
    if let Some((_, _, email)) = &checked
        && accounts::user_by_email(&state.db, email.as_str()).await?.is_some()
    {
        errors.insert("email", "An account with this email exists. Sign in, or use “Forgot your password?”.".into());
    }
    let Some((team, name, email)) = checked.filter(|_| errors.is_empty()) else {
        let mut shown = form.into_inner();
        shown.password.clear();
        let page = SetupPage { csrf: &shown.csrf.clone(), first_run, form: &shown, errors: &errors };
        return page_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let hashed = hash(form.password.clone()).await?;
    // A sign-up link creates one team: the first request to use it wins.
    if !first_run
        && state.settings.signup == SignupPolicy::Invite
        && !crate::store::signup_links::take(&state.db, &crate::crypto::token_digest(&form.invite)).await?
    {
        return page_with(StatusCode::FORBIDDEN, &SignupClosedPage { invite_only: true, had_link: true });
    }
    let created = app::tenants::create(&state, &team.into_string(), email.as_str(), app::tenants::Via::Signup).await?;
    let user = accounts::user_by_email(&state.db, email.as_str()).await?.ok_or(StoreError::NotFound)?;
    accounts::set_profile(&state.db, &user.id, Some(&name.into_string()), &hashed).await?;
    let mut res = sign_in(&state, &req, &user.id, Some(created.tenant.id.clone()), "/app", false).await?;
    // The root key of the new team is shown once, on the page this answer redirects to.
    let ctx = app::Ctx::new(
        &state,
        crate::domain::TenantId::from_trusted(created.tenant.id.clone()),
        app::Actor::User(user.id.clone()),
        app::Grants::of_role(app::Role::Owner),
        crate::http::request_id::origin(),
    );
    let reveal = app::reveals::Reveal {
        heading: format!("{} is ready", created.tenant.name),
        label: "The team's first root key".to_owned(),
        secret: created.root_key.expose().to_owned(),
        start: None,
        note: "A root key is for the management API (Authorization: Bearer …). Make more, with fewer permissions, under Root keys.".to_owned(),
        done: "/app".to_owned(),
        back: None,
        lines: false,
    };
    let shown_at = app::reveals::hold(&ctx, &reveal).await?;
    let cookies: Vec<_> = res.cookies().map(|c| c.into_owned()).collect();
    res = see_other(&shown_at);
    for c in cookies {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

/// What the sign-in form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub csrf: String,
    pub email: String,
    pub password: String,
    pub next: String,
}

#[derive(Template)]
#[template(path = "account/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    email: &'a str,
    next: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    /// Anyone may create a team here (`KEYROLL_SIGNUP=open`).
    signup_open: bool,
}

/// Query of the sign-in page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    pub next: String,
    pub reset: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, WebError> {
    if !tenants::any(&state.db).await? {
        return Err(WebError::Redirect("/setup".into()));
    }
    let (csrf, cookie) = anon_csrf(&req, &state.settings);
    let notice = q.reset.as_ref().map(|_| "Your password was changed. Sign in with the new one.");
    let signup_open = state.settings.signup == SignupPolicy::Open;
    let form = LoginPage { csrf: &csrf, email: "", next: safe_next(&q.next), error: None, notice, signup_open };
    Ok(with_cookie(page(&form)?, cookie))
}

/// `POST /login`.
pub async fn login(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    check_anon_csrf(&req, &form.csrf)?;
    let email = form.email.trim().to_ascii_lowercase();
    let ip = client_ip(&req);
    let next = safe_next(&form.next).to_owned();
    let fail = |status: StatusCode, error: &str| {
        let signup_open = state.settings.signup == SignupPolicy::Open;
        let page =
            LoginPage { csrf: &form.csrf, email: &email, next: &next, error: Some(error), notice: None, signup_open };
        page_with(status, &page)
    };
    if !throttle.allowed(&ip, &email) {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins. Wait 15 minutes, or reset your password.",
        );
    }
    let user = accounts::user_by_email(&state.db, &email).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let pw = form.password.clone();
    // The same work whether or not the account exists: no timing hint about which emails do.
    let ok = web::block(move || match stored {
        Some(h) => password::verify(&h, &pw),
        None => {
            let _ = password::verify(DUMMY_HASH, &pw);
            false
        }
    })
    .await
    .map_err(|e| WebError::Internal(e.into()))?;
    match user {
        Some(u) if ok => {
            throttle.succeeded(&email);
            sign_in(&state, &req, &u.id, None, &next, u.totp_secret.is_some()).await
        }
        _ => {
            throttle.failed(&ip, &email);
            fail(StatusCode::UNAUTHORIZED, "That email and password do not match an account.")
        }
    }
}

/// A real argon2id hash of a random password, checked when the account does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8B9cHn0hM0jA0x0vn7Z8CqQb4Hq0t3oH2y1HPlm3Y3E";

/// The form of a signed-in page: only its CSRF token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfOnly {
    pub csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<CsrfOnly>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        accounts::end_session(&state.db, c.value()).await?;
    }
    let mut res = super::session::see_other("/login");
    let _ = res.add_cookie(&removal(&state.settings, SESSION_COOKIE));
    Ok(res)
}

/// What the team switcher sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SwitchForm {
    pub csrf: String,
    pub tenant: String,
}

/// `POST /app/switch`: work in another of the user's teams.
pub async fn switch(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<SwitchForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    if !me.tenants.iter().any(|(m, _)| m.tenant_id == form.tenant) {
        return Err(WebError::NotFound);
    }
    accounts::switch_tenant(&state.db, &me.session.id, &form.tenant).await?;
    Ok(super::session::see_other("/app"))
}

/// What the forgotten-password form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ForgotForm {
    pub csrf: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "account/forgot.html")]
struct ForgotPage<'a> {
    csrf: &'a str,
    email: &'a str,
    sent: bool,
    error: Option<&'a str>,
    /// This install can send email (`KEYROLL_SMTP_URL`); without it, no link is ever sent and
    /// the page says so.
    mail: bool,
}

/// `GET /forgot`.
pub async fn forgot_form(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, WebError> {
    let (csrf, cookie) = anon_csrf(&req, &state.settings);
    let mail = state.settings.smtp_url.is_some();
    Ok(with_cookie(page(&ForgotPage { csrf: &csrf, email: "", sent: false, error: None, mail })?, cookie))
}

/// `POST /forgot`: emails a reset link valid for an hour. The answer is the same whether or not
/// the address has an account.
pub async fn forgot(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, WebError> {
    check_anon_csrf(&req, &form.csrf)?;
    let mail = state.settings.smtp_url.is_some();
    if !mail {
        // Nothing could be sent: the page tells how else to get in, and no token is made.
        return page(&ForgotPage { csrf: &form.csrf, email: &form.email, sent: false, error: None, mail });
    }
    let Ok(email) = Email::parse(&form.email) else {
        let page = ForgotPage {
            csrf: &form.csrf,
            email: &form.email,
            sent: false,
            error: Some("Enter an email address."),
            mail,
        };
        return page_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let ip = client_ip(&req);
    if !throttle.allowed(&ip, email.as_str()) {
        let page = ForgotPage {
            csrf: &form.csrf,
            email: email.as_str(),
            sent: false,
            error: Some("Too many attempts. Wait 15 minutes."),
            mail,
        };
        return page_with(StatusCode::TOO_MANY_REQUESTS, &page);
    }
    // Each request counts as a failure for the throttle: links cannot be sprayed at an inbox.
    throttle.failed(&ip, email.as_str());
    if let Some(user) = accounts::user_by_email(&state.db, email.as_str()).await? {
        let token = accounts::start_reset(&state.db, &user.id, TimeDelta::hours(1)).await?;
        let base = state.settings.public_url.clone().unwrap_or_else(|| format!("http://{}", state.settings.listen));
        let link = format!("{}/reset/{token}", base.trim_end_matches('/'));
        let body = format!(
            "Someone asked to reset the password of your Keyroll account.\n\nChoose a new password here (the link works once, for one hour):\n{link}\n\nIf it was not you, ignore this email: your password stays as it is.\n"
        );
        send_mail(&state, email.as_str(), "Reset your Keyroll password", body).await;
    }
    page(&ForgotPage { csrf: &form.csrf, email: email.as_str(), sent: true, error: None, mail })
}

/// Sends a message now; false when no SMTP server is configured or it refused.
pub(crate) async fn send_mail(state: &AppState, to: &str, subject: &str, body: String) -> bool {
    use secrecy::ExposeSecret;
    let Some(url) = &state.settings.smtp_url else {
        tracing::warn!("no SMTP server configured (KEYROLL_SMTP_URL): an account email was not sent");
        return false;
    };
    match crate::notify::email::Mailer::new(url.expose_secret(), &state.settings.smtp_from) {
        Ok(m) => match m.send_text(to, subject, body).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "an account email was not sent");
                false
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "KEYROLL_SMTP_URL unusable");
            false
        }
    }
}

/// What the new-password form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResetForm {
    pub csrf: String,
    pub password: String,
}

#[derive(Template)]
#[template(path = "account/reset.html")]
struct ResetPage<'a> {
    csrf: &'a str,
    valid: bool,
    error: Option<&'a str>,
}

/// `GET /reset/{token}`.
pub async fn reset_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let (csrf, cookie) = anon_csrf(&req, &state.settings);
    let valid = accounts::reset_user(&state.db, &token).await?.is_some();
    let status = if valid { StatusCode::OK } else { StatusCode::NOT_FOUND };
    Ok(with_cookie(page_with(status, &ResetPage { csrf: &csrf, valid, error: None })?, cookie))
}

/// `POST /reset/{token}`: a new password; every session of the user ends.
pub async fn reset(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    token: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, WebError> {
    check_anon_csrf(&req, &form.csrf)?;
    let Some(user_id) = accounts::reset_user(&state.db, &token).await? else {
        return page_with(StatusCode::NOT_FOUND, &ResetPage { csrf: &form.csrf, valid: false, error: None });
    };
    if !(10..=128).contains(&form.password.chars().count()) {
        let page = ResetPage { csrf: &form.csrf, valid: true, error: Some("Use 10 to 128 characters.") };
        return page_with(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let hashed = hash(form.password.clone()).await?;
    let origin = crate::http::request_id::origin();
    if !app::accounts::reset_password(&state, &token, &user_id, &hashed, &origin).await? {
        return page_with(StatusCode::NOT_FOUND, &ResetPage { csrf: &form.csrf, valid: false, error: None });
    }
    // The link proved the inbox is theirs: earlier failed sign-ins no longer hold them back.
    throttle.succeeded(&accounts::user(&state.db, &user_id).await?.email);
    Ok(super::session::see_other("/login?reset=1"))
}

/// What the change-password form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    pub csrf: String,
    pub current: String,
    pub new_password: String,
}

/// `POST /app/account/password`: a new password, given the current one; every other session of
/// the person ends. Wrong current passwords count against the sign-in throttle.
pub async fn change_password(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    let ip = client_ip(&req);
    let mut errors = FormErrors::new();
    if !throttle.allowed(&ip, &me.user.email) {
        errors.insert("current", "Too many wrong passwords. Wait 15 minutes.".into());
    } else {
        let stored = me.user.password_hash.clone();
        let pw = form.current.clone();
        let ok = web::block(move || stored.is_some_and(|h| password::verify(&h, &pw)))
            .await
            .map_err(|e| WebError::Internal(e.into()))?;
        if !ok {
            throttle.failed(&ip, &me.user.email);
            errors.insert("current", "This is not your current password.".into());
        }
    }
    if !(10..=128).contains(&form.new_password.chars().count()) {
        errors.insert("new_password", "Use 10 to 128 characters.".into());
    }
    if !errors.is_empty() {
        return super::twofactor::render(&state, &me, None, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let hashed = hash(form.new_password.clone()).await?;
    let origin = crate::http::request_id::origin();
    let ended = app::accounts::change_password(&state, &me.user.id, &me.session.id, &hashed, &origin).await?;
    let notice = match ended {
        0 => "Your password was changed.".to_owned(),
        n => format!("Your password was changed, and {n} other session(s) were signed out."),
    };
    super::twofactor::render(&state, &me, None, &FormErrors::new(), Some(&notice), StatusCode::OK).await
}

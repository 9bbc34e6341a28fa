//! Optional two-factor sign-in with TOTP (RFC 6238, 30-second codes, one step of clock skew):
//! turned on from the account page by confirming a first code, asked for after the password.
//! A code is accepted once: its time step must be later than the last one accepted.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use rand::RngCore;
use serde::Deserialize;
use totp_rs::{Algorithm, Builder, Totp};

use super::account::sign_in;
use super::app::Chrome;
use super::session::{FormErrors, SESSION_COOKIE, Signed, Throttle, WebError, client_ip, page_with, safe_next};
use crate::app;
use crate::state::AppState;
use crate::store::accounts;

fn totp(secret: Vec<u8>, account: &str) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("Keyroll"))
        .build()
        .ok()
}

/// The time step `code` matches for the sealed secret now, if any.
fn code_step(state: &AppState, sealed: &str, account: &str, code: &str) -> Option<i64> {
    let code: String = code.chars().filter(char::is_ascii_digit).collect();
    if code.len() != 6 {
        return None;
    }
    let t = totp(state.master_key.as_ref()?.open(sealed)?, account)?;
    t.check_current(&code).and_then(|step| i64::try_from(step).ok())
}

/// Does `code` match the user's secret, and was its time step never accepted before?
async fn fresh_code(
    state: &AppState,
    user: &crate::store::entities::user::Model,
    code: &str,
) -> Result<bool, WebError> {
    let Some(step) = user.totp_secret.as_deref().and_then(|s| code_step(state, s, &user.email, code)) else {
        return Ok(false);
    };
    Ok(accounts::accept_totp_step(&state.db, &user.id, step).await?)
}

#[derive(Template)]
#[template(path = "account/two_factor.html")]
struct CodePage<'a> {
    csrf: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

/// Query and form of the code step.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CodeForm {
    pub csrf: String,
    pub code: String,
    pub next: String,
}

/// `GET /login/2fa`: the code after the password.
pub async fn code_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<CodeForm>,
) -> Result<HttpResponse, WebError> {
    let Some((session, _)) = pending(&state, &req).await? else {
        return Err(WebError::Redirect("/login".into()));
    };
    page_with(StatusCode::OK, &CodePage { csrf: &session.csrf, next: safe_next(&q.next), error: None })
}

async fn pending(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Option<(crate::store::entities::session::Model, crate::store::entities::user::Model)>, WebError> {
    let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) else { return Ok(None) };
    Ok(accounts::session(&state.db, &token).await?.filter(|(s, _)| s.mfa_pending))
}

/// `POST /login/2fa`.
pub async fn check_code(
    state: web::Data<AppState>,
    throttle: web::Data<Throttle>,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, WebError> {
    let Some((session, user)) = pending(&state, &req).await? else {
        return Err(WebError::Redirect("/login".into()));
    };
    if !bool::from(subtle::ConstantTimeEq::ct_eq(session.csrf.as_bytes(), form.csrf.as_bytes())) {
        return Err(WebError::Csrf);
    }
    let ip = client_ip(&req);
    let next = safe_next(&form.next).to_owned();
    let fail = |status, error| page_with(status, &CodePage { csrf: &session.csrf, next: &next, error: Some(error) });
    if !throttle.allowed(&ip, &user.email) {
        return fail(StatusCode::TOO_MANY_REQUESTS, "Too many wrong codes. Wait 15 minutes and sign in again.");
    }
    let origin = crate::http::request_id::origin();
    let ok = fresh_code(&state, &user, &form.code).await?
        || app::accounts::use_recovery_code(&state, &user.id, &form.code, &origin).await?;
    if !ok {
        throttle.failed(&ip, &user.email);
        return fail(
            StatusCode::UNAUTHORIZED,
            "That code is not right. Use the current code of your authenticator app, or an unused recovery code.",
        );
    }
    throttle.succeeded(&user.email);
    sign_in(&state, &req, &user.id, session.tenant_id.clone(), &next, false).await
}

#[derive(Template)]
#[template(path = "app/account.html")]
struct AccountPage<'a> {
    c: Chrome,
    email: &'a str,
    enabled: bool,
    /// While turning it on: the secret to type in, the otpauth URL, the sealed secret, and the
    /// URL as a QR code (SVG made here from the URL alone: no user text in it).
    setup: Option<(String, String, String, String)>,
    /// Unused recovery codes, while two-factor is on.
    recovery_left: i64,
    errors: &'a FormErrors,
    notice: Option<&'a str>,
    available: bool,
}

/// `GET /app/account`.
pub async fn account_page(state: web::Data<AppState>, me: Signed) -> Result<HttpResponse, WebError> {
    render(&state, &me, None, &FormErrors::new(), None, StatusCode::OK).await
}

pub(crate) async fn render(
    state: &AppState,
    me: &Signed,
    setup: Option<(String, String, String, String)>,
    errors: &FormErrors,
    notice: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    page_with(
        status,
        &AccountPage {
            c: Chrome::of(me, "account"),
            email: &me.user.email,
            enabled: me.user.totp_secret.is_some(),
            setup,
            recovery_left: crate::store::recovery_codes::unused(&state.db, &me.user.id).await.unwrap_or(0),
            errors,
            notice,
            available: state.master_key.is_some(),
        },
    )
}

/// What the two-factor forms send.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TwoFactorForm {
    pub csrf: String,
    /// The sealed candidate secret, while turning it on.
    pub sealed: String,
    pub code: String,
}

fn setup_of(state: &AppState, me: &Signed, sealed: &str) -> Option<(String, String, String, String)> {
    let secret = state.master_key.as_ref()?.open(sealed)?;
    let t = totp(secret, &me.user.email)?;
    let url = t.to_url().ok()?;
    let qr = qrcode::QrCode::new(url.as_bytes())
        .ok()?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // Inline in the page: without the XML declaration.
    let qr = qr.find("<svg").map_or(qr.clone(), |at| qr[at..].to_owned());
    Some((t.secret().to_base32(), url, sealed.to_owned(), qr))
}

/// Makes new recovery codes and shows them once, after a redirect.
async fn show_recovery_codes(state: &AppState, me: &Signed, heading: &str) -> Result<HttpResponse, WebError> {
    let origin = crate::http::request_id::origin();
    let codes = app::accounts::new_recovery_codes(state, &me.user.id, &origin).await?;
    let reveal = app::reveals::Reveal {
        heading: heading.to_owned(),
        label: "Your recovery codes".into(),
        secret: codes.join("\n"),
        start: None,
        note: "Keep them somewhere safe, apart from your phone (a password manager, or printed). Each signs you in once in place of the app's code.".into(),
        done: "/app/account".into(),
        back: None,
        lines: true,
    };
    super::shown::show_once(&me.ctx(state), &reveal).await
}

/// `POST /app/account/2fa/{step}`: `start` shows a new secret, `enable` confirms it with a code,
/// `disable` turns it off with a current code.
pub async fn two_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    step: web::Path<String>,
    form: web::Form<TwoFactorForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    let Some(mk) = state.master_key.clone() else {
        return Err(WebError::Forbidden("Two-factor sign-in needs KEYROLL_MASTER_KEY on every node."));
    };
    let mut errors = FormErrors::new();
    match step.as_str() {
        "start" => {
            let mut secret = vec![0u8; 20];
            rand::rng().fill_bytes(&mut secret);
            let sealed = mk.seal(&secret).ok_or_else(|| WebError::Internal(anyhow::anyhow!("seal failed")))?;
            let setup = setup_of(&state, &me, &sealed);
            render(&state, &me, setup, &errors, None, StatusCode::OK).await
        }
        "enable" => {
            let Some(step) = code_step(&state, &form.sealed, &me.user.email, &form.code) else {
                errors.insert("code", "That code is not right. Type the current 6-digit code of the app.".into());
                let setup = setup_of(&state, &me, &form.sealed);
                return render(&state, &me, setup, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
            };
            let origin = crate::http::request_id::origin();
            app::accounts::set_two_factor(&state, &me.user.id, Some((form.sealed.clone(), step)), &origin).await?;
            show_recovery_codes(&state, &me, "Two-factor sign-in is on").await
        }
        "disable" => {
            if !fresh_code(&state, &me.user, &form.code).await? {
                errors.insert("disable_code", "That code is not right, or was used already.".into());
                return render(&state, &me, None, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
            let origin = crate::http::request_id::origin();
            app::accounts::set_two_factor(&state, &me.user.id, None, &origin).await?;
            let me = Signed { user: accounts::user(&state.db, &me.user.id).await?, ..me };
            render(&state, &me, None, &errors, Some("Two-factor sign-in is off."), StatusCode::OK).await
        }
        "recovery" => {
            if me.user.totp_secret.is_none() {
                return Err(WebError::NotFound);
            }
            if !fresh_code(&state, &me.user, &form.code).await? {
                errors.insert("recovery_code", "That code is not right, or was used already.".into());
                return render(&state, &me, None, &errors, None, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
            show_recovery_codes(&state, &me, "New recovery codes").await
        }
        _ => Err(WebError::NotFound),
    }
}

//! The new-key form: the consumer chosen first (with a search) when the page does not name one,
//! the API preset when it came from an API's page, every setting the API takes, and the secret
//! shown once on a page of its own.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::app::{Chrome, chosen_api, consumer_id, tenant};
use super::key_fields::KeyFields;
use super::keys::expiry_days;
use super::session::{FormErrors, Signed, WebError, form_errors, page_with};
use crate::app::keys::NewKeyInput;
use crate::app::{self, ServiceError};
use crate::domain::ConsumerId;
use crate::state::AppState;
use crate::store::entities::{api, consumer};
use crate::store::{apis, consumers};

#[derive(Template)]
#[template(path = "app/key_new.html")]
struct NewKeyPage<'a> {
    c: Chrome,
    /// The consumer the key is for, once chosen.
    consumer: Option<consumer::Model>,
    /// Consumers the picker found (or the newest ones, before a search).
    matches: Vec<consumer::Model>,
    consumer_q: &'a str,
    /// The API the page was opened from, if any (its page is the way back).
    from_api: Option<api::Model>,
    apis: Vec<api::Model>,
    form: &'a KeyForm,
    fields: &'a KeyFields,
    /// The chosen API's scope catalogue, comma-separated (empty when it has none).
    catalogue: String,
    errors: &'a FormErrors,
}

/// What the new-key form sends.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyForm {
    pub csrf: String,
    pub consumer_id: String,
    pub api_id: String,
    /// Days until it expires; empty for never.
    pub expires_days: String,
    /// `on` to create the key disabled (enabled later, e.g. once the customer has paid).
    pub disabled: String,
    #[serde(flatten)]
    pub fields: KeyFields,
}

/// Query of the new-key page: a consumer and an API to preset, or a search for the consumer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewKeyQuery {
    pub consumer: String,
    pub api_id: String,
    pub consumer_q: String,
}

/// `GET /app/keys/new?consumer=…&api_id=…` (either may be left out: the page asks for it).
pub async fn new_key_page(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<NewKeyQuery>,
) -> Result<HttpResponse, WebError> {
    me.require_keys()?;
    let form = KeyForm { consumer_id: q.consumer.clone(), api_id: q.api_id.clone(), ..KeyForm::default() };
    render_new_key(&state, &me, &form, &q.consumer_q, &FormErrors::new(), StatusCode::OK).await
}

async fn render_new_key(
    state: &AppState,
    me: &Signed,
    form: &KeyForm,
    consumer_q: &str,
    errors: &FormErrors,
    status: StatusCode,
) -> Result<HttpResponse, WebError> {
    let t = tenant(me);
    let consumer = match form.consumer_id.trim() {
        "" => None,
        id => Some(consumers::get(&state.db, &t, &consumer_id(id)?).await?),
    };
    let matches = if consumer.is_none() {
        consumers::search(&state.db, &t, consumer_q, 10, None).await?.items
    } else {
        Vec::new()
    };
    let apis = apis::list(&state.db, &t, 100, None).await?.items;
    let chosen = apis.iter().find(|a| a.id == form.api_id);
    let catalogue = chosen.map(|a| app::keys::catalogue_of(a).to_strings().join(", ")).unwrap_or_default();
    let from_api = chosen.cloned();
    page_with(
        status,
        &NewKeyPage {
            c: Chrome::of(me, if from_api.is_some() { "apis" } else { "consumers" }),
            consumer,
            matches,
            consumer_q,
            from_api,
            apis,
            form,
            fields: &form.fields,
            catalogue,
            errors,
        },
    )
}

/// `POST /app/keys`: creates the key and shows its secret once, on a page of its own.
pub async fn create_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    me: Signed,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, WebError> {
    me.check_csrf(&req, &form.csrf)?;
    me.require_keys()?;
    let t = tenant(&me);
    let mut errors = FormErrors::new();
    let consumer = match ConsumerId::parse(form.consumer_id.trim()) {
        Ok(id) => match consumers::get(&state.db, &t, &id).await {
            Ok(c) => Some(c),
            Err(crate::store::StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
        Err(_) => None,
    };
    if consumer.is_none() {
        errors.insert("consumer_id", "Choose the consumer the key is for.".into());
    }
    let api = chosen_api(&state, &t, &form.api_id, &mut errors).await?;
    let expires_at = expiry_days(&form.expires_days, &mut errors);
    let catalogue = api.as_ref().map(app::keys::catalogue_of).unwrap_or_default();
    let settings = form.fields.read(&catalogue, &mut errors);
    let (Some(consumer), Some(api), Some(expires_at), Some(settings)) = (consumer, api, expires_at, settings) else {
        let mut form = form.into_inner();
        if errors.contains_key("consumer_id") {
            form.consumer_id.clear();
        }
        return render_new_key(&state, &me, &form, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let input = NewKeyInput {
        api_id: api.id,
        consumer_id: consumer.id.clone(),
        name: settings.name,
        scopes: settings.scopes,
        meta: Some(settings.meta),
        expires_at,
        ratelimit: settings.ratelimit,
        credits: settings.credits,
        ip_allowlist: settings.ip_allowlist,
        enabled: Some(form.disabled != "on"),
    };
    match app::keys::create(&me.ctx(&state), input).await {
        Ok(created) => {
            let back = Some(("Back to the consumer".to_owned(), format!("/app/consumers/{}", consumer.id)));
            let done = format!("/app/keys/{}", created.key.id);
            super::shown::reveal_key(&state, &me, "Key created", &created.key, created.secret.expose(), done, back)
                .await
        }
        Err(ServiceError::Invalid(errs)) => {
            let errors = form_errors(&errs, &super::key_fields::error_places("expires_days"), "scopes");
            render_new_key(&state, &me, &form, "", &errors, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e @ ServiceError::PlanLimit { .. }) => {
            let mut errors = FormErrors::new();
            errors.insert("api_id", super::session::sentence(&e.to_string()));
            render_new_key(&state, &me, &form, "", &errors, StatusCode::PAYMENT_REQUIRED).await
        }
        Err(e) => Err(e.into()),
    }
}

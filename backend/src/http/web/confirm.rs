//! Confirmation pages for actions that break something: retiring an old version now, rolling a
//! rotation back, disabling a key, deleting a webhook endpoint. The action's button leads here
//! (a GET, no JavaScript needed); the page says what will stop working, with the facts that
//! matter (when the version was last used), and only its form carries `confirm=yes`. A POST
//! without it changes nothing and is redirected (303) here.

use actix_web::{HttpResponse, web};
use askama::Template;

use super::app::{Chrome, When, tenant};
use super::session::{Signed, WebError, page};
use crate::domain::{KeyId, RotationId};
use crate::state::AppState;
use crate::store::entities::key;
use crate::store::{keys, notify, rotations};

#[derive(Template)]
#[template(path = "app/confirm.html")]
struct ConfirmPage {
    c: Chrome,
    title: String,
    facts: Vec<String>,
    action: String,
    /// Other fields the form sends again.
    fields: Vec<(&'static str, String)>,
    button: String,
    cancel: String,
    back_label: String,
}

/// Did the form come from a confirmation page?
#[must_use]
pub fn confirmed(value: &str) -> bool {
    value == "yes"
}

fn last_used(k: &key::Model) -> String {
    match When::opt(k.last_used_at) {
        Some(w) => format!("v{} was last used {} ({}).", k.version, w.relative, w.exact),
        None => format!("v{} has never been used.", k.version),
    }
}

fn display(k: &key::Model) -> String {
    format!("{}••••", k.start)
}

/// `GET /app/rotations/{id}/{action}`: confirm retiring the old version now, or rolling back.
pub async fn rotation(
    state: web::Data<AppState>,
    me: Signed,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    me.require_keys()?;
    let (id, action) = path.into_inner();
    let rid = RotationId::parse(&id).map_err(|_| WebError::NotFound)?;
    let t = tenant(&me);
    let r = rotations::get(&state.db, &t, &rid).await?;
    let old = keys::get(&state.db, &t, &KeyId::from_trusted(r.from_key_id.clone()), false).await?;
    let new = keys::get(&state.db, &t, &KeyId::from_trusted(r.to_key_id.clone()), false).await?;
    let cancel = format!("/app/keys/{}", new.id);
    let (title, facts, button) = match action.as_str() {
        "complete" => (
            format!("Retire v{} now?", old.version),
            vec![
                format!(
                    "Every request that still presents v{} ({}) is refused from now on, on every node. This cannot be undone.",
                    old.version,
                    display(&old)
                ),
                last_used(&old),
                format!("v{} ({}) stays the current key.", new.version, display(&new)),
            ],
            format!("Retire v{} now", old.version),
        ),
        "rollback" => (
            format!("Roll back to v{}?", old.version),
            vec![
                format!(
                    "v{} ({}) is ended at once: every client already switched to it is refused.",
                    new.version,
                    display(&new)
                ),
                last_used(&new),
                format!("v{} ({}) becomes the current key again, with no end of grace.", old.version, display(&old)),
            ],
            format!("Roll back to v{}", old.version),
        ),
        _ => return Err(WebError::NotFound),
    };
    page(&ConfirmPage {
        c: Chrome::of(&me, "consumers"),
        title,
        facts,
        action: format!("/app/rotations/{}/{action}", r.id),
        fields: Vec::new(),
        button,
        cancel,
        back_label: "Back to the key".into(),
    })
}

/// `GET /app/keys/{id}/disable`: confirm disabling a key.
pub async fn disable(state: web::Data<AppState>, me: Signed, id: web::Path<String>) -> Result<HttpResponse, WebError> {
    me.require_keys()?;
    let kid = KeyId::parse(&id).map_err(|_| WebError::NotFound)?;
    let k = keys::get(&state.db, &tenant(&me), &kid, false).await?;
    let facts = vec![
        format!(
            "Every verification of {} is refused at once, on every node, until the key is enabled again.",
            display(&k)
        ),
        last_used(&k),
        "Disabling can be undone: enabling the key makes it valid again.".to_owned(),
    ];
    page(&ConfirmPage {
        c: Chrome::of(&me, "consumers"),
        title: format!("Disable {}?", display(&k)),
        facts,
        action: format!("/app/keys/{}/enabled", k.id),
        fields: vec![("enabled", "false".to_owned())],
        button: format!("Disable {}", display(&k)),
        cancel: format!("/app/keys/{}", k.id),
        back_label: "Back to the key".into(),
    })
}

/// `GET /app/webhooks/{id}/delete`: confirm deleting an endpoint.
pub async fn delete_endpoint(
    state: web::Data<AppState>,
    me: Signed,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    me.require_admin()?;
    let e = notify::tenant_endpoint(&state.db, &me.tenant_id(), &id).await?;
    let types = serde_json::from_value::<Vec<String>>(e.event_types.clone()).unwrap_or_default().join(", ");
    let facts = vec![
        format!("No more events are sent to {}; deliveries still waiting to be retried are dropped.", e.url),
        format!("It receives: {types}."),
        "Receivers that rely on it learn of nothing after this. It cannot be undone; add the URL again for a new endpoint with a new secret.".to_owned(),
    ];
    page(&ConfirmPage {
        c: Chrome::of(&me, "webhooks"),
        title: "Delete this webhook endpoint?".into(),
        facts,
        action: format!("/app/webhooks/{}/delete", e.id),
        fields: Vec::new(),
        button: "Delete the endpoint".into(),
        cancel: "/app/webhooks".into(),
        back_label: "Webhooks".into(),
    })
}

//! Pickers: where a form needs a key, a consumer or a rotation, it lists a few by name with a
//! search field beside them (a submit button, so no JavaScript is needed). The search runs on
//! the server; what is chosen is posted as the id.

use chrono::Utc;

use super::app::{KeyRow, When};
use super::session::WebError;
use crate::domain::TenantId;
use crate::domain::key_state::KeyState;
use crate::domain::rotation::RotationState;
use crate::state::AppState;
use crate::store::keys::KeyFilter;
use crate::store::{consumers, keys, rotations};

/// How many choices a picker lists.
const SHOWN: u64 = 10;

/// One choice: the id posted, and how it is shown.
#[derive(Debug, Clone)]
pub struct Pick {
    pub value: String,
    pub label: String,
    pub detail: String,
}

/// Keys whose start or name matches `q` (the newest active ones when it is empty), with the
/// one already chosen first.
///
/// # Errors
/// Database errors.
pub async fn keys(state: &AppState, t: &TenantId, q: &str, selected: &str) -> Result<Vec<Pick>, WebError> {
    let q = q.trim();
    let filter = KeyFilter {
        search: (!q.is_empty()).then(|| q.to_owned()),
        state: q.is_empty().then_some(KeyState::Valid),
        ..KeyFilter::default()
    };
    let mut found = keys::list(&state.db, t, &filter, SHOWN, None).await?.items;
    if let Ok(id) = crate::domain::KeyId::parse(selected)
        && !found.iter().any(|k| k.id == selected)
        && let Ok(k) = keys::get(&state.db, t, &id, false).await
    {
        found.insert(0, k);
    }
    let owners = super::app::owners_of(state, t, &found).await?;
    Ok(found
        .iter()
        .map(|k| {
            let row = KeyRow::of(k);
            let mut detail = vec![format!("v{}", k.version)];
            if !row.name.is_empty() {
                detail.push(row.name.clone());
            }
            if let Some((_, name)) = owners.get(&k.id) {
                detail.push(name.clone());
            }
            detail.push(row.badge.to_owned());
            Pick { value: k.id.clone(), label: format!("{}••••", k.start), detail: detail.join(" · ") }
        })
        .collect())
}

/// Consumers whose name, external id or email matches `q`, with the one already chosen first.
///
/// # Errors
/// Database errors.
pub async fn consumers(state: &AppState, t: &TenantId, q: &str, selected: &str) -> Result<Vec<Pick>, WebError> {
    let mut found = consumers::search(&state.db, t, q, SHOWN, None).await?.items;
    if let Ok(id) = crate::domain::ConsumerId::parse(selected)
        && !found.iter().any(|c| c.id == selected)
        && let Ok(c) = consumers::get(&state.db, t, &id).await
    {
        found.insert(0, c);
    }
    Ok(found
        .into_iter()
        .map(|c| {
            let detail = match &c.email {
                Some(e) => format!("{} · {e}", c.external_id),
                None => c.external_id.clone(),
            };
            Pick { value: c.id, label: c.name, detail }
        })
        .collect())
}

/// Rotations in progress, newest first.
///
/// # Errors
/// Database errors.
pub async fn rotations(state: &AppState, t: &TenantId) -> Result<Vec<Pick>, WebError> {
    let open = rotations::list(&state.db, t, Some(RotationState::InProgress), SHOWN, None).await?.items;
    let names =
        super::names::Names::of(state, t, open.iter().map(|r| r.from_key_id.as_str()).collect::<Vec<_>>()).await?;
    let now = Utc::now();
    Ok(open
        .iter()
        .filter(|r| crate::app::rotation::effective_state(r, now) == RotationState::InProgress)
        .map(|r| {
            let started = When::of(r.started_at);
            let ends = When::of(r.grace_ends_at);
            Pick {
                value: r.id.clone(),
                label: names.label(&r.from_key_id),
                detail: format!("started {}, old version valid until {}", started.relative, ends.exact),
            }
        })
        .collect())
}

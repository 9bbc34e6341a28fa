//! `GET /app/search?q=`: the header's search box. Finds keys by their start (`acme_live_oN5A`,
//! or its beginning), by a whole secret, or by name; consumers by name, external id or email;
//! APIs by name or key prefix — across the team.

use actix_web::{HttpResponse, web};
use askama::Template;

use super::app::{Chrome, KeyRow, ListQuery, owners_of, tenant};
use super::session::{Signed, WebError, page};
use crate::state::AppState;
use crate::store::entities::{api, consumer};
use crate::store::keys::KeyFilter;
use crate::store::{apis, consumers, keys};

/// How many of each kind the page lists.
const SHOWN: u64 = 20;

#[derive(Template)]
#[template(path = "app/search.html")]
struct SearchPage<'a> {
    c: Chrome,
    q: &'a str,
    keys: Vec<KeyRow>,
    keys_more: bool,
    owners: std::collections::HashMap<String, (String, String)>,
    consumers: Vec<consumer::Model>,
    consumers_more: bool,
    apis: Vec<api::Model>,
}

/// `GET /app/search?q=…`.
pub async fn search(
    state: web::Data<AppState>,
    me: Signed,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let t = tenant(&me);
    let text = q.q.trim();
    let (mut found_keys, mut found_consumers, mut found_apis) = (Vec::new(), Vec::new(), Vec::new());
    let (mut keys_more, mut consumers_more) = (false, false);
    if !text.is_empty() {
        let filter = KeyFilter { search: Some(text.to_owned()), ..KeyFilter::default() };
        let k = keys::list(&state.db, &t, &filter, SHOWN, None).await?;
        keys_more = k.next_cursor.is_some();
        found_keys = k.items;
        let c = consumers::search(&state.db, &t, text, SHOWN, None).await?;
        consumers_more = c.next_cursor.is_some();
        found_consumers = c.items;
        let lower = text.to_lowercase();
        found_apis = apis::list(&state.db, &t, 100, None)
            .await?
            .items
            .into_iter()
            .filter(|a| {
                a.name.to_lowercase().contains(&lower)
                    || format!("{}_{}_", a.key_prefix, a.environment).starts_with(&lower)
                    || lower.starts_with(&format!("{}_{}_", a.key_prefix, a.environment))
            })
            .collect();
    }
    let owners = owners_of(&state, &t, &found_keys).await?;
    page(&SearchPage {
        c: Chrome::of(&me, "search"),
        q: text,
        keys: found_keys.iter().map(KeyRow::of).collect(),
        keys_more,
        owners,
        consumers: found_consumers,
        consumers_more,
        apis: found_apis,
    })
}

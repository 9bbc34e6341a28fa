//! Names for ids: pages say "acme_live_oN5A•••• (production)", "Bob's Bakery" or "Orders" with a
//! link, where the records hold `key_…`, `con_…` or `api_…`. One query per kind for a whole page.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::session::WebError;
use crate::domain::TenantId;
use crate::state::AppState;
use crate::store::entities::{api, key};
use crate::store::{apis, consumers};

/// What the ids of one page are called.
#[derive(Debug, Default)]
pub struct Names(HashMap<String, String>);

/// Where an object's page is, by the prefix of its id.
#[must_use]
pub fn href(id: &str) -> Option<String> {
    let (kind, _) = id.split_once('_')?;
    let section = match kind {
        "key" => "keys",
        "con" => "consumers",
        "api" => "apis",
        "rot" => "rotations",
        "run" => "playbook-runs",
        "pol" => "policies",
        _ => return None,
    };
    Some(format!("/app/{section}/{id}"))
}

impl Names {
    /// Looks up every key, consumer and API among `ids` (other ids keep their own text).
    ///
    /// # Errors
    /// Database errors.
    pub async fn of<'a>(
        state: &AppState,
        tenant: &TenantId,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, WebError> {
        let (mut keys, mut cons, mut wants_api) = (Vec::new(), Vec::new(), false);
        for id in ids {
            match id.split_once('_').map(|(k, _)| k) {
                Some("key") if !keys.contains(&id) => keys.push(id),
                Some("con") if !cons.contains(&id) => cons.push(id),
                Some("api") => wants_api = true,
                _ => {}
            }
        }
        let mut map = HashMap::new();
        if !keys.is_empty() {
            let rows: Vec<(String, String, Option<String>)> = key::Entity::find()
                .select_only()
                .column(key::Column::Id)
                .column(key::Column::Start)
                .column(key::Column::Name)
                .filter(key::Column::TenantId.eq(tenant.as_str()))
                .filter(key::Column::Id.is_in(keys.iter().copied()))
                .into_tuple()
                .all(&state.db)
                .await
                .map_err(crate::store::StoreError::from)?;
            for (id, start, name) in rows {
                let label = match name {
                    Some(n) => format!("{start}•••• ({n})"),
                    None => format!("{start}••••"),
                };
                map.insert(id, label);
            }
        }
        map.extend(consumers::names(&state.db, tenant, &cons).await?);
        if wants_api {
            let all: Vec<api::Model> = apis::list(&state.db, tenant, 100, None).await?.items;
            map.extend(all.into_iter().map(|a| (a.id, a.name)));
        }
        Ok(Self(map))
    }

    /// The name of `id`, or `id` itself when it has none here.
    #[must_use]
    pub fn label(&self, id: &str) -> String {
        self.0.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// Whether `id` was found.
    #[must_use]
    pub fn knows(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }
}

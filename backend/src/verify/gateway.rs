//! Each API's gateway rules (the header that carries the key, route → scopes), held on this
//! node for 30 s: the node where they change forgets them at once, others within 30 s.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::ConnectionTrait;

use crate::domain::ApiId;
use crate::domain::gateway::GatewayConfig;
use crate::store::StoreError;

/// An API as the gateway endpoint needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGateway {
    pub tenant_id: String,
    pub rules: GatewayConfig,
}

/// The rules held on this node; `None` held for an API that does not exist.
pub struct GatewayRules {
    held: moka::sync::Cache<String, Option<Arc<ApiGateway>>>,
}

impl Default for GatewayRules {
    fn default() -> Self {
        Self { held: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build() }
    }
}

impl GatewayRules {
    /// The API's rules, from this node's hold or read anew; `None` when there is no such API.
    ///
    /// # Errors
    /// Database errors.
    pub async fn of(&self, db: &impl ConnectionTrait, api: &ApiId) -> Result<Option<Arc<ApiGateway>>, StoreError> {
        if let Some(held) = self.held.get(api.as_str()) {
            return Ok(held);
        }
        let found = crate::store::apis::find(db, api).await?.map(|a| {
            let rules = a.gateway.and_then(|v| serde_json::from_value::<GatewayConfig>(v).ok()).unwrap_or_default();
            Arc::new(ApiGateway { tenant_id: a.tenant_id, rules })
        });
        self.held.insert(api.as_str().to_owned(), found.clone());
        Ok(found)
    }

    /// Forgets an API's rules on this node (they changed).
    pub fn forget(&self, api: &str) {
        self.held.invalidate(api);
    }
}

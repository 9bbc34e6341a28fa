//! Which APIs accept imported keys of a foreign format. Known per node for 30 s (the same as an
//! API's gateway rules); the node where an API changes forgets it at once. Only a presented key
//! that fails the format check and does not start like a Keyroll key ever asks.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// How long a node keeps the list.
pub const TTL: Duration = Duration::from_secs(30);

/// The list, and when it was read.
#[derive(Debug, Default)]
pub struct LegacyFormats {
    known: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl LegacyFormats {
    /// The APIs that accept foreign formats now.
    ///
    /// # Errors
    /// When the list must be read and the database cannot be.
    pub async fn apis(&self, db: &sea_orm::DatabaseConnection) -> Result<Arc<HashSet<String>>, StoreError> {
        if let Ok(k) = self.known.lock()
            && let Some((at, set)) = k.as_ref()
            && at.elapsed() < TTL
        {
            return Ok(Arc::clone(set));
        }
        let set: Arc<HashSet<String>> =
            Arc::new(crate::store::apis::with_legacy_formats(db).await?.into_iter().collect());
        if let Ok(mut k) = self.known.lock() {
            *k = Some((Instant::now(), Arc::clone(&set)));
        }
        Ok(set)
    }

    /// Reads the list anew at the next ask (an API changed on this node).
    pub fn forget(&self) {
        if let Ok(mut k) = self.known.lock() {
            *k = None;
        }
    }
}

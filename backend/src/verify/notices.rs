//! Events the verify path raises, once each: `ratelimit.exceeded` at a key's first refusal in a
//! window, `credits.low` when a spend takes a balance to a tenth of what it was set to. Written
//! to the outbox off the answer's path (the verification does not wait for them), to webhooks,
//! and by email to the consumer when the alert beside it is new.

use serde_json::{Value, json};

use super::record::KeyRecord;
use crate::domain::TenantId;

fn base(rec: &KeyRecord) -> Value {
    let d = &rec.data;
    json!({
        "key_id": d.id, "key_start": d.start, "lineage_id": d.lineage_id, "version": d.version, "api_id": d.api_id,
        "consumer_id": d.consumer.as_ref().map(|c| c.id.clone()),
    })
}

/// Raises `event_type` about `rec` with `extra` fields, in the background.
pub fn raise(db: &sea_orm::DatabaseConnection, rec: &KeyRecord, event_type: crate::domain::EventType, extra: Value) {
    let mut data = base(rec);
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let tenant = TenantId::from_trusted(rec.data.tenant_id.clone());
    let consumer = rec.data.consumer.as_ref().map(|c| c.id.clone());
    let db = db.clone();
    tokio::spawn(async move {
        let written = async {
            let txn = crate::store::begin_write(&db).await?;
            let mut audience = crate::notify::audience_of(&txn, consumer.as_deref()).await?;
            if !crate::alerts::beside_notice(&txn, &tenant, event_type.as_str(), &data).await? {
                // Already told by email while the alert is live; webhooks still hear every one.
                audience.consumer_email = None;
            }
            crate::notify::emit(&txn, &tenant, event_type, data, &audience).await?;
            txn.commit().await?;
            Ok::<_, crate::store::StoreError>(())
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, event_type = event_type.as_str(), "could not queue a notice from the verify path");
        }
    });
}

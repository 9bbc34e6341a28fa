//! The application layer below HTTP: every operation called directly, each checked for the row
//! it wrote, the audit entries and outbox events of its change, and the keys it dropped from the
//! cache.

use chrono::{TimeDelta, Utc};
use keyroll::app::{self, Actor, Ctx};
use keyroll::domain::rotation::Trigger;
use keyroll::domain::{EventType, KeyHash, KeyId, TenantId};
use keyroll::store::entities::{audit_event, event, key};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use crate::helpers::{TestApp, set_key_time};

/// What one operation must leave behind: its audit actions and event types (as multisets),
/// and which of the keys known so far it dropped from the cache.
struct Expect {
    op: &'static str,
    audit: &'static [&'static str],
    events: &'static [&'static str],
    /// Names (in `World::keys`) of the keys whose cached records must be gone.
    dropped: &'static [&'static str],
}

const TABLE: &[Expect] = &[
    Expect { op: "apis.create", audit: &["api.created"], events: &[], dropped: &[] },
    Expect { op: "apis.update", audit: &["api.updated"], events: &[], dropped: &[] },
    Expect { op: "consumers.create", audit: &["consumer.created"], events: &[], dropped: &[] },
    Expect { op: "consumers.create_other", audit: &["consumer.created"], events: &[], dropped: &[] },
    Expect { op: "keys.create", audit: &["key.created"], events: &["key.created"], dropped: &[] },
    Expect { op: "keys.update", audit: &["key.updated"], events: &["key.updated"], dropped: &["a"] },
    Expect { op: "keys.disable", audit: &["key.updated"], events: &["key.updated"], dropped: &["a"] },
    Expect { op: "keys.enable", audit: &["key.updated"], events: &["key.updated"], dropped: &["a"] },
    Expect { op: "consumers.update", audit: &["consumer.updated"], events: &[], dropped: &["a"] },
    Expect { op: "rotation.rotate", audit: &["key.rotated"], events: &["rotation.started"], dropped: &["a"] },
    Expect { op: "rotation.extend", audit: &["rotation.extended"], events: &["rotation.extended"], dropped: &["a2"] },
    Expect {
        op: "rotation.rollback",
        audit: &["rotation.rolled_back"],
        events: &["rotation.rolled_back"],
        dropped: &["a", "a2"],
    },
    Expect { op: "rotation.rotate", audit: &["key.rotated"], events: &["rotation.started"], dropped: &["a"] },
    Expect { op: "rotation.shorten", audit: &["rotation.extended"], events: &["rotation.extended"], dropped: &["a2"] },
    Expect {
        op: "rotation.complete",
        audit: &["rotation.completed"],
        events: &["rotation.completed"],
        dropped: &["a2"],
    },
    Expect { op: "self_service.rotate_own", audit: &["key.rotated"], events: &["rotation.started"], dropped: &["a"] },
    Expect {
        op: "keys.revoke",
        audit: &["key.revoked", "rotation.cancelled"],
        events: &["key.revoked"],
        dropped: &["a"],
    },
    Expect { op: "keys.create_b", audit: &["key.created"], events: &["key.created"], dropped: &[] },
    Expect { op: "keys.revoke_many", audit: &["key.revoked"], events: &["key.revoked"], dropped: &["b"] },
    Expect { op: "keys.create_c", audit: &["key.created"], events: &["key.created"], dropped: &[] },
    Expect { op: "consumers.delete", audit: &["consumer.deleted"], events: &["key.revoked"], dropped: &["c"] },
    Expect { op: "root_keys.create", audit: &["root_key.created"], events: &[], dropped: &[] },
    Expect {
        op: "rotation.rotate_root",
        audit: &["root_key.rotated"],
        events: &["rotation.started"],
        dropped: &["root"],
    },
    Expect {
        op: "root_keys.revoke",
        audit: &["root_key.revoked", "rotation.cancelled"],
        events: &["key.revoked"],
        dropped: &["root2"],
    },
    Expect { op: "policies.create", audit: &["policy.created"], events: &[], dropped: &[] },
    Expect { op: "policies.update", audit: &["policy.updated"], events: &[], dropped: &[] },
    Expect { op: "policies.delete", audit: &["policy.deleted"], events: &[], dropped: &[] },
    Expect { op: "webhooks.create", audit: &["webhook_endpoint.created"], events: &[], dropped: &[] },
    Expect { op: "webhooks.update", audit: &["webhook_endpoint.updated"], events: &[], dropped: &[] },
    Expect { op: "webhooks.rotate_secret", audit: &["webhook_endpoint.secret_rotated"], events: &[], dropped: &[] },
    Expect { op: "webhooks.delete", audit: &["webhook_endpoint.deleted"], events: &[], dropped: &[] },
    Expect { op: "members.invite", audit: &["member.invited"], events: &[], dropped: &[] },
    Expect { op: "members.change", audit: &["member.role_changed"], events: &[], dropped: &[] },
    Expect { op: "members.remove", audit: &["member.removed"], events: &[], dropped: &[] },
    Expect { op: "tenants.set_audit_retention", audit: &["settings.updated"], events: &[], dropped: &[] },
    Expect { op: "alerts.save_thresholds", audit: &["alert_thresholds.updated"], events: &[], dropped: &[] },
];

/// What the operations made so far.
#[derive(Default)]
struct World {
    api_id: String,
    consumer_id: String,
    other_consumer: String,
    /// Keys by name: "a" (the first lineage's current version), "a2", … later versions.
    keys: Vec<(&'static str, key::Model)>,
    rotation_id: String,
    policy_id: String,
    endpoint_id: String,
    member_id: String,
}

impl World {
    fn key(&self, name: &str) -> &key::Model {
        &self.keys.iter().rev().find(|(n, _)| *n == name).expect("a key of that name").1
    }

    fn put(&mut self, name: &'static str, k: key::Model) {
        self.keys.retain(|(n, _)| *n != name);
        self.keys.push((name, k));
    }
}

fn hash(k: &key::Model) -> KeyHash {
    KeyHash::from_hex(&k.hash).expect("a stored hash")
}

async fn audit_since(app: &TestApp, tenant: &TenantId, seq: i64) -> (i64, Vec<String>) {
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::TenantId.eq(tenant.as_str()))
        .filter(audit_event::Column::Seq.gt(seq))
        .order_by_asc(audit_event::Column::Seq)
        .all(&app.state.db)
        .await
        .expect("audit rows");
    let last = rows.last().map_or(seq, |r| r.seq);
    (last, rows.into_iter().map(|r| r.action).collect())
}

async fn events_of(app: &TestApp, tenant: &TenantId) -> Vec<event::Model> {
    event::Entity::find().filter(event::Column::TenantId.eq(tenant.as_str())).all(&app.state.db).await.expect("events")
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().collect();
    v.sort();
    v
}

async fn run(ctx: &Ctx<'_>, w: &mut World, op: &str) {
    match op {
        "apis.create" => {
            let input = app::apis::NewApiInput {
                name: "Orders".into(),
                key_prefix: "ops".into(),
                environment: "live".into(),
                scope_catalogue: vec!["orders:read".into(), "orders:write".into()],
            };
            let a = app::apis::create(ctx, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!((a.key_prefix.as_str(), a.name.as_str()), ("ops", "Orders"));
            w.api_id = a.id;
        }
        "apis.update" => {
            let changes = app::apis::ApiChanges {
                leak_policy: Some(app::apis::LeakPolicyInput { action: "rotate".into(), grace_seconds: Some(600) }),
                ..Default::default()
            };
            let a = app::apis::update(ctx, &w.api_id, changes).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!((a.leak_action.as_str(), a.leak_grace_seconds), ("rotate", 600));
        }
        "consumers.create" | "consumers.create_other" => {
            let ext = if op == "consumers.create" { "cus_ops" } else { "cus_other" };
            let input = app::consumers::NewConsumerInput {
                external_id: ext.into(),
                name: "Bob".into(),
                email: Some("bob@customer.test".into()),
                meta: None,
                stripe_customer_id: None,
            };
            let c = app::consumers::create(ctx, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(c.external_id, ext);
            if op == "consumers.create" {
                w.consumer_id = c.id;
            } else {
                w.other_consumer = c.id;
            }
        }
        "keys.create" | "keys.create_b" | "keys.create_c" => {
            let (name, consumer) = match op {
                "keys.create" => ("a", w.consumer_id.clone()),
                "keys.create_b" => ("b", w.consumer_id.clone()),
                _ => ("c", w.other_consumer.clone()),
            };
            let input = app::keys::NewKeyInput {
                api_id: w.api_id.clone(),
                consumer_id: consumer,
                name: Some(format!("key {name}")),
                scopes: vec!["orders:read".into()],
                expires_at: Some(Utc::now() + TimeDelta::days(5)),
                ..Default::default()
            };
            let made = app::keys::create(ctx, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(made.secret.expose().starts_with("ops_live_"));
            assert_eq!(made.key.version, 1);
            w.put(name, made.key);
        }
        "keys.update" => {
            let changes = app::keys::KeyChanges { name: Some(Some("renamed".into())), ..Default::default() };
            let k = app::keys::update(ctx, &w.key("a").id, changes).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(k.name.as_deref(), Some("renamed"));
            w.put("a", k);
        }
        "keys.disable" | "keys.enable" => {
            let enabled = op == "keys.enable";
            let k =
                app::keys::set_enabled(ctx, &w.key("a").id, enabled).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(k.enabled, enabled);
            w.put("a", k);
        }
        "consumers.update" => {
            let changes = app::consumers::ConsumerChanges { name: Some("Bob Ltd".into()), ..Default::default() };
            let c =
                app::consumers::update(ctx, &w.consumer_id, changes).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(c.name, "Bob Ltd");
        }
        "rotation.rotate" => {
            let old = w.key("a").clone();
            let input = app::rotation::RotateInput {
                overlap_seconds: Some(3_600),
                ..app::rotation::RotateInput::new(Trigger::Manual)
            };
            let r =
                app::rotation::rotate_key(ctx, &old.id, false, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(r.key.version > old.version);
            assert_eq!(r.key.expires_at, old.expires_at, "the lineage keeps its expiry");
            w.rotation_id = r.rotation.id.clone();
            w.put("a2", old);
            w.put("a", r.key);
        }
        "rotation.extend" => {
            let id = app::rotation::rotation_id(&w.rotation_id).unwrap_or_else(|e| panic!("{op}: {e:?}"));
            let end = Utc::now() + TimeDelta::hours(2);
            let r = app::rotation::extend(ctx, &id, end).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(r.grace_ends_at > Utc::now() + TimeDelta::minutes(90));
        }
        "rotation.rollback" => {
            let id = app::rotation::rotation_id(&w.rotation_id).unwrap_or_else(|e| panic!("{op}: {e:?}"));
            let r = app::rotation::rollback(ctx, &id).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(r.state, "rolled_back");
            let current = keyroll::store::keys::get(ctx.db(), &ctx.tenant, &KeyId::from_trusted(r.from_key_id), false)
                .await
                .expect("old version");
            assert!(current.grace_ends_at.is_none(), "the old version is current again");
            w.keys.retain(|(n, _)| *n != "a2");
            w.put("a", current);
        }
        "rotation.shorten" => {
            let id = app::rotation::rotation_id(&w.rotation_id).unwrap_or_else(|e| panic!("{op}: {e:?}"));
            let r = app::rotation::shorten(ctx, &id, Utc::now() + TimeDelta::minutes(30))
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(r.grace_ends_at <= Utc::now() + TimeDelta::minutes(31));
        }
        "rotation.complete" => {
            let id = app::rotation::rotation_id(&w.rotation_id).unwrap_or_else(|e| panic!("{op}: {e:?}"));
            let r = app::rotation::complete(ctx, &id).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!((r.state.as_str(), r.to_key_id.as_str()), ("completed", w.key("a").id.as_str()));
        }
        "self_service.rotate_own" => {
            let current = w.key("a").clone();
            let consumer = current.consumer_id.clone().expect("a consumer's key");
            let me = Ctx::consumer(ctx.state, ctx.tenant.clone(), &consumer, ctx.origin.clone());
            let r = app::self_service::rotate_own(&me, &KeyId::from_trusted(current.id.clone()), Some(600))
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(r.rotation.trigger, "self_service");
            assert_eq!(r.key.expires_at, current.expires_at, "the lineage keeps its expiry");
            w.rotation_id = r.rotation.id.clone();
            w.put("a2", current);
            w.put("a", r.key);
        }
        "keys.revoke" => {
            let k = app::keys::revoke(ctx, &w.key("a").id, "leaked in a log")
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(k.revoked_reason.as_deref(), Some("leaked in a log"));
        }
        "keys.revoke_many" => {
            let ids = [KeyId::from_trusted(w.key("b").id.clone()), KeyId::from_trusted(w.key("a").id.clone())];
            let revoked =
                app::keys::revoke_many(ctx, &ids, false, "incident 42").await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(revoked.len(), 1, "the key revoked already is left alone");
        }
        "consumers.delete" => {
            let n = app::consumers::delete(ctx, &w.other_consumer).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(n, 1);
        }
        "root_keys.create" => {
            let input = app::root_keys::NewRootKey {
                name: Some("CI".into()),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            };
            let made = app::root_keys::create(ctx, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(made.secret.expose().starts_with("kr_root_") && made.key.is_root);
            w.put("root", made.key);
        }
        "rotation.rotate_root" => {
            let old = w.key("root").clone();
            let input = app::rotation::RotateInput::new(Trigger::Manual);
            let r =
                app::rotation::rotate_key(ctx, &old.id, true, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(r.key.is_root);
            w.put("root2", old);
            w.put("root", r.key);
        }
        "root_keys.revoke" => {
            let k = app::root_keys::revoke(ctx, &w.key("root2").id, "no longer used")
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(k.revoked_at.is_some());
        }
        "policies.create" => {
            let body: app::policies::PolicyBody =
                serde_json::from_value(json!({"api_id": w.api_id, "interval_days": 30})).expect("body");
            let p = app::policies::create(ctx, &body).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(p.interval_days, Some(30));
            w.policy_id = p.id;
        }
        "policies.update" => {
            let body: app::policies::PolicyBody = serde_json::from_value(json!({"max_active": 3})).expect("body");
            let p = app::policies::update(ctx, &w.policy_id, &body).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(p.max_active, 3);
        }
        "policies.delete" => app::policies::delete(ctx, &w.policy_id).await.unwrap_or_else(|e| panic!("{op}: {e:?}")),
        "webhooks.create" => {
            let input = app::webhooks::NewEndpoint {
                url: "http://127.0.0.1:9/hooks".into(),
                event_types: Some(vec!["key.revoked".into()]),
                consumer_id: None,
            };
            let made = app::webhooks::create(ctx, input).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(made.secret.starts_with("whsec_"));
            w.endpoint_id = made.endpoint.id;
        }
        "webhooks.update" => {
            let changes = app::webhooks::EndpointChanges { enabled: Some(false), ..Default::default() };
            let ep =
                app::webhooks::update(ctx, &w.endpoint_id, changes).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(!ep.enabled);
        }
        "webhooks.rotate_secret" => {
            let made = app::webhooks::rotate_secret(ctx, &w.endpoint_id, Some(60))
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(made.endpoint.previous_secret.is_some());
        }
        "webhooks.delete" => app::webhooks::delete(ctx, &w.endpoint_id).await.unwrap_or_else(|e| panic!("{op}: {e:?}")),
        "members.invite" => {
            let invited =
                app::members::invite(ctx, "dan@acme.test", "viewer").await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert!(invited.new_account);
            w.member_id = invited.user.id;
        }
        "members.change" => {
            app::members::change(ctx, &w.member_id, Some("developer")).await.unwrap_or_else(|e| panic!("{op}: {e:?}"))
        }
        "members.remove" => {
            app::members::change(ctx, &w.member_id, None).await.unwrap_or_else(|e| panic!("{op}: {e:?}"))
        }
        "tenants.set_audit_retention" => {
            let t = app::tenants::set_audit_retention(ctx, 90, 365).await.unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(t.settings["audit_retention_days"], 90);
        }
        "alerts.save_thresholds" => {
            let t = app::alerts::save_thresholds(ctx, &json!({"not_found_min": 12}))
                .await
                .unwrap_or_else(|e| panic!("{op}: {e:?}"));
            assert_eq!(serde_json::to_value(t).expect("thresholds")["not_found_min"], 12);
        }
        other => panic!("no operation {other} in the table"),
    }
}

async fn every_operation(app: TestApp) {
    let t = app.tenant("Acme").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let ctx = Ctx::acting(&app.state, tenant.clone(), Actor::RootKey("key_operations".into()));
    let (mut seq, _) = audit_since(&app, &tenant, 0).await;
    let mut seen: std::collections::HashSet<String> =
        events_of(&app, &tenant).await.into_iter().map(|e| e.id).collect();
    let mut world = World::default();
    for e in TABLE {
        // Every key made so far is in the cache before the operation. A node hears its own
        // invalidations back from the log (and, with Redis, the bus) a moment later: they land
        // first.
        app.heard_own_invalidations().await;
        let known: Vec<(&'static str, KeyHash)> = world.keys.iter().map(|(n, k)| (*n, hash(k))).collect();
        for (name, h) in &known {
            let mut tries = 0;
            while app.state.cache.cached(h).is_none() {
                // A read that overlaps an invalidation is rightly not cached: read again.
                app.state.cache.get(h, &app.state.db).await.expect("cache read");
                tries += 1;
                assert!(tries < 50, "{}: key {name} could not be cached", e.op);
            }
        }
        run(&ctx, &mut world, e.op).await;

        let (last, actions) = audit_since(&app, &tenant, seq).await;
        seq = last;
        assert_eq!(sorted(actions), sorted(e.audit.iter().map(|s| (*s).to_owned())), "{}: audit entries", e.op);

        let fresh: Vec<event::Model> =
            events_of(&app, &tenant).await.into_iter().filter(|ev| seen.insert(ev.id.clone())).collect();
        assert_eq!(
            sorted(fresh.iter().map(|ev| ev.event_type.clone())),
            sorted(e.events.iter().map(|s| (*s).to_owned())),
            "{}: events",
            e.op
        );
        for ev in &fresh {
            assert!(EventType::parse(&ev.event_type).is_some(), "{}: {} is a known type", e.op, ev.event_type);
            assert!(ev.payload.get("key_id").is_some() || ev.payload.get("rotation_id").is_some(), "{}", ev.payload);
        }

        for (name, h) in &known {
            let kept = app.state.cache.cached(h).is_some();
            if e.dropped.contains(name) {
                assert!(!kept, "{}: the cached record of key {name} must be dropped", e.op);
            } else {
                assert!(kept, "{}: key {name} must stay cached", e.op);
            }
        }
    }
}

crate::both_backends!(operations_below_http, every_operation);

/// Keys that pass their `expires_at` are announced once as `key.expired` by the sweep, and
/// `policy.rotation_due` is emitted once when a policy's rotation falls due.
async fn expiry_and_due_events(app: TestApp) {
    let t = app.tenant("Acme").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let made = app.make_key(&t, "exp", json!({})).await;
    // A key whose expiry has just passed (set in the database: the API refuses a past expiry).
    let past = Utc::now() - TimeDelta::minutes(1);
    set_key_time(&app, &made.key_id, key::Column::ExpiresAt, past).await;
    let first = app::keys::announce_expired(&app.state, Utc::now()).await.expect("sweep");
    let again = app::keys::announce_expired(&app.state, Utc::now()).await.expect("sweep again");
    assert_eq!((first, again), (1, 0), "announced once");
    let expired: Vec<_> =
        events_of(&app, &tenant).await.into_iter().filter(|e| e.event_type == "key.expired").collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].payload["key_id"], made.key_id.as_str());

    // A policy due now: its rotation is announced, once, even when it is not carried out.
    let (st, p) = app
        .post("/v1/policies", &t.root, json!({"api_id": made.api_id, "interval_days": 1, "overlap_seconds": 3600}))
        .await;
    assert_eq!(st, 201, "{p}");
    let fresh = app.make_key(&t, "exp", json!({})).await;
    let old = Utc::now() - TimeDelta::days(2);
    set_key_time(&app, &fresh.key_id, key::Column::CreatedAt, old).await;
    for _ in 0..2 {
        keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("scan");
    }
    let due: Vec<_> =
        events_of(&app, &tenant).await.into_iter().filter(|e| e.event_type == "policy.rotation_due").collect();
    assert_eq!(due.len(), 1, "once per version");
    assert_eq!(due[0].payload["key_id"], fresh.key_id.as_str());
    assert_eq!(due[0].payload["policy_id"], p["id"]);
}

crate::both_backends!(expiry_and_due, expiry_and_due_events);

/// Every operation of the table, once, on a tenant of its own (for tests that need their effects).
pub(crate) async fn every_operation_on(app: &TestApp) {
    let t = app.tenant("Table").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let ctx = Ctx::acting(&app.state, tenant, Actor::RootKey("key_operations".into()));
    let mut world = World::default();
    for e in TABLE {
        run(&ctx, &mut world, e.op).await;
    }
}

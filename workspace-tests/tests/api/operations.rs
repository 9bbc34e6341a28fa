//! The application layer below HTTP: every operation called directly, each checked for the row
//! it wrote, the audit entries and outbox events of its change, and the keys it dropped from the
//! cache. Then the dashboard and the management API, given the same bad input, refuse it alike.

use chrono::{TimeDelta, Utc};
use keyroll::app::{self, Actor, Ctx};
use keyroll::domain::rotation::Trigger;
use keyroll::domain::{EventType, KeyHash, KeyId, TenantId};
use keyroll::store::entities::{audit_event, event, key};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use crate::dashboard::{Browser, create_key, root_of, sign_up};
use crate::helpers::TestApp;

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
        let logged = keyroll::store::invalidations::last_seq(&app.state.db).await.expect("log");
        while app.state.cache.tail_position() < logged {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if app.shared.redis_url.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
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
    key::Entity::update_many()
        .col_expr(key::Column::ExpiresAt, sea_orm::sea_query::Expr::value(past))
        .filter(key::Column::Id.eq(made.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("expire the key");
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
    key::Entity::update_many()
        .col_expr(key::Column::CreatedAt, sea_orm::sea_query::Expr::value(old))
        .filter(key::Column::Id.eq(fresh.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("age the key");
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

/// Every event type is emitted by some operation: together, the runs above and the rest of the
/// suite's scenarios cover the enum; this test drives the ones no table row emits and then
/// checks the whole enum against the outbox of one install.
async fn every_event_type_is_emitted(app: TestApp) {
    every_operation_on(&app).await;
    let t = app.tenant("Events").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let mut seen: std::collections::BTreeSet<String> =
        event::Entity::find().all(&app.state.db).await.expect("events").into_iter().map(|e| e.event_type).collect();
    // The rest, each from the operation or detector that emits it.
    let limited = app.make_key(&t, "evt", json!({"ratelimit": {"limit": 1, "window_seconds": 60}})).await;
    let credited = app.make_key(&t, "evt", json!({"credits": {"remaining": 10}})).await;
    for _ in 0..3 {
        app.verify(json!({"key": limited.secret})).await;
    }
    for _ in 0..9 {
        app.verify(json!({"key": credited.secret})).await;
    }
    let ctx = Ctx::acting(&app.state, tenant.clone(), Actor::System);
    // Expiry notice, due rotation and expiry.
    expiry_and_due_events_on(&app, &t).await;
    // A leak report and a playbook run (started, completed).
    let k = app.make_key(&t, "evt", json!({})).await;
    let report = vec![keyroll::playbooks::leak::Report {
        token: k.secret.clone(),
        token_type: "keyroll".into(),
        url: String::new(),
        source: "test".into(),
    }];
    keyroll::playbooks::leak::handle(&app.state, "scanner", report).await.expect("leak handled");
    // A failed playbook run: rolling back a rotation that is not there.
    let def = keyroll::playbooks::catalogue::Definition {
        name: "Broken".into(),
        description: String::new(),
        target: keyroll::playbooks::catalogue::TargetKind::Key,
        steps: serde_json::from_value(json!([{"kind": "rollback"}])).expect("steps"),
    };
    let target = keyroll::playbooks::runs::Target { key_id: Some(k.key_id.clone()), ..Default::default() };
    let run = keyroll::playbooks::runs::start(&ctx, "custom", &def, &target, Utc::now()).await.expect("run");
    keyroll::playbooks::execute::run(&app.state, "", &run.id).await.expect("executed");
    // An alert raised and resolved.
    let alert = {
        use keyroll::domain::anomaly::{AlertKind, Finding};
        let txn = keyroll::store::begin_write(&app.state.db).await.expect("txn");
        let f = Finding { kind: AlertKind::RateSpike, summary: "spike".into(), evidence: json!({}) };
        let (a, _) = keyroll::alerts::raise(&txn, &tenant, &k.key_id, &f, Utc::now()).await.expect("alert");
        txn.commit().await.expect("commit");
        a.id
    };
    app::alerts::change(&ctx, &alert, app::alerts::AlertChange::Resolve).await.expect("resolved");
    // Verifications raise their notices in the background.
    for _ in 0..100 {
        seen =
            event::Entity::find().all(&app.state.db).await.expect("events").into_iter().map(|e| e.event_type).collect();
        if EventType::ALL.iter().all(|t| seen.contains(t.as_str())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let missing: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).filter(|t| !seen.contains(*t)).collect();
    assert!(missing.is_empty(), "event types never emitted: {missing:?}");
}

crate::both_backends!(event_types, every_event_type_is_emitted);

async fn every_operation_on(app: &TestApp) {
    let t = app.tenant("Table").await;
    let tenant = TenantId::from_trusted(t.id.clone());
    let ctx = Ctx::acting(&app.state, tenant, Actor::RootKey("key_operations".into()));
    let mut world = World::default();
    for e in TABLE {
        run(&ctx, &mut world, e.op).await;
    }
}

async fn expiry_and_due_events_on(app: &TestApp, t: &crate::helpers::Tenant) {
    let made = app.make_key(t, "due", json!({})).await;
    let (st, _) = app
        .post(
            "/v1/policies",
            &t.root,
            json!({"api_id": made.api_id, "interval_days": 1, "overlap_seconds": 3600, "notice_seconds": [86_000]}),
        )
        .await;
    assert_eq!(st, 201);
    let old = Utc::now() - TimeDelta::hours(23);
    key::Entity::update_many()
        .col_expr(key::Column::CreatedAt, sea_orm::sea_query::Expr::value(old))
        .filter(key::Column::Id.eq(made.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("age the key");
    keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("notice");
    let older = Utc::now() - TimeDelta::days(2);
    key::Entity::update_many()
        .col_expr(key::Column::CreatedAt, sea_orm::sea_query::Expr::value(older))
        .filter(key::Column::Id.eq(made.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("age the key more");
    keyroll::app::rotation::policy_scan::scan(&app.state).await.expect("due");
    key::Entity::update_many()
        .col_expr(key::Column::ExpiresAt, sea_orm::sea_query::Expr::value(Utc::now() - TimeDelta::seconds(5)))
        .filter(key::Column::Id.eq(made.key_id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("expire the key");
    app::keys::announce_expired(&app.state, Utc::now()).await.expect("expiry");
}

/// The same bad input, through the management API and through the dashboard's forms, is
/// refused alike: the same fields, no change made.
async fn adapters_agree(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let root = root_of(&app).await;
    let csrf = ann.get("/app").await.csrf();
    let (_, api) = app
        .post(
            "/v1/apis",
            &root,
            json!({"name": "Orders", "key_prefix": "agree", "environment": "live", "scope_catalogue": ["orders:read"]}),
        )
        .await;
    let api_id = api["id"].as_str().expect("api").to_owned();
    let (_, con) = app.post("/v1/consumers", &root, json!({"external_id": "cus_1", "name": "Bob"})).await;
    let consumer_id = con["id"].as_str().expect("consumer").to_owned();
    let before =
        keyroll::store::keys::hashes_of(&app.state.db, &tenant_of(&app).await, None, None).await.expect("keys");

    // A scope outside the API's catalogue; a name of 201 characters.
    let long = "n".repeat(201);
    for (scopes, name, field) in
        [("billing:read", "prod", "scopes"), ("orders:read", long.as_str(), "name"), ("Not A Scope", "prod", "scopes")]
    {
        let (st, p) = app
            .post(
                "/v1/keys",
                &root,
                json!({"api_id": api_id, "consumer_id": consumer_id, "name": name, "scopes": [scopes]}),
            )
            .await;
        assert_eq!(st, 400, "{p}");
        assert!(p["errors"][0]["field"].as_str().is_some_and(|f| f.starts_with(field)), "{p}");
        let form = [
            ("csrf", csrf.as_str()),
            ("consumer_id", consumer_id.as_str()),
            ("api_id", api_id.as_str()),
            ("name", name),
            ("scopes", scopes),
            ("expires_days", ""),
        ];
        let page = ann.post("/app/keys", &form).await;
        assert_eq!(page.status, 422, "{scopes} / {}: the dashboard refuses it too", name.len());
        assert!(page.body.contains(&format!("id=\"{field}-error\"")) || page.body.contains("aria-invalid=\"true\""));
    }
    // The catalogue's own scopes are accepted by both.
    let made = create_key(&ann, &csrf, &consumer_id, "orders:read").await;
    assert!(made.body.contains("Key created"), "{}", made.body);

    // Root-key scopes: an unknown one is refused by both, not dropped.
    let (st, p) = app.post("/v1/root-keys", &root, json!({"name": "CI", "scopes": ["keys:read", "keys:fly"]})).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("scopes[1]")), "{p}");
    let page = ann
        .post("/app/root-keys", &[("csrf", &csrf), ("name", "CI"), ("scope", "keys:read"), ("scope", "keys:fly")])
        .await;
    assert_eq!(page.status, 422, "the dashboard refuses the unknown scope instead of dropping it");

    // A revoke reason over 500 characters.
    let reason = "r".repeat(501);
    let key_id = made.link("/app/keys/").trim_start_matches("/app/keys/").to_owned();
    let (st, p) = app.post(&format!("/v1/keys/{key_id}/revoke"), &root, json!({"reason": reason})).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("reason")));
    let start = app.get(&format!("/v1/keys/{key_id}"), &root).await.1["start"].as_str().expect("start").to_owned();
    let page = ann
        .post(&format!("/app/keys/{key_id}/revoke"), &[("csrf", &csrf), ("reason", &reason), ("confirm", &start)])
        .await;
    assert_eq!(page.status, 422);

    // A leak-policy grace above a day.
    let (st, p) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{api_id}"),
            &root,
            Some(json!({"leak_policy": {"action": "rotate", "grace_seconds": 86_460}})),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("leak_policy.grace_seconds")));
    let page = ann
        .post(&format!("/app/apis/{api_id}/leak-policy"), &[("csrf", &csrf), ("action", "rotate"), ("minutes", "1441")])
        .await;
    assert_eq!(page.status, 422);

    // An unknown event type for a webhook endpoint.
    let (st, p) = app
        .post("/v1/webhook-endpoints", &root, json!({"url": "http://127.0.0.1:9/h", "event_types": ["key.nope"]}))
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("event_types[0]")));
    let page = ann
        .post("/app/webhooks", &[("csrf", &csrf), ("url", "http://127.0.0.1:9/h"), ("event_types", "key.nope")])
        .await;
    assert_eq!(page.status, 422);

    // Nothing was made by any refused input: one key more, the one accepted.
    let after = keyroll::store::keys::hashes_of(&app.state.db, &tenant_of(&app).await, None, None).await.expect("keys");
    assert_eq!(after.len(), before.len() + 1);
}

async fn tenant_of(app: &TestApp) -> TenantId {
    let ann = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    TenantId::from_trusted(
        keyroll::store::accounts::memberships(&app.state.db, &ann.id).await.expect("teams")[0].1.id.clone(),
    )
}

crate::both_backends!(adapters_give_one_verdict, adapters_agree);

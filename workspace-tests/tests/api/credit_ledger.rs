//! Credits spent in Redis (one atomic script per verification) and written to the database in
//! batches: exact across nodes, reconciled at each flush, dropped from Redis when an operator
//! changes them, refilled once per period, and after Redis loses its data at most one flush
//! interval of spends is spent again. Busy keys spend from leases, given back at the flush.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{Backend, Made, Shared, TestApp, fresh, spawn_node_with, verify_on_both};
use crate::redis_faults::{OwnRedis, free_port};

/// Flushes only when the test says so.
const NO_AUTO_FLUSH: &[(&str, &str)] = &[("usage_flush_interval_ms", "3600000")];

async fn stored(app: &TestApp, lineage: &str) -> Option<(i64, Option<String>)> {
    let sql = format!("SELECT remaining, period FROM key_credits WHERE lineage_id = '{lineage}'");
    let row = app
        .state
        .db
        .query_one_raw(Statement::from_string(app.state.db.get_database_backend(), sql))
        .await
        .expect("read the balance")?;
    Some((row.try_get("", "remaining").expect("remaining"), row.try_get("", "period").expect("period")))
}

async fn spend(app: &TestApp, k: &Made, cost: u64) -> (String, Option<u64>) {
    let v = app.verify(json!({"key": k.secret, "cost": cost})).await;
    (v["code"].as_str().unwrap_or_default().to_owned(), v["credits"]["remaining"].as_u64())
}

async fn flush(app: &TestApp) {
    app.state.credits.flush(&app.state.cache, &app.state.db).await.expect("credit flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_are_spent_in_redis_and_written_in_batches() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let b = spawn_node_with(&shared, None, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 100}})).await;
    for n in 1..=10_u64 {
        assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(100 - n)));
    }
    assert_eq!(stored(&a, &k.key_id).await, Some((100, None)), "nothing written before the flush");
    assert_eq!(spend(&b, &k, 5).await, ("VALID".to_owned(), Some(85)), "the other node spends the same balance");
    // A flush writes what was spent since the last one, whichever node spent it.
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((85, None)));
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((85, None)));
    flush(&a).await;
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((85, None)), "a spend is written once");

    // Too expensive: refused, nothing spent; the free call passes.
    assert_eq!(spend(&a, &k, 86).await, ("USAGE_EXCEEDED".to_owned(), Some(85)));
    assert_eq!(spend(&a, &k, 0).await, ("VALID".to_owned(), Some(85)));

    // An operator's new balance replaces the one in Redis at once, on every node; spends made
    // before the change and not yet written are not taken from the new balance.
    assert_eq!(spend(&a, &k, 2).await, ("VALID".to_owned(), Some(83)));
    let (st, _) = a.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 40}})).await;
    assert_eq!(st, 200);
    assert_eq!(spend(&b, &k, 1).await, ("VALID".to_owned(), Some(39)));
    flush(&a).await;
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((39, None)), "B's spend is written, not A's two before the change");

    // A monthly refill happens once, in Redis, and reaches the database at the flush.
    let m = a
        .make_key(&acme, "acme", json!({"credits": {"remaining": 1, "refill": {"interval": "monthly", "amount": 20}}}))
        .await;
    assert_eq!(spend(&a, &m, 1).await, ("VALID".to_owned(), Some(0)));
    assert_eq!(spend(&a, &m, 1).await.0, "USAGE_EXCEEDED");
    flush(&a).await;
    let sql = format!("UPDATE key_credits SET period = '2000-01' WHERE lineage_id = '{}'", m.key_id);
    a.state.db.execute_unprepared(&sql).await.expect("last month");
    a.state.credits.forget(&a.state.cache, std::slice::from_ref(&m.key_id)).await;
    assert_eq!(spend(&b, &m, 3).await, ("VALID".to_owned(), Some(17)), "refilled to 20, then 3 spent");
    assert_eq!(spend(&a, &m, 1).await, ("VALID".to_owned(), Some(16)), "refilled once");
    flush(&a).await;
    flush(&b).await;
    let (left, period) = stored(&a, &m.key_id).await.expect("balance");
    assert_eq!(left, 16);
    assert_ne!(period.as_deref(), Some("2000-01"), "the refill's period is written");

    // Credits taken off: the balance is gone and the key verifies without one.
    let (st, _) = a.patch_key(&acme.root, &k.key_id, json!({"credits": null})).await;
    assert_eq!(st, 200);
    // B hears of the change through the bus, a moment after the answer to A's caller.
    let started = std::time::Instant::now();
    let v = loop {
        let v = b.verify(json!({"key": k.secret, "cost": 1000})).await;
        if !v["credits"].is_object() || started.elapsed() > Duration::from_secs(5) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((v["code"].as_str(), v["credits"].is_null()), (Some("VALID"), true), "{v}");
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, None);
}

/// An operator sets a balance while a flush is out: the spends it took from Redis before were
/// made from the balance that was replaced, and are neither written to the new one nor given
/// back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_set_during_a_flush_keeps_its_value() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 5}})).await;
    assert_eq!(spend(&a, &k, 5).await, ("VALID".to_owned(), Some(0)));
    // The first half of a flush: the spends are taken from Redis.
    let l2 = a.state.cache.l2().expect("redis configured");
    let taken = l2.take_credits(&k.key_id).await.expect("take").expect("the balance is held");
    assert_eq!(taken.spent, 5);
    let (st, _) = a.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 4}})).await;
    assert_eq!(st, 200);
    // The second half writes them, after the change.
    keyroll::store::credits::reconcile(&a.state.db, &k.key_id, &taken).await.expect("reconcile");
    assert_eq!(stored(&a, &k.key_id).await, Some((4, None)), "the balance as set");
    assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(3)));
    // A flush that could not write them gives them back: not to the balance loaded since.
    l2.give_back_credits(&k.key_id, &taken).await.expect("give back");
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((3, None)), "only the spend made after the change");
}

/// Redis loses its data: the balance comes back from the database, which lacks only the spends
/// since the last flush; those are the only credits spent twice. Redis away: spends go to the
/// database, and the balance Redis still holds when it is back (it missed them) is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_replays_at_most_one_flush_interval() {
    let port = free_port();
    let rdir = std::env::temp_dir().join(format!("kr-credits-{}", uuid::Uuid::now_v7().simple()));
    let Some(mut redis) = OwnRedis::start(port, rdir, true) else { return };
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let shared = Shared { redis_url: Some(format!("redis://127.0.0.1:{port}")), ..shared };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 100}})).await;
    for _ in 0..10 {
        assert_eq!(spend(&a, &k, 1).await.0, "VALID");
    }
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((90, None)));
    // Five more, not written yet, when Redis loses everything.
    for n in 1..=5 {
        assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(90 - n)));
    }
    redis.flush_all();
    for n in 1..=3 {
        assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(90 - n)), "the database's 90, less what follows");
    }
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((87, None)), "the five lost spends replayed, no more");

    // Redis stops, keeping its data (87) on disk; the node spends from the database meanwhile.
    redis.kill();
    for n in 1..=3 {
        assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(87 - n)));
    }
    assert_eq!(stored(&a, &k.key_id).await, Some((84, None)), "spent in the database");
    redis.restart();
    let started = std::time::Instant::now();
    while a.state.cache.live_l2().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "Redis is not used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Redis came back holding 87, which missed three spends: it is dropped, not used.
    assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(83)));
    assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(82)));
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((82, None)));
}

async fn held(app: &TestApp, lineage: &str) -> keyroll::cache::credit_tier::HeldBalance {
    let l2 = app.state.cache.l2().expect("redis configured");
    let mut got = l2.peek_credits(&[lineage]).await.expect("peek");
    got.pop().flatten().expect("the balance is in Redis")
}

/// A busy key spends from a lease: credits taken from the balance in Redis with one spend, spent
/// in process and given back at the flush. One node's answers stay exact, the database gets
/// every spend once, and an operator's new balance voids the leases of the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_keys_spend_from_leases_given_back_at_the_flush() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let b = spawn_node_with(&shared, None, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 100_000}})).await;
    // The spends count towards a lease in the key's cached record: the record must stay.
    a.heard_own_invalidations().await;
    for n in 1..=40_u64 {
        assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(100_000 - n)), "exact on one node");
    }
    // The 16th spend took a lease of a hundredth of what was left (99 984), with itself.
    let h = held(&a, &k.key_id).await;
    assert_eq!((h.remaining, h.lent), (99_984 - 999, 999), "{h:?}");
    let c = keyroll::domain::input::Credits { remaining: 100_000, refill: None };
    let lineages = [(k.key_id.as_str(), c)];
    let view = a.state.credits.balances(&a.state.cache, &a.state.db, &acme.id, &lineages, chrono::Utc::now()).await;
    assert_eq!(view.expect("balances").get(&k.key_id), Some(&99_960), "leased credits not spent still count");

    // The other node, not busy with the key, spends in Redis: its answer leaves out A's lease.
    assert_eq!(spend(&b, &k, 5).await, ("VALID".to_owned(), Some(99_984 - 999 - 5)));
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((100_000 - 16 - 5, None)), "B's and the lease-taking spends");
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((100_000 - 45, None)), "the lease's 24 spends written once");
    let h = held(&a, &k.key_id).await;
    assert_eq!((h.remaining, h.lent), (99_955, 0), "what the lease had left is back");
    flush(&a).await;
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((99_955, None)));
    assert_eq!(spend(&b, &k, 1).await, ("VALID".to_owned(), Some(99_954)));

    // Busy again; then an operator sets a new balance: the lease of the old one is void, on the
    // node that holds it too, and none of its spends is taken from the new balance.
    // (A record read while an invalidation arrives is not cached, and an uncached key is not
    // leased for: busy means busy on one cached record.)
    let mut spends = 0;
    while held(&a, &k.key_id).await.lent == 0 {
        assert!(spends < 500, "not leased for again");
        assert_eq!(spend(&a, &k, 1).await.0, "VALID");
        spends += 1;
    }
    let (st, _) = b.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 50_000}})).await;
    assert_eq!(st, 200);
    let started = std::time::Instant::now();
    while spend(&a, &k, 0).await.1 != Some(50_000) {
        assert!(started.elapsed() < Duration::from_secs(5), "node A still answers from the old balance");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(49_999)));
    flush(&a).await;
    flush(&b).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((49_999, None)));
    assert_eq!(held(&a, &k.key_id).await.remaining, 49_999);
}

/// During an overlap both versions of a key spend one balance. A new balance set on the new
/// version, through another node, voids the lease the old version's cached record holds: the
/// old version spends from the new balance at once, not from its lease until the next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_balance_voids_the_leases_of_every_version_on_every_node() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let b = spawn_node_with(&shared, None, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let old = a.make_key(&acme, "acme", json!({"credits": {"remaining": 100_000}})).await;
    let (st, rotated) =
        a.post(&format!("/v1/keys/{}/rotate", old.key_id), &acme.root, json!({"overlap_seconds": 3600})).await;
    assert_eq!(st, 201, "{rotated}");
    let new_id = rotated["key"]["id"].as_str().expect("the new version's id").to_owned();
    a.heard_own_invalidations().await;
    // The first spend loads the balance into Redis; a busy record then takes a lease.
    for spends in 1.. {
        assert!(spends < 500, "the old version is not leased for");
        assert_eq!(spend(&a, &old, 1).await.0, "VALID");
        if held(&a, &old.key_id).await.lent > 0 {
            break;
        }
    }
    let (st, _) = b.patch_key(&acme.root, &new_id, json!({"credits": {"remaining": 5}})).await;
    assert_eq!(st, 200);
    let started = std::time::Instant::now();
    while spend(&a, &old, 0).await.1 != Some(5) {
        assert!(started.elapsed() < Duration::from_secs(5), "the old version still spends from its lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 1..=5 {
        assert_eq!(spend(&a, &old, 1).await, ("VALID".to_owned(), Some(5 - n)));
    }
    assert_eq!(spend(&a, &old, 1).await, ("USAGE_EXCEEDED".to_owned(), Some(0)));
    flush(&a).await;
    assert_eq!(stored(&a, &old.key_id).await, Some((0, None)));
}

/// A node reads a balance from the database just before an operator sets a new one, and stores
/// it in Redis just after the new setting dropped the balance there: the old one is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_read_before_a_new_setting_is_not_served_after_it() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 100}})).await;
    let c = keyroll::domain::input::Credits { remaining: 100, refill: None };
    let read = keyroll::store::credits::load(&a.state.db, &acme.id, &k.key_id, &c).await.expect("read");
    assert_eq!(read.remaining, 100);
    let (st, _) = a.patch_key(&acme.root, &k.key_id, json!({"credits": {"remaining": 5}})).await;
    assert_eq!(st, 200);
    let l2 = a.state.cache.l2().expect("redis configured");
    keyroll::verify::credits::store_loaded(l2, &a.state.db, &k.key_id, &read).await.expect("stored");
    assert_eq!(spend(&a, &k, 1).await, ("VALID".to_owned(), Some(4)), "the new balance, not the one read before it");
    flush(&a).await;
    assert_eq!(stored(&a, &k.key_id).await, Some((4, None)));
}

/// Two nodes spend one balance as fast as they can: leases never let them spend more than it
/// holds, and what they leave on leases comes back at the flush, to the last credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_spend_more_than_the_balance() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node_with(&shared, dir, NO_AUTO_FLUSH).await;
    let b = spawn_node_with(&shared, None, NO_AUTO_FLUSH).await;
    let acme = a.tenant("Acme").await;
    let k = a.make_key(&acme, "acme", json!({"credits": {"remaining": 3_000}})).await;
    let mut valid = 0_u64;
    let mut most_lent = 0;
    for _ in 0..3 {
        // Until neither node can spend, 16 verifications at a time on each.
        loop {
            let answers = verify_on_both(&a, &b, &k.secret, 32).await;
            let codes: Vec<&str> = answers.iter().map(|v| v["code"].as_str().unwrap_or_default()).collect();
            let passed = codes.iter().filter(|c| **c == "VALID").count() as u64;
            assert!(codes.iter().all(|c| *c == "VALID" || *c == "USAGE_EXCEEDED"), "{codes:?}");
            valid += passed;
            most_lent = most_lent.max(held(&a, &k.key_id).await.lent);
            if passed == 0 {
                break;
            }
        }
        flush(&a).await;
        flush(&b).await;
    }
    assert!(most_lent > 0, "the nodes spent from leases");
    assert_eq!(valid, 3_000, "every credit spent once, none twice");
    assert_eq!(stored(&a, &k.key_id).await, Some((0, None)));
    let h = held(&a, &k.key_id).await;
    assert_eq!((h.remaining, h.lent), (0, 0));
}

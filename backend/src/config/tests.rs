//! Reading and checking the settings.

use super::*;

#[test]
fn defaults_are_embedded() {
    let s = Settings::from_pairs([]).expect("defaults are valid");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert!(s.is_sqlite());
    assert!(s.redis_url.is_none());
}

#[test]
fn bad_values_name_the_variable() {
    let e = Settings::from_pairs([("listen", "nowhere")]).expect_err("bad listen");
    assert!(e.to_string().contains("KEYROLL_LISTEN"), "{e}");
    let e = Settings::from_pairs([("log_format", "xml")]).expect_err("bad format");
    assert!(e.to_string().contains("KEYROLL_LOG_FORMAT"), "{e}");
    let e = Settings::from_pairs([("database_url", "mysql://x")]).expect_err("bad db");
    assert!(e.to_string().contains("KEYROLL_DATABASE_URL"), "{e}");
    let e = Settings::from_pairs([("cache.l1_capacity", "lots")]).expect_err("bad number");
    assert!(e.to_string().contains("KEYROLL_CACHE__L1_CAPACITY"), "{e}");
}

#[test]
fn colon_zero_picks_a_free_port_on_loopback() {
    let s = Settings::from_pairs([("listen", ":0")]).expect("valid");
    assert_eq!(s.listen.to_string(), "127.0.0.1:0");
}

#[test]
fn billing_reads_from_nested_settings_and_is_off_without_a_key() {
    let off = Settings::from_pairs([("billing.plans.free.limits.active_keys", "5")]).expect("valid");
    assert!(off.billing.is_none());
    let on = Settings::from_pairs([
        ("billing.stripe_secret_key", "sk_test_1"),
        ("billing.plans.free.limits.active_keys", "5"),
        ("billing.plans.pro.price_id", "price_pro"),
    ])
    .expect("valid");
    let b = on.billing.expect("on");
    assert_eq!(b.plan("free").limits.active_keys, Some(5));
    assert_eq!(b.plan("free").limits.members, None);
    assert_eq!(b.plan_of_price("price_pro").map(|p| p.id.as_str()), Some("pro"));
    let e =
        Settings::from_pairs([("billing.stripe_secret_key", "sk_test_1"), ("billing.plans.free.limits.seats", "5")])
            .expect_err("an unknown limit");
    assert!(e.to_string().contains("KEYROLL_BILLING__PLANS"), "{e}");
}

#[test]
fn secrets_do_not_show_in_debug() {
    let s = Settings::from_pairs([("redis_url", "redis://:hunter2@127.0.0.1:6379")]).expect("valid");
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn a_cluster_takes_several_seed_addresses() {
    let seeds = "redis://127.0.0.1:7000, redis://127.0.0.1:7001,redis://127.0.0.1:7002";
    let err = Settings::from_pairs([("redis_url", seeds)]).expect_err("several addresses without cluster");
    assert!(err.to_string().contains("KEYROLL_REDIS__CLUSTER"), "{err}");
    let s = Settings::from_pairs([("redis_url", seeds), ("redis.cluster", "true")]).expect("a cluster");
    assert!(s.redis_cluster);
    assert_eq!(crate::config::redis_seeds(seeds).len(), 3);
    let unix = Settings::from_pairs([("redis_url", "redis+unix:///tmp/r.sock"), ("redis.cluster", "true")]);
    assert!(unix.expect_err("no sockets in a cluster").to_string().contains("redis:// or rediss://"));
    let bad = Settings::from_pairs([("redis_url", "redis://127.0.0.1:7000,http://x"), ("redis.cluster", "true")]);
    assert!(bad.is_err());
}

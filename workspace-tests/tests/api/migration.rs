//! The migration view: old versus new traffic over time per API and per rotation, and the
//! stragglers that still use an old version close to its deadline.

use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn views(app: TestApp) {
    let acme = app.tenant("Acme").await;
    // Three consumers rotate: one moved (new only), one half-way (both), one late (old only).
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let k = app.make_key(&acme, "acme", json!({})).await;
        let (st, r) =
            app.post(&format!("/v1/keys/{}/rotate", k.key_id), &acme.root, json!({"overlap_seconds": 43_200})).await;
        assert_eq!(st, 201, "{r}");
        pairs.push((k, r));
    }
    let secret = |r: &Value| r["secret"].as_str().expect("secret").to_owned();
    let (moved, half, late) = (&pairs[0], &pairs[1], &pairs[2]);
    for (key, n) in
        [(secret(&moved.1), 3), (half.0.secret.clone(), 2), (secret(&half.1), 2), (late.0.secret.clone(), 4)]
    {
        for _ in 0..n {
            assert_eq!(app.verify_code(&key).await, "VALID");
        }
    }
    let api = &moved.0.api_id;
    let path = format!("/v1/apis/{api}/migration");
    let started = std::time::Instant::now();
    let m = loop {
        let (st, m) = app.get(&path, &acme.root).await;
        assert_eq!(st, 200, "{m}");
        let sum = |side: &str| {
            m["series"]["data"].as_array().map_or(0, |d| d.iter().map(|p| p[side].as_i64().unwrap_or(0)).sum::<i64>())
        };
        if sum("old") == 6 && sum("new") == 5 && m["stragglers"].as_array().is_some_and(|s| s.len() == 2) {
            break m;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{m}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(m["rotations_in_progress"], 3);
    assert_eq!(m["series"]["granularity"], "minute", "a fresh migration is shown by the minute: {m}");
    let share = m["series"]["new_share"].as_f64().expect("share");
    assert!((share - 5.0 / 11.0).abs() < 1e-9, "{share}");
    // The late consumer's deadline and the half-way one's are both 12 h away; both still use the old key.
    let late_ones: Vec<&str> =
        m["stragglers"].as_array().expect("list").iter().filter_map(|s| s["old_key_id"].as_str()).collect();
    assert!(late_ones.contains(&late.0.key_id.as_str()) && late_ones.contains(&half.0.key_id.as_str()), "{m}");
    let s = m["stragglers"]
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["old_key_id"] == late.0.key_id.as_str())
        .expect("late");
    assert_eq!(
        (s["old_uses_last_hour"].as_i64(), s["old_version"].as_i64(), s["new_version"].as_i64()),
        (Some(4), Some(1), Some(2))
    );
    assert_eq!(s["consumer_id"], late.0.consumer_id.as_str());
    assert!(s["seconds_left"].as_i64().is_some_and(|n| n > 43_000 && n <= 43_200), "{s}");
    assert!(s["new_last_used_at"].is_null());
    // Deadlines further away than asked are not stragglers yet.
    let (_, soon) = app.get(&format!("{path}?within_hours=1"), &acme.root).await;
    assert_eq!(soon["stragglers"], json!([]), "{soon}");

    // One rotation on its own.
    let rid = half.1["rotation"]["id"].as_str().expect("rotation id");
    let (st, r) = app.get(&format!("/v1/rotations/{rid}/migration?granularity=hour"), &acme.root).await;
    assert_eq!(st, 200, "{r}");
    let total = |side: &str| {
        r["series"]["data"].as_array().map_or(0, |d| d.iter().map(|p| p[side].as_i64().unwrap_or(0)).sum::<i64>())
    };
    assert_eq!((total("old"), total("new")), (2, 2), "{r}");
    assert_eq!(r["series"]["new_share"], 0.5);
    assert_eq!(r["progress"]["old"]["uses_since_start"], 2);

    for (query, field) in
        [("within_hours=0", "within_hours"), ("granularity=week", "granularity"), ("from=soon", "from")]
    {
        let (st, err) = app.get(&format!("{path}?{query}"), &acme.root).await;
        assert_eq!((st, err["errors"][0]["field"].as_str()), (400, Some(field)), "{query}: {err}");
    }
    let other = app.tenant("Other").await;
    let (st, _) = app.get(&path, &other.root).await;
    assert_eq!(st, 404);
    let (st, _) = app.get(&format!("/v1/rotations/{rid}/migration"), &other.root).await;
    assert_eq!(st, 404);
}

crate::both_backends!(migration_view, views);

//! The durable job worker: jobs run once at a time across nodes, survive a node that dies,
//! and drive drain-aware retirement.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keyroll::jobs::DIAGNOSTIC_SLEEP;
use keyroll::store::entities::job;
use keyroll::store::jobs::{self, NewJob};
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

async fn wait_job(app: &TestApp, id: &str, pred: impl Fn(&job::Model) -> bool, within: Duration) -> job::Model {
    let started = Instant::now();
    loop {
        let j = jobs::get(&app.state.db, id).await.expect("job exists");
        if pred(&j) {
            return j;
        }
        assert!(started.elapsed() < within, "job {id} stuck in {}: {j:?}", j.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_killed_node_loses_no_job(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let fast = [("jobs.lease_ms", "600"), ("jobs.poll_ms", "50")];
    let a = spawn_node_with(&shared, dir, &fast).await;
    let id = jobs::enqueue(&a.state.db, NewJob::now(DIAGNOSTIC_SLEEP, json!({"ms": 3_000})))
        .await
        .expect("enqueued")
        .expect("new job");
    let node_a = a.state.node_id.to_string();
    wait_job(
        &a,
        &id,
        |j| j.state == "running" && j.locked_by.as_deref() == Some(node_a.as_str()),
        Duration::from_secs(5),
    )
    .await;
    // Kill A mid-job: its worker stops, its lease is no longer renewed.
    a.handle.stop(false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = spawn_node_with(&shared, None, &fast).await;
    let node_b = b.state.node_id.to_string();
    let done = wait_job(&b, &id, |j| j.state == "done", Duration::from_secs(10)).await;
    assert_eq!(done.locked_by.as_deref(), Some(node_b.as_str()), "the other node took it over");
    assert_eq!(done.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_sqlite() {
    a_killed_node_loses_no_job(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_postgres_redis() {
    a_killed_node_loses_no_job(Backend::Services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_run_a_job_twice_at_once() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let fast = [("jobs.poll_ms", "20"), ("jobs.lease_ms", "5000")];
    let a = spawn_node_with(&shared, dir, &fast).await;
    let b = spawn_node_with(&shared, None, &fast).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        let id = jobs::enqueue(&a.state.db, NewJob::now(DIAGNOSTIC_SLEEP, json!({"ms": 30}))).await.expect("enqueued");
        ids.push(id.expect("new"));
    }
    let started = Instant::now();
    loop {
        let all = job::Entity::find().all(&a.state.db).await.expect("jobs");
        let mine: Vec<_> = all.iter().filter(|j| ids.contains(&j.id)).collect();
        if mine.iter().all(|j| j.state == "done") {
            // A job claimed twice would have been counted twice.
            assert!(mine.iter().all(|j| j.attempts == 1), "a job ran more than once: {mine:?}");
            let mut by_node: HashMap<String, usize> = HashMap::new();
            for j in &mine {
                *by_node.entry(j.locked_by.clone().unwrap_or_default()).or_default() += 1;
            }
            assert!(by_node.keys().all(|n| *n == *a.state.node_id || *n == *b.state.node_id));
            eprintln!("jobs per node: {by_node:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "jobs not done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drained_rotation_retires_early(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let fast = [
        ("jobs.tick_ms", "200"),
        ("jobs.poll_ms", "50"),
        ("rotation.quiet_period_seconds", "1"),
        ("rotation.min_overlap_seconds", "0"),
    ];
    let app = spawn_node_with(&shared, dir, &fast).await;
    let t = app.tenant("Acme").await;
    let k = app.make_key(&t, "acme", json!({})).await;
    let control = app.make_key(&t, "acme", json!({})).await;
    let (_, r) = app
        .post(
            &format!("/v1/keys/{}/rotate", k.key_id),
            &t.root,
            json!({"overlap_seconds": 3600, "retire_mode": "when_drained"}),
        )
        .await;
    assert_eq!(r["rotation"]["retire_mode"], "when_drained");
    let (_, rc) =
        app.post(&format!("/v1/keys/{}/rotate", control.key_id), &t.root, json!({"overlap_seconds": 3600})).await;
    let new_secret = r["secret"].as_str().expect("secret").to_owned();
    let started = Instant::now();
    loop {
        // Traffic moves to the new version; the old one stays silent.
        assert_eq!(app.verify_code(&new_secret).await, "VALID");
        app.verify_code(rc["secret"].as_str().unwrap_or_default()).await;
        let (_, got) =
            app.get(&format!("/v1/rotations/{}", r["rotation"]["id"].as_str().unwrap_or_default()), &t.root).await;
        if got["state"] == "completed" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "drained rotation not retired: {got}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.verify_code(&k.secret).await, "EXPIRED", "retired before its deadline");
    let (_, c) =
        app.get(&format!("/v1/rotations/{}", rc["rotation"]["id"].as_str().unwrap_or_default()), &t.root).await;
    assert_eq!(c["state"], "in_progress", "at_deadline rotations wait for their deadline");
    assert_eq!(app.verify_code(&control.secret).await, "VALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_sqlite() {
    drained_rotation_retires_early(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_postgres_redis() {
    drained_rotation_retires_early(Backend::Services).await;
}

/// A node that stops gracefully gives its running job back at once: another node takes it long
/// before the lease would have run out, and the interrupted attempt is not counted.
async fn a_stopping_node_releases_its_jobs(backend: Backend) {
    let Some((shared, dir)) = fresh(backend).await else { return };
    let slow = [("jobs.lease_ms", "60000"), ("jobs.poll_ms", "50"), ("drain_seconds", "1")];
    let a = spawn_node_with(&shared, dir, &slow).await;
    let id = jobs::enqueue(&a.state.db, NewJob::now(DIAGNOSTIC_SLEEP, json!({"ms": 4_000})))
        .await
        .expect("enqueued")
        .expect("new job");
    let node_a = a.state.node_id.to_string();
    wait_job(
        &a,
        &id,
        |j| j.state == "running" && j.locked_by.as_deref() == Some(node_a.as_str()),
        Duration::from_secs(5),
    )
    .await;
    let stopping = tokio::spawn({
        let (state, handle) = (a.state.clone(), a.handle.clone());
        async move { keyroll::startup::drain(&state, &handle, "test").await }
    });
    // Unready at once; still serving through the drain.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = a.client.get(a.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(ready.json::<serde_json::Value>().await.expect("json")["status"], "draining");
    assert_eq!(a.client.get(a.url("/healthz")).send().await.expect("sent").status().as_u16(), 200);
    stopping.await.expect("drained");
    let released = wait_job(&a, &id, |j| j.state == "queued", Duration::from_secs(5)).await;
    assert_eq!((released.attempts, released.locked_until), (0, None), "{released:?}");
    let started = Instant::now();
    let b = spawn_node_with(&shared, None, &slow).await;
    let node_b = b.state.node_id.to_string();
    let done = wait_job(&b, &id, |j| j.state == "done", Duration::from_secs(15)).await;
    assert_eq!(done.locked_by.as_deref(), Some(node_b.as_str()));
    assert_eq!(done.attempts, 1, "the interrupted attempt is not counted");
    assert!(started.elapsed() < Duration::from_secs(15), "taken over long before the 60 s lease");
    let nodes = keyroll::store::entities::node::Entity::find().all(&b.state.db).await.expect("nodes");
    assert!(nodes.iter().all(|n| n.id != node_a), "the stopped node left the registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_node_sqlite() {
    a_stopping_node_releases_its_jobs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_node_postgres_redis() {
    a_stopping_node_releases_its_jobs(Backend::Services).await;
}

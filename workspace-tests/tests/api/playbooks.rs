//! Incident playbooks: the catalogue and the team's own playbooks, dry runs that change nothing,
//! runs with their steps' evidence, two-person approval, validation by every live node, and
//! runs that resume on another node after a restart without redoing their steps.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, fresh, spawn_node};

/// Polls a run until `done` holds (or 30 s pass).
async fn wait_run(app: &TestApp, root: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (st, run) = app.get(&format!("/v1/playbook-runs/{id}"), root).await;
        assert_eq!(st, 200, "{run}");
        if done(&run) {
            return run;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run did not get there: {run:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(run: &Value) -> bool {
    matches!(run["state"].as_str(), Some("completed" | "failed"))
}

async fn versions(app: &TestApp, root: &str, lineage: &str) -> Vec<Value> {
    let (_, list) = app.get(&format!("/v1/keys?lineage_id={lineage}&limit=100"), root).await;
    list["data"].as_array().cloned().unwrap_or_default()
}

async fn catalogue_and_custom_playbooks(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let (st, list) = app.get("/v1/playbooks", &acme.root).await;
    assert_eq!(st, 200, "{list}");
    let ids: Vec<&str> = list["data"].as_array().expect("list").iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["leaked_key", "compromised_consumer", "mass_rotation", "rollback_rotation"]);
    let leaked = &list["data"][0];
    assert_eq!(leaked["builtin"], true);
    assert_eq!(leaked["target"], "key");
    assert_eq!(leaked["steps"][0], json!({"kind": "rotate", "overlap_seconds": 3600}));
    assert_eq!(leaked["step_descriptions"].as_array().map(Vec::len), Some(5));

    // Every problem is named, field by field.
    let (st, err) = app
        .post(
            "/v1/playbooks",
            &acme.root,
            json!({"name": "Bad", "target": "key", "steps": [{"kind": "rollback"}, {"kind": "explode"}]}),
        )
        .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["errors"][0]["field"], "steps[1]", "{err}");
    let (st, err) = app
        .post(
            "/v1/playbooks",
            &acme.root,
            json!({"name": "Bad", "target": "key", "steps": [{"kind": "rollback"}, {"kind": "validate"}]}),
        )
        .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["errors"][0]["field"], "steps[0].kind", "{err}");
    let (st, err) = app.post("/v1/playbooks", &acme.root, json!({"name": "", "target": "galaxy", "steps": []})).await;
    assert_eq!(st, 400, "{err}");
    let fields: Vec<&str> =
        err["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert!(fields.contains(&"target") && fields.contains(&"steps"), "{err}");
    let (st, err) = app
        .post(
            "/v1/playbooks",
            &acme.root,
            json!({"name": "X", "target": "key", "steps": [{"kind": "shorten_grace", "grace_seconds": -5}]}),
        )
        .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["errors"][0]["field"], "steps[0].grace_seconds", "{err}");

    let body = json!({
        "name": "Quarantine", "description": "Cut a consumer off",
        "target": "consumer",
        "steps": [{"kind": "require_approval"}, {"kind": "revoke"}, {"kind": "notify", "message": "Call us."}, {"kind": "validate"}],
    });
    let (st, made) = app.post("/v1/playbooks", &acme.root, body).await;
    assert_eq!(st, 201, "{made}");
    let id = made["id"].as_str().expect("id");
    assert!(id.starts_with("pbk_"), "{made}");
    assert_eq!(made["builtin"], false);
    let (st, got) = app.get(&format!("/v1/playbooks/{id}"), &acme.root).await;
    assert_eq!(st, 200);
    assert_eq!(got["steps"][2], json!({"kind": "notify", "message": "Call us."}));
    let (_, list) = app.get("/v1/playbooks", &acme.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(5));
    // Another team sees only the built-in ones.
    let other = app.tenant("Other").await;
    let (st, _) = app.get(&format!("/v1/playbooks/{id}"), &other.root).await;
    assert_eq!(st, 404);
    let (st, _) = app.get("/v1/playbooks/pbk_nope", &acme.root).await;
    assert_eq!(st, 404);
}

crate::both_backends!(catalogue, catalogue_and_custom_playbooks);

async fn leaked_key_run(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;

    // A target of the wrong kind, or of another team, is a field error.
    let (st, err) =
        app.post("/v1/playbooks/leaked_key/runs", &acme.root, json!({"target": {"consumer_id": k.consumer_id}})).await;
    assert_eq!(st, 400, "{err}");
    let other = app.tenant("Other").await;
    let (st, err) =
        app.post("/v1/playbooks/leaked_key/runs", &other.root, json!({"target": {"key_id": k.key_id}})).await;
    assert_eq!((st, err["errors"][0]["field"].as_str()), (400, Some("target.key_id")), "{err}");

    // The dry run says exactly what would change, and changes nothing.
    let (st, dry) = app
        .post("/v1/playbooks/leaked_key/runs", &acme.root, json!({"target": {"key_id": k.key_id}, "dry_run": true}))
        .await;
    assert_eq!(st, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert!(dry["run"].is_null());
    assert_eq!(dry["plan"]["keys"], 1);
    assert_eq!(dry["plan"]["sample"][0]["id"], k.key_id.as_str());
    assert_eq!(dry["plan"]["steps"][0]["kind"], "rotate");
    assert_eq!(dry["plan"]["steps"][0]["keys"], 1);
    assert_eq!(dry["plan"]["steps"][1]["consumers"], 1);
    assert_eq!(versions(&app, &acme.root, &k.key_id).await.len(), 1, "a dry run rotates nothing");
    let (_, runs) = app.get("/v1/playbook-runs", &acme.root).await;
    assert_eq!(runs["data"].as_array().map(Vec::len), Some(0));

    let (st, started) =
        app.post("/v1/playbooks/leaked_key/runs", &acme.root, json!({"target": {"key_id": k.key_id}})).await;
    assert_eq!(st, 202, "{started}");
    let id = started["run"]["id"].as_str().expect("run id").to_owned();
    assert!(id.starts_with("run_"));
    let run = wait_run(&app, &acme.root, &id, finished).await;
    assert_eq!(run["state"], "completed", "{run:#}");
    assert_eq!(run["progress_percent"], 100);
    let steps = run["steps"].as_array().expect("steps");
    assert!(steps.iter().all(|s| s["state"] == "done" && s["started_at"].is_string() && s["finished_at"].is_string()));
    let new_key = steps[0]["evidence"]["new_key_id"].as_str().expect("new version in the evidence");
    assert_eq!(steps[1]["evidence"]["consumers_notified"], 1);
    // Never used: nothing to wait for, so the old version's grace ends at once.
    assert_eq!(steps[2]["evidence"]["used_within_quiet_period"], 0);
    assert_eq!(steps[3]["evidence"]["shortened"], 1);
    let check = &steps[4]["evidence"];
    assert_eq!(check["new_versions"]["accepted"], 1, "{check:#}");
    assert_eq!(check["old_versions"]["refused"], 1, "{check:#}");
    let nodes = check["nodes"].as_array().expect("nodes probed");
    assert_eq!(nodes.len(), 1, "{check:#}");
    assert_eq!(nodes[0]["checked"], 2);
    assert_eq!(nodes[0]["mismatches"], json!([]));
    assert!(check["audit"]["entries"].as_u64() >= check["audit"]["changes"].as_u64(), "{check:#}");
    assert_eq!(check["audit"]["changes"], 2, "{check:#}");

    assert_eq!(app.verify_code(&k.secret).await, "EXPIRED");
    let lineage = versions(&app, &acme.root, &k.key_id).await;
    let new_secret_works = lineage.iter().any(|x| x["id"] == new_key && x["state"] == "valid");
    assert!(new_secret_works, "{lineage:?}");

    // The log says who did what.
    let (_, audit) = app.get(&format!("/v1/audit-events?actor=playbook:{id}&limit=100"), &acme.root).await;
    let actions: Vec<&str> =
        audit["data"].as_array().expect("audit").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"key.rotated") && actions.contains(&"rotation.extended"), "{actions:?}");
    assert!(actions.contains(&"playbook.run_completed"), "{actions:?}");
    let (_, events) = app.get("/v1/events?limit=100", &acme.root).await;
    let types: Vec<&str> =
        events["data"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"playbook.run.started") && types.contains(&"playbook.run.completed"), "{types:?}");
}

crate::both_backends!(leaked_key, leaked_key_run);

async fn approval_by_a_second_person(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let keys = [
        app.make_key(&acme, "acme", json!({})).await,
        app.make_key(&acme, "acme", json!({})).await,
        app.make_key(&acme, "acme", json!({})).await,
    ];
    let api = keys[0].api_id.clone();
    let (st, started) =
        app.post("/v1/playbooks/mass_rotation/runs", &acme.root, json!({"target": {"api_id": api}})).await;
    assert_eq!(st, 202, "{started}");
    assert_eq!(started["plan"]["needs_approval"], true);
    assert_eq!(started["plan"]["steps"][1]["keys"], 3);
    let id = started["run"]["id"].as_str().expect("run id").to_owned();
    let run = wait_run(&app, &acme.root, &id, |r| r["state"] == "awaiting_approval").await;
    assert_eq!(run["steps"][0]["state"], "waiting");
    assert_eq!(versions(&app, &acme.root, &keys[0].key_id).await.len(), 1, "nothing rotates before approval");

    let path = format!("/v1/playbook-runs/{id}/approve");
    let (st, err) = app.post(&path, &acme.root, json!({})).await;
    assert_eq!(st, 403, "the one who started it cannot approve: {err}");
    let (_, second) = app.post("/v1/root-keys", &acme.root, json!({"scopes": ["playbooks:run", "keys:read"]})).await;
    let second = second["secret"].as_str().expect("second root key").to_owned();
    let (st, approved) = app.post(&path, &second, json!({})).await;
    assert_eq!(st, 200, "{approved}");
    assert!(approved["approved_by"].as_str().is_some_and(|a| a.starts_with("root_key:")));
    let run = wait_run(&app, &acme.root, &id, finished).await;
    assert_eq!(run["state"], "completed", "{run:#}");
    assert_eq!(run["steps"][1]["evidence"]["rotated"], 3);
    assert_eq!(run["steps"][2]["evidence"]["consumers_notified"], 3);
    for k in &keys {
        assert_eq!(versions(&app, &acme.root, &k.key_id).await.len(), 2);
    }
    let (st, _) = app.post(&path, &second, json!({})).await;
    assert_eq!(st, 409, "a finished run is not waiting for anyone");
    let (st, _) = app.post("/v1/playbook-runs/run_nope/approve", &second, json!({})).await;
    assert_eq!(st, 404);

    // A step that reports its keys counts in the run's progress (the job is held back an hour,
    // as if a node were halfway through its first step).
    let tenant = keyroll::domain::TenantId::from_trusted(acme.id.clone());
    let def = keyroll::playbooks::catalogue::Definition {
        name: "Halfway".into(),
        description: String::new(),
        target: keyroll::playbooks::catalogue::TargetKind::Api,
        steps: serde_json::from_value(json!([{"kind": "rotate"}, {"kind": "validate"}])).expect("steps"),
    };
    let target = keyroll::playbooks::runs::Target { api_id: Some(api), ..Default::default() };
    let later = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let ctx = keyroll::app::Ctx::acting(&app.state, tenant, keyroll::app::Actor::RootKey("x".into()));
    let run = keyroll::playbooks::runs::start(&ctx, "mass_rotation", &def, &target, later).await.expect("run");
    let job = run.job_id.clone().expect("job");
    keyroll::store::jobs::set_progress(&app.state.db, &job, json!({"done": 50, "total": 100})).await.expect("progress");
    let (_, seen) = app.get(&format!("/v1/playbook-runs/{}", run.id), &acme.root).await;
    assert_eq!(seen["progress_percent"], 25, "{seen}");
    assert_eq!(seen["step_progress"], json!({"done": 50, "total": 100}));
}

crate::both_backends!(approval, approval_by_a_second_person);

/// Two nodes: validation asks both; then the node that ran the first steps stops, and the other
/// resumes the run after approval. Put back to its first step, the run changes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_validated_on_every_node_and_resume_elsewhere() {
    let Some((shared, dir)) = fresh(Backend::Services).await else { return };
    let a = spawn_node(&shared, dir).await;
    let b = spawn_node(&shared, None).await;
    let acme = a.tenant("Acme").await;
    let leaked = a.make_key(&acme, "acme", json!({})).await;
    assert_eq!(b.verify_code(&leaked.secret).await, "VALID", "cached on B");
    let body = json!({"name": "Cut off", "target": "key", "steps": [{"kind": "revoke"}, {"kind": "validate"}]});
    let (_, pb) = a.post("/v1/playbooks", &acme.root, body).await;
    let (st, started) = a
        .post(
            &format!("/v1/playbooks/{}/runs", pb["id"].as_str().expect("id")),
            &acme.root,
            json!({"target": {"key_id": leaked.key_id}}),
        )
        .await;
    assert_eq!(st, 202, "{started}");
    let run = wait_run(&a, &acme.root, started["run"]["id"].as_str().expect("id"), finished).await;
    assert_eq!(run["state"], "completed", "{run:#}");
    let nodes = run["steps"][1]["evidence"]["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 2, "both nodes probed: {nodes:?}");
    assert!(nodes.iter().all(|n| n["mismatches"] == json!([]) && n["checked"] == 1), "{nodes:?}");
    assert_eq!(b.verify_code(&leaked.secret).await, "REVOKED");

    // A consumer's keys: rotated on A, then A stops while the run waits for approval.
    let k1 = a.make_key(&acme, "acme", json!({})).await;
    let body = json!({"name": "Renew", "target": "consumer",
        "steps": [{"kind": "rotate", "overlap_seconds": 600}, {"kind": "require_approval"}, {"kind": "shorten_grace", "grace_seconds": 0}, {"kind": "validate"}]});
    let (_, pb) = a.post("/v1/playbooks", &acme.root, body).await;
    let path = format!("/v1/playbooks/{}/runs", pb["id"].as_str().expect("id"));
    let (st, started) = a.post(&path, &acme.root, json!({"target": {"consumer_id": k1.consumer_id}})).await;
    assert_eq!(st, 202, "{started}");
    let id = started["run"]["id"].as_str().expect("id").to_owned();
    wait_run(&a, &acme.root, &id, |r| r["state"] == "awaiting_approval").await;
    assert_eq!(versions(&a, &acme.root, &k1.key_id).await.len(), 2);
    a.handle.stop(true).await;
    drop(a);

    let (_, second) = b.post("/v1/root-keys", &acme.root, json!({"scopes": ["playbooks:run"]})).await;
    let second = second["secret"].as_str().expect("second root key").to_owned();
    let (st, _) = b.post(&format!("/v1/playbook-runs/{id}/approve"), &second, json!({})).await;
    assert_eq!(st, 200);
    let run = wait_run(&b, &acme.root, &id, finished).await;
    assert_eq!(run["state"], "completed", "{run:#}");
    assert_eq!(run["steps"][3]["evidence"]["nodes"].as_array().map(Vec::len), Some(1), "only B is live now");
    assert_eq!(b.verify_code(&k1.secret).await, "EXPIRED", "grace ended by the third step");
    let rotated_at = run["steps"][0]["finished_at"].clone();

    // Put back to its first step (as if a node died there): nothing is rotated twice.
    use sea_orm::ConnectionTrait;
    let sql =
        format!("UPDATE playbook_runs SET state = 'running', current_step = 0, finished_at = NULL WHERE id = '{id}'");
    b.state.db.execute_unprepared(&sql).await.expect("reset the run");
    let reset = keyroll::store::playbooks::get_run(
        &b.state.db,
        &keyroll::domain::TenantId::from_trusted(acme.id.clone()),
        &keyroll::domain::RunId::from_trusted(id.clone()),
    )
    .await
    .expect("run");
    keyroll::playbooks::runs::enqueue(&b.state.db, &reset, chrono::Utc::now()).await.expect("enqueued");
    let run = wait_run(&b, &acme.root, &id, |r| finished(r) && r["finished_at"].is_string()).await;
    assert_eq!(run["state"], "completed", "{run:#}");
    assert_eq!(versions(&b, &acme.root, &k1.key_id).await.len(), 2, "no third version");
    assert_eq!(run["steps"][0]["evidence"]["changed"], 0, "{run:#}");
    assert_ne!(run["steps"][0]["finished_at"], rotated_at);
}

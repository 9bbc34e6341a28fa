//! Playbooks in the dashboard: the catalogue, a playbook of the team's own with errors named
//! by line, a run started after a dry run, its page with the steps' evidence, and the approval
//! that only a second person may give.

use crate::dashboard::{Browser, ann_with_a_key};
use crate::helpers::TestApp;

async fn wait_page(ann: &Browser, path: &str, text: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let page = ann.get(path).await;
        if page.body.contains(text) {
            return page.body;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{text} never appeared:\n{}", page.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn playbooks_pages(app: TestApp) {
    let (ann, csrf, _, key_id) = ann_with_a_key(&app).await;

    let list = ann.get("/app/playbooks").await;
    assert_eq!(list.status, 200);
    for name in ["Leaked key", "Compromised consumer", "Breach: mass rotation", "Roll back a rotation", "No runs yet"] {
        assert!(list.body.contains(name), "{name} missing");
    }

    // A playbook of one's own: errors by line, and what was typed is kept.
    let bad = ann
        .post(
            "/app/playbooks",
            &[
                ("csrf", &csrf),
                ("name", "Quarantine"),
                ("target", "key"),
                ("description", ""),
                ("steps", "revoke\nexplode now\nvalidate"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Line 2: “explode” is not a step."), "{}", bad.body);
    // Typos and wrong numbers in plain words, every line at once, never a parser's message.
    let typos = ann
        .post(
            "/app/playbooks",
            &[
                ("csrf", &csrf),
                ("name", ""),
                ("target", "key"),
                ("description", ""),
                ("steps", "rotat 3600\nrotate soon\nrevoke now\nvalidate"),
            ],
        )
        .await;
    assert_eq!(typos.status, 422);
    for says in [
        "Line 1: “rotat” is not a step. Did you mean “rotate”?",
        "Line 2: “soon” is not a whole number of seconds",
        "Line 3: “revoke” takes no number; remove “now”.",
        "The name must be 1 to 100 characters.",
    ] {
        assert!(typos.body.contains(says), "{says}: {}", typos.body);
    }
    assert!(!typos.body.contains("unknown variant") && !typos.body.contains("invalid type"));
    assert!(bad.body.contains("explode now") && bad.body.contains("value=\"Quarantine\""));
    let bad = ann
        .post(
            "/app/playbooks",
            &[("csrf", &csrf), ("name", ""), ("target", "key"), ("description", ""), ("steps", "validate")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.body.contains("The name must be 1 to 100 characters.")
            && bad.body.contains("Line 1: validate checks earlier changes")
    );
    let saved = ann
        .post(
            "/app/playbooks",
            &[
                ("csrf", &csrf),
                ("name", "Quarantine"),
                ("target", "key"),
                ("description", "Cut off"),
                ("steps", "require_approval\nrevoke\nvalidate"),
            ],
        )
        .await;
    assert_eq!(saved.status, 200);
    assert!(saved.body.contains("Quarantine") && saved.body.contains("Wait for a second person to approve"));

    // Leaked key: a wrong target is named; the dry run states the change; the run completes.
    let wrong = ann.post("/app/playbooks/leaked_key/run", &[("csrf", &csrf), ("target_id", "key_nope")]).await;
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("This names no key of this team."), "{}", wrong.body);
    let dry = ann.post("/app/playbooks/leaked_key/run", &[("csrf", &csrf), ("target_id", &key_id)]).await;
    assert_eq!(dry.status, 200);
    assert!(dry.body.contains("<strong>1 key</strong>") && dry.body.contains("Start the run"), "{}", dry.body);
    assert_eq!(
        ann.get("/app/playbooks").await.body.matches("/app/playbook-runs/").count(),
        0,
        "a dry run starts nothing"
    );
    let started = ann
        .post("/app/playbooks/leaked_key/run", &[("csrf", &csrf), ("target_id", &key_id), ("step", "confirm")])
        .await;
    assert!(started.url.contains("/app/playbook-runs/run_"), "{}", started.url);
    let run_path = started.url.clone();
    let body = wait_page(&ann, &run_path, "Completed").await;
    assert!(
        body.contains("Evidence") && body.contains("<th scope=\"row\">new key id</th>") && body.contains("100%"),
        "{body}"
    );
    assert!(body.contains("by Ann") && body.contains(">Completed<"), "people and states in words: {body}");
    assert!(!body.contains("http-equiv=\"refresh\""), "a finished run stops refreshing");

    // A run started by someone else waits for Ann; Ann started this one, so she cannot approve it.
    let quarantine = saved.link("/app/playbooks/pbk_").trim_start_matches("/app/playbooks/").to_owned();
    let mine = ann
        .post(
            &format!("/app/playbooks/{quarantine}/run"),
            &[("csrf", &csrf), ("target_id", &key_id), ("step", "confirm")],
        )
        .await;
    let body = wait_page(&ann, &mine.url, "Waiting for a second person").await;
    assert!(!body.contains("Approve and continue"));
    let run_id = mine.url.rsplit('/').next().expect("run id").to_owned();
    let refused = ann.post(&format!("/app/playbook-runs/{run_id}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("cannot approve it"));

    // Started through the API with a root key: Ann approves, and the key is revoked.
    let team = keyroll::domain::TenantId::from_trusted(ann_team(&app).await);
    let target = keyroll::playbooks::runs::Target { key_id: Some(key_id.clone()), ..Default::default() };
    let def = keyroll::playbooks::catalogue::Definition {
        name: "Quarantine".into(),
        description: String::new(),
        target: keyroll::playbooks::catalogue::TargetKind::Key,
        steps: serde_json::from_str(r#"[{"kind":"require_approval"},{"kind":"revoke"},{"kind":"validate"}]"#)
            .expect("steps"),
    };
    let automation = keyroll::app::Ctx::acting(&app.state, team, keyroll::app::Actor::RootKey("key_automation".into()));
    let other = keyroll::playbooks::runs::start(&automation, &quarantine, &def, &target, chrono::Utc::now())
        .await
        .expect("run started");
    let path = format!("/app/playbook-runs/{}", other.id);
    let body = wait_page(&ann, &path, "Approve and continue").await;
    assert!(body.contains("Awaiting approval"), "{body}");
    let approved = ann.post(&format!("{path}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(approved.status, 200);
    let body = wait_page(&ann, &path, "Completed").await;
    assert!(body.contains("approved by Ann"), "{body}");
    let list = ann.get("/app/playbooks").await;
    assert!(list.body.matches("/app/playbook-runs/run_").count() >= 3);
}

async fn ann_team(app: &TestApp) -> String {
    let ann = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    keyroll::store::accounts::memberships(&app.state.db, &ann.id).await.expect("teams")[0].1.id.clone()
}

crate::both_backends!(playbooks, playbooks_pages);

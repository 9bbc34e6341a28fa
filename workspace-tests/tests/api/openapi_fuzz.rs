//! The OpenAPI document against the server, by an independent tool: schemathesis (PyPI) reads
//! `/openapi.json` and sends generated requests with a root key, running every check it has
//! (server errors, status codes, content types, headers, response schemas, schema-valid input
//! accepted, invalid input refused, undeclared methods, authentication). Any failure fails this
//! test, with schemathesis' report.
//!
//! Webhook endpoints are neither created nor changed here: generated URLs would name hosts
//! elsewhere, and a delivery must never leave this machine. Their refusal rules are tested in
//! `hardening.rs`; every other operation is generated.

use std::process::Command;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{Backend, fresh, spawn_node_with};
use crate::leaks::{INTAKE_SECRET, key_pair};

/// Examples per operation and phase: enough to find a missing bound, small enough for CI.
const MAX_EXAMPLES: &str = "12";

fn schemathesis() -> Option<String> {
    let found = Command::new("schemathesis").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("schemathesis".to_owned());
    }
    assert!(
        std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "schemathesis is not installed (pip install schemathesis)"
    );
    eprintln!("skipping the OpenAPI fuzz test: schemathesis is not installed (pip install schemathesis)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_to_its_openapi_document() {
    let Some(tool) = schemathesis() else { return };
    let doc = json!({"public_keys": [{"key_identifier": "fuzz", "key": key_pair().1, "is_current": true}]}).to_string();
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite is always there");
    let extra = [
        ("leak.github_public_keys", doc.as_str()),
        ("leak.intake_secret", INTAKE_SECRET),
        ("webhooks.allow_private", "false"),
    ];
    let app = spawn_node_with(&shared, dir, &extra).await;
    let t = app.tenant("Fuzz").await;
    // Something to find: an API, a consumer and a key.
    app.make_key(&t, "fuzz", json!({})).await;

    let (url, auth) = (app.url("/openapi.json"), format!("Authorization: Bearer {}", t.root));
    let out = tokio::task::spawn_blocking(move || {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
        Command::new(tool)
            .args([
                "--config-file",
                config,
                "run",
                &url,
                "--header",
                &auth,
                "--checks",
                "all",
                "--max-examples",
                MAX_EXAMPLES,
            ])
            .args(["--workers", "1", "--seed", "1", "--no-color", "--request-timeout", "20"])
            .args([
                "--exclude-path-regex",
                "^/v1/webhook-endpoints(/\\{id\\})?$",
                "--exclude-method-regex",
                "^(POST|PATCH)$",
            ])
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("schemathesis finished");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().filter(|l| l.contains("generated") || l.contains("Selected") || l.contains("Tested"));
    for line in summary {
        eprintln!("schemathesis: {}", line.trim());
    }
    // No delivery can have been scheduled: no endpoint exists. (Read from the database: the
    // run may well have revoked its own root key.)
    let db = &app.state.db;
    let count = "SELECT COUNT(*) AS n FROM webhook_endpoints";
    let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), count)).await.expect("query");
    let n: i64 = row.and_then(|r| r.try_get("", "n").ok()).unwrap_or(-1);
    assert_eq!(n, 0, "the fuzz run created a webhook endpoint");
    assert!(out.status.success(), "schemathesis found failures:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

//! Unkey's own SDKs against Keyroll's Unkey-compatible API: npm `@unkey/api` 2.x and PyPI
//! `unkey.py` 3.x, pointed at the node by their server URL override. Each runs the same story
//! (create, verify with queries and costs, get, update, whoami, list, reroll, delete, errors);
//! the assertions here read what the SDK parsed, and the management API for what it changed.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, require_services};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/unkey");

/// Which SDK runs the story.
#[derive(Debug, Clone, Copy)]
enum Sdk {
    TypeScript,
    Python,
}

impl Sdk {
    /// The command, or why it cannot run.
    fn command(self) -> Result<std::process::Command, String> {
        match self {
            Self::TypeScript => {
                let installed = std::path::Path::new(DIR).join("node_modules/@unkey/api/package.json");
                if !installed.exists() {
                    return Err(format!("npm's @unkey/api is not installed (npm ci --prefix {DIR})"));
                }
                let mut c = std::process::Command::new("node");
                c.arg(format!("{DIR}/sdk.mjs"));
                Ok(c)
            }
            Self::Python => {
                let has = std::process::Command::new("python3")
                    .args([
                        "-c",
                        "import unkey.py, importlib.metadata as m; assert m.version('unkey.py').startswith('3.')",
                    ])
                    .status();
                if !has.is_ok_and(|s| s.success()) {
                    return Err("PyPI's unkey.py 3.x is not installed (pip install 'unkey.py>=3,<4')".into());
                }
                let mut c = std::process::Command::new("python3");
                c.arg(format!("{DIR}/sdk.py"));
                Ok(c)
            }
        }
    }
}

/// Runs the story with one SDK; `None` (after saying why) when the SDK is missing.
async fn run(sdk: Sdk, args: Vec<String>) -> Option<Value> {
    let mut cmd = match sdk.command() {
        Ok(c) => c,
        Err(why) => {
            assert!(!require_services(), "KEYROLL_TEST_REQUIRE_SERVICES=1 but {why}");
            eprintln!("skipping the {sdk:?} SDK test: {why}");
            return None;
        }
    };
    cmd.args(&args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the SDK script runs")).await.expect("joined");
    assert!(out.status.success(), "{sdk:?} SDK story failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

async fn story(app: TestApp, sdk: Sdk, external_id: &str) {
    let acme = app.tenant("Acme").await;
    let (st, api) =
        app.post("/v1/apis", &acme.root, json!({"name": "Orders", "key_prefix": "shop", "environment": "live"})).await;
    assert_eq!(st, 201, "{api}");
    let api_id = api["id"].as_str().expect("api id").to_owned();
    let (st, rk) = app.post("/v1/root-keys", &acme.root, json!({"name": "reader", "scopes": ["keys:read"]})).await;
    assert_eq!(st, 201, "{rk}");
    let reader = rk["secret"].as_str().expect("secret").to_owned();
    let args = vec![app.address.clone(), acme.root.clone(), api_id.clone(), "shop".into(), reader];
    let Some(o) = run(sdk, args).await else { return };

    // Created: a Keyroll key of the API, for the consumer named by the external id.
    let key_id = o["created"]["keyId"].as_str().expect("key id").to_owned();
    let secret = o["created"]["key"].as_str().expect("key");
    assert!(secret.starts_with("shop_live_"), "{secret}");
    assert!(o["created"]["requestId"].as_str().is_some_and(|r| r.starts_with("req_")), "{o}");
    let (st, k) = app.get(&format!("/v1/keys/{key_id}"), &acme.root).await;
    assert_eq!(st, 200, "{k}");
    assert_eq!((k["name"].as_str(), k["scopes"].clone()), (Some("renamed"), json!(["orders:read", "orders:write"])));
    let (_, consumers) = app.get(&format!("/v1/consumers?external_id={external_id}"), &acme.root).await;
    let consumer_id = consumers["data"][0]["id"].as_str().expect("consumer made for the external id").to_owned();
    assert_eq!(k["consumer_id"], consumer_id.as_str());

    // Verify: the key, its owner, its credits and its rate limit.
    let v = &o["verify"];
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(true), Some("VALID")), "{v}");
    assert_eq!((v["keyId"].as_str(), v["name"].as_str()), (Some(key_id.as_str()), Some("checkout service")));
    assert_eq!(v["meta"], json!({"plan": "pro"}));
    assert_eq!(v["identity"]["externalId"], external_id);
    assert_eq!(v["identity"]["id"], consumer_id.as_str());
    assert_eq!(v["credits"], 4, "one credit spent of five: {v}");
    let asked = o["created"]["expires"].as_i64().expect("expires");
    assert!(v["expires"].as_i64().is_some_and(|t| (t - asked).abs() < 1_000), "{v}");
    assert_eq!(v["permissions"], json!(["orders:read"]));
    let rl = &v["ratelimits"][0];
    assert_eq!(
        (rl["limit"].as_u64(), rl["duration"].as_u64(), rl["exceeded"].as_bool()),
        (Some(100), Some(60_000), Some(false))
    );
    assert_eq!(rl["remaining"], 99, "{rl}");
    assert_eq!(o["verifyAnd"]["code"], "INSUFFICIENT_PERMISSIONS");
    assert_eq!(o["verifyAnd"]["valid"], false);
    assert_eq!(o["verifyOr"]["code"], "VALID");
    assert_eq!(o["verifyCost"]["credits"], 1, "a cost of two after two spends of one: {o}");
    // Only the Python SDK knows `keyspaces` (the TypeScript one drops the field).
    if let Some(w) = o.get("verifyWrongKeyspace") {
        assert_eq!(w, &json!({"valid": false, "code": "NOT_FOUND"}));
    }
    assert_eq!(o["verifyUnknown"], json!({"valid": false, "code": "NOT_FOUND"}));

    // Get: Unkey's KeyResponseData.
    let g = &o["get"];
    assert_eq!((g["keyId"].as_str(), g["enabled"].as_bool()), (Some(key_id.as_str()), Some(true)), "{g}");
    assert!(g["start"].as_str().is_some_and(|s| secret.starts_with(s)), "{g}");
    assert_eq!(g["credits"]["remaining"], 1, "{g}");
    assert_eq!(g["identity"]["externalId"], external_id);
    assert_eq!(g["ratelimits"][0]["autoApply"], true);
    assert!(g["createdAt"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{g}");

    // Update reached the key on the verify path (the cache dropped it).
    let u = &o["afterUpdate"];
    assert_eq!(
        (u["code"].as_str(), u["name"].as_str(), u["credits"].as_u64()),
        (Some("VALID"), Some("renamed"), Some(0)),
        "{u}"
    );
    assert_eq!(u["meta"], json!({"plan": "team"}));
    assert!(u.get("expires").is_none(), "expires: null removed the expiry: {u}");
    assert_eq!(o["whoami"]["keyId"], key_id.as_str());
    assert_eq!(o["list"]["ids"], json!([key_id.clone()]));
    assert_eq!(o["list"]["pagination"]["hasMore"], false);

    // Reroll is a Keyroll rotation: both versions verify during the overlap.
    let new_id = o["reroll"]["keyId"].as_str().expect("new key id");
    assert_ne!(new_id, key_id);
    assert_eq!(o["oldAfterReroll"]["code"], "USAGE_EXCEEDED", "the lineage's credits carry over: {o}");
    let old_end = o["oldAfterReroll"]["expires"].as_i64().expect("the old key ends with the overlap");
    let at = o["reroll"]["at"].as_i64().expect("at");
    assert!((at + 55_000..=at + 62_000).contains(&old_end), "old key ends about a minute after the reroll: {o}");
    assert_eq!(o["newAfterReroll"]["keyId"], new_id);
    assert_eq!(o["newAfterReroll"]["code"], "USAGE_EXCEEDED");
    let (_, new_key) = app.get(&format!("/v1/keys/{new_id}"), &acme.root).await;
    assert_eq!(
        (new_key["lineage_id"].as_str(), new_key["version"].as_i64()),
        (Some(key_id.as_str()), Some(2)),
        "{new_key}"
    );
    let (_, old_key) = app.get(&format!("/v1/keys/{key_id}"), &acme.root).await;
    assert_eq!(old_key["state"], "superseded", "{old_key}");

    // Delete revokes.
    assert_eq!(o["deletedVerify"], json!({"valid": false, "code": "NOT_FOUND"}));
    let (_, gone) = app.get(&format!("/v1/keys/{new_id}"), &acme.root).await;
    assert_eq!(gone["state"], "revoked");
    assert_eq!(
        (o["deletedGet"]["class"].as_str(), o["deletedGet"]["status"].as_u64()),
        (Some("NotFoundErrorResponse"), Some(404))
    );
    assert_eq!(o["deletedGet"]["type"], "https://unkey.com/docs/errors/unkey/data/key_not_found");

    // Errors, as the SDK's own error classes.
    let e = &o["badApi"];
    assert_eq!(
        (e["class"].as_str(), e["type"].as_str()),
        (Some("NotFoundErrorResponse"), Some("https://unkey.com/docs/errors/unkey/data/api_not_found")),
        "{e}"
    );
    let e = &o["badPermission"];
    assert_eq!(e["class"], "BadRequestErrorResponse", "{e}");
    assert_eq!(e["errors"][0]["location"], "body.permissions[0]", "{e}");
    let e = &o["badQuery"];
    assert_eq!(e["class"], "BadRequestErrorResponse", "{e}");
    assert_eq!(e["type"], "https://unkey.com/docs/errors/user/bad_request/permissions_query_syntax_error");
    let e = &o["badRoot"];
    assert_eq!((e["class"].as_str(), e["status"].as_u64()), (Some("UnauthorizedErrorResponse"), Some(401)), "{e}");
    let e = &o["readOnly"];
    assert_eq!((e["class"].as_str(), e["status"].as_u64()), (Some("ForbiddenErrorResponse"), Some(403)), "{e}");
    assert!(e["requestId"].as_str().is_some_and(|r| r.starts_with("req_")), "{e}");

    // Every change went through the one commit path: audited as the root key's.
    let (_, audit) = app.get("/v1/audit-events?limit=100", &acme.root).await;
    let actions: Vec<&str> =
        audit["data"].as_array().expect("data").iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["consumer.created", "key.created", "key.updated", "key.rotated", "key.revoked"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

async fn typescript(app: TestApp) {
    story(app, Sdk::TypeScript, "user_js").await;
}
both_backends!(unkey_typescript_sdk, typescript);

async fn python(app: TestApp) {
    story(app, Sdk::Python, "user_py").await;
}
both_backends!(unkey_python_sdk, python);

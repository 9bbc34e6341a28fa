//! The owner and admin pages of the dashboard over HTTP: root keys, webhooks, bulk rotation,
//! rotation policies, and two-factor sign-in.

use crate::dashboard::{Browser, root_of, sign_up};
use crate::helpers::TestApp;

async fn root_keys_page(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let page = ann.get("/app/root-keys").await;
    assert!(page.body.contains("Initial root key"), "the first root key is listed (never its secret)");
    let csrf = page.csrf();
    let none = ann.post("/app/root-keys", &[("csrf", &csrf), ("name", "CI")]).await;
    assert_eq!(none.status, 422);
    assert!(none.body.contains("Choose at least one permission.") && none.body.contains("value=\"CI\""));
    // Both mistakes at once, the expiry in the form's words; nothing is created.
    let both = ann.post("/app/root-keys", &[("csrf", &csrf), ("name", "CI"), ("expires_days", "9999")]).await;
    assert_eq!(both.status, 422);
    assert!(
        both.body.contains("Choose at least one permission.") && both.body.contains("from 1 to 3650"),
        "{}",
        both.body
    );
    let alone = ann
        .post("/app/root-keys", &[("csrf", &csrf), ("name", "CI"), ("scope", "keys:read"), ("expires_days", "x")])
        .await;
    assert_eq!(alone.status, 422, "an unreadable expiry creates nothing");
    assert!(!alone.body.contains("must be in the future"), "{}", alone.body);
    let made = ann
        .post("/app/root-keys", &[("csrf", &csrf), ("name", "CI"), ("scope", "keys:read"), ("scope", "consumers:read")])
        .await;
    assert!(made.body.contains("Root key created"));
    let secret = made.secret("kr_root_");
    assert_eq!(app.get("/v1/keys", &secret).await.0, 200);
    let (st, _) = app
        .post("/v1/apis", &secret, serde_json::json!({"name": "X", "key_prefix": "xx", "environment": "live"}))
        .await;
    assert_eq!(st, 403, "only the permissions chosen");
    let listed = ann.get("/app/root-keys").await;
    let id = listed.body.split("/app/root-keys/").nth(1).and_then(|s| s.split('/').next()).expect("id").to_owned();
    // Rotating keeps the permissions; both versions work during the overlap.
    let rotated = ann.post(&format!("/app/root-keys/{id}/rotate"), &[("csrf", &csrf), ("overlap", "3600")]).await;
    assert!(rotated.body.contains("Root key rotated"), "{}", rotated.body);
    let next = rotated.secret("kr_root_");
    assert_eq!((app.get("/v1/keys", &secret).await.0, app.get("/v1/keys", &next).await.0), (200, 200));
    assert_eq!(
        app.post("/v1/apis", &next, serde_json::json!({"name": "X", "key_prefix": "xy", "environment": "live"}))
            .await
            .0,
        403
    );
    let revoked = ann.post(&format!("/app/root-keys/{id}/revoke"), &[("csrf", &csrf), ("reason", "rotating CI")]).await;
    assert!(revoked.body.contains("revoked on every node"), "{}", revoked.body);
    assert_eq!(app.get("/v1/keys", &secret).await.0, 401, "the revoked key no longer works");
}

crate::both_backends!(dashboard_root_keys, root_keys_page);

async fn webhooks_page(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let page = ann.get("/app/webhooks").await;
    assert!(page.body.contains("No endpoints"));
    let csrf = page.csrf();
    let bad = ann.post("/app/webhooks", &[("csrf", &csrf), ("url", "ftp://x"), ("event_types", "key.nope")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter an http(s) URL.") && bad.body.contains("is not an event type"));
    assert!(bad.body.contains("value=\"ftp://x\""));
    let made = ann
        .post("/app/webhooks", &[("csrf", &csrf), ("url", "https://hooks.acme.test/keyroll"), ("event_types", "")])
        .await;
    assert!(made.body.contains("whsec_") && made.body.contains("only time it is shown"));
    assert!(made.url.starts_with("/app/shown/"), "shown after a redirect: {}", made.url);
    let first = made.secret("whsec_");
    let again = ann.get(&made.location).await;
    assert!(again.status == 410 && !again.body.contains(&first), "shown once");
    let listed = ann.get("/app/webhooks").await;
    let id = listed.body.split("/app/webhooks/").nth(1).and_then(|s| s.split('/').next()).expect("id").to_owned();
    let rotated = ann.post(&format!("/app/webhooks/{id}/rotate-secret"), &[("csrf", &csrf)]).await;
    assert!(rotated.url.starts_with("/app/shown/") && rotated.secret("whsec_") != first, "a new secret, shown once");
    let listed = ann.get("/app/webhooks").await;
    assert!(listed.body.contains("old secret signs until"), "both secrets sign for a while");
    let (_, endpoints) = app.get("/v1/webhook-endpoints", &root_of(&app).await).await;
    assert_eq!(endpoints["data"].as_array().map(Vec::len), Some(1), "one endpoint");
    let off = ann.post(&format!("/app/webhooks/{id}/disable"), &[("csrf", &csrf)]).await;
    assert!(off.body.contains("Disabled"));
    let (_, ep) = app.get(&format!("/v1/webhook-endpoints/{id}"), &root_of(&app).await).await;
    assert_eq!(ep["enabled"], false);
    let ask = ann.post(&format!("/app/webhooks/{id}/delete"), &[("csrf", &csrf)]).await;
    assert!(ask.body.contains("Delete this webhook endpoint?") && ask.body.contains("https://hooks.acme.test/keyroll"));
    let (_, ep) = app.get(&format!("/v1/webhook-endpoints/{id}"), &root_of(&app).await).await;
    assert_eq!(ep["id"], id.as_str(), "still there without the confirmation");
    let gone = ann.post(&format!("/app/webhooks/{id}/delete"), &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert!(gone.body.contains("Endpoint deleted.") && gone.body.contains("No endpoints"));
}

crate::both_backends!(dashboard_webhooks, webhooks_page);

/// Ann signed up, her team's root key, and an API "Orders" made with it (its id).
async fn with_api(app: &TestApp) -> (Browser, String, String) {
    let ann = Browser::new(app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let root = root_of(app).await;
    let (_, api) = app
        .post("/v1/apis", &root, serde_json::json!({"name": "Orders", "key_prefix": "acme", "environment": "live"}))
        .await;
    (ann, root, api["id"].as_str().expect("api id").to_owned())
}

async fn bulk_page(app: TestApp) {
    let (ann, root, api_id) = with_api(&app).await;
    let mut secrets = Vec::new();
    for i in 0..3 {
        let (_, con) =
            app.post("/v1/consumers", &root, serde_json::json!({"external_id": format!("cus_{i}"), "name": "C"})).await;
        let (_, k) = app.post("/v1/keys", &root, serde_json::json!({"api_id": api_id, "consumer_id": con["id"]})).await;
        secrets.push(k["secret"].as_str().expect("secret").to_owned());
    }
    let page = ann.get("/app/bulk").await;
    let csrf = page.csrf();
    let bad = ann.post("/app/bulk", &[("csrf", &csrf), ("api_id", &api_id), ("overlap_hours", "-1")]).await;
    assert_eq!(bad.status, 422);
    let dry = ann.post("/app/bulk", &[("csrf", &csrf), ("api_id", &api_id), ("overlap_hours", "1")]).await;
    assert!(dry.body.contains("3 keys") && dry.body.contains("Rotate 3 keys"), "{}", dry.body);
    assert!(dry.body.contains(">C</a>"), "the dry run names the consumers: {}", dry.body);
    // One consumer only: chosen by name from a search, not typed as an id.
    let found = ann
        .post(
            "/app/bulk",
            &[
                ("csrf", &csrf),
                ("api_id", &api_id),
                ("overlap_hours", "1"),
                ("find", "consumer_id"),
                ("consumer_q", "cus_1"),
            ],
        )
        .await;
    let radio = found.body.split("name=\"consumer_id\" value=\"con_").nth(1).expect("a consumer to choose");
    let one = format!("con_{}", radio.split('"').next().expect("id"));
    assert!(!found.body.contains("Rotate 3 keys"), "a search is not a dry run");
    let only = ann
        .post("/app/bulk", &[("csrf", &csrf), ("api_id", &api_id), ("overlap_hours", "1"), ("consumer_id", &one)])
        .await;
    assert!(only.body.contains("Rotate 1 key</button>"), "{}", only.body);
    let unknown = ann
        .post("/app/bulk", &[("csrf", &csrf), ("api_id", &api_id), ("overlap_hours", "x"), ("consumer_id", "con_nope")])
        .await;
    assert!(unknown.body.contains("Choose a consumer from the list") && unknown.body.contains("id=\"overlap-error\""));
    assert_eq!(
        app.verify(serde_json::json!({"key": secrets[0]})).await["rotation"],
        serde_json::Value::Null,
        "a dry run changes nothing"
    );
    let job = ann
        .post("/app/bulk", &[("csrf", &csrf), ("api_id", &api_id), ("overlap_hours", "1"), ("step", "confirm")])
        .await;
    assert!(job.url.starts_with("/app/jobs/job_"), "{}", job.url);
    let started = std::time::Instant::now();
    loop {
        let p = ann.get(&job.url).await;
        if p.body.contains("Done: 3 keys") {
            assert!(!p.body.contains("http-equiv=\"refresh\""), "a finished job stops refreshing");
            break;
        }
        assert!(p.body.contains("http-equiv=\"refresh\""), "a running job refreshes itself: {}", p.body);
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "bulk job did not finish: {}", p.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for s in &secrets {
        let v = app.verify(serde_json::json!({"key": s})).await;
        assert_eq!(v["rotation"]["state"], "superseded", "{v}");
    }
    let other = Browser::new(&app);
    sign_up(&other, "Globex", "gus@globex.test").await;
    assert_eq!(other.get(&job.url).await.status, 404, "another team's job");

    // Deleting a consumer asks for its name and revokes its keys.
    let (_, cons) = app.get("/v1/consumers?external_id=cus_0", &root).await;
    let cid = cons["data"][0]["id"].as_str().expect("consumer").to_owned();
    let page = ann.get(&format!("/app/consumers/{cid}")).await;
    assert!(page.body.contains("revoke its 2 keys"), "both versions are live during the overlap");
    let wrong = ann.post(&format!("/app/consumers/{cid}/delete"), &[("csrf", &csrf), ("confirm", "D")]).await;
    assert_eq!(wrong.status, 422);
    let gone = ann.post(&format!("/app/consumers/{cid}/delete"), &[("csrf", &csrf), ("confirm", "C")]).await;
    assert_eq!(gone.url, "/app/consumers");
    assert_eq!(app.verify_code(&secrets[0]).await, "REVOKED");
    assert_eq!(ann.get(&format!("/app/consumers/{cid}")).await.status, 404);
}

crate::both_backends!(dashboard_bulk, bulk_page);

async fn policies_page(app: TestApp) {
    let (ann, root, api_id) = with_api(&app).await;
    let page = ann.get("/app/policies").await;
    assert!(page.body.contains("No policies"));
    let csrf = page.csrf();
    let form = |overlap: &'static str| {
        vec![
            ("schedule", "interval"),
            ("interval_days", "90"),
            ("window_minutes", "60"),
            ("overlap_hours", overlap),
            ("notice_days", "14, 1"),
            ("retire_mode", "when_drained"),
            ("max_active", "2"),
            ("on_full", "end_oldest"),
            ("delivery", "pickup"),
            ("enabled", "on"),
        ]
    };
    let mut bad = form("0.1");
    bad.extend([("csrf", csrf.as_str()), ("api_id", api_id.as_str())]);
    let refused = ann.post("/app/policies", &bad).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("id=\"overlap-error\""), "the error is next to the overlap field");
    assert!(refused.body.contains("value=\"0.1\""), "what was typed stays");
    assert!(refused.body.contains("at least 0.5") && !refused.body.contains("1800"), "in the field's unit");
    // Every mistake at once: the typed ones and the ones only the rules see.
    let mut many = form("0.1");
    many.retain(|(k, _)| !matches!(*k, "max_active" | "notice_days"));
    many.extend([
        ("csrf", csrf.as_str()),
        ("api_id", api_id.as_str()),
        ("max_active", "11"),
        ("notice_days", "400, x"),
    ]);
    let refused = ann.post("/app/policies", &many).await;
    for id in ["overlap-error", "max-error", "notice-error"] {
        assert!(refused.body.contains(&format!("id=\"{id}\"")), "{id} in the same answer: {}", refused.body);
    }
    // An override is for a consumer chosen by name from a server-side search.
    let (_, con) =
        app.post("/v1/consumers", &root, serde_json::json!({"external_id": "cus_77", "name": "Zed Corp"})).await;
    let con_id = con["id"].as_str().expect("consumer").to_owned();
    let mut find = form("24");
    find.extend([
        ("csrf", csrf.as_str()),
        ("api_id", api_id.as_str()),
        ("find", "consumer_id"),
        ("consumer_q", "cus_77"),
    ]);
    let found = ann.post("/app/policies", &find).await;
    assert_eq!(found.status, 200);
    assert!(found.body.contains(&format!("name=\"consumer_id\" value=\"{con_id}\"")), "{}", found.body);
    assert!(found.body.contains("Zed Corp") && found.body.contains("value=\"14, 1\""), "the form keeps what was typed");
    let (_, none) = app.get("/v1/policies", &root).await;
    assert_eq!(none["data"].as_array().map(Vec::len), Some(0), "a search saves nothing");
    let mut over = form("24");
    over.extend([("csrf", csrf.as_str()), ("api_id", api_id.as_str()), ("consumer_id", con_id.as_str())]);
    let saved = ann.post("/app/policies", &over).await;
    assert!(
        saved.body.contains("override for <a href=\"/app/consumers/") && saved.body.contains(">Zed Corp</a>"),
        "{}",
        saved.body
    );
    let (_, listed) = app.get("/v1/policies", &root).await;
    let override_id = listed["data"][0]["id"].as_str().expect("id").to_owned();
    ann.post(&format!("/app/policies/{override_id}/delete"), &[("csrf", &csrf)]).await;
    let mut good = form("24");
    good.extend([("csrf", csrf.as_str()), ("api_id", api_id.as_str())]);
    let saved = ann.post("/app/policies", &good).await;
    assert!(saved.body.contains("Policy saved.") && saved.body.contains("every 90 days"), "{}", saved.body);
    let (_, listed) = app.get("/v1/policies", &root).await;
    assert_eq!(listed["data"][0]["retire_mode"], "when_drained");
    let id = listed["data"][0]["id"].as_str().expect("id").to_owned();
    let edit = ann.get(&format!("/app/policies/{id}")).await;
    assert!(edit.body.contains("Edit the policy") && edit.body.contains("value=\"14, 1\""));
    let mut cron = form("24");
    cron.extend([("csrf", csrf.as_str()), ("schedule", "cron"), ("cron", "0 3 * * 1")]);
    cron.retain(|(k, v)| !(*k == "schedule" && *v == "interval"));
    let saved = ann.post(&format!("/app/policies/{id}"), &cron).await;
    assert!(saved.body.contains("cron 0 3 * * 1"), "{}", saved.body);
    let gone = ann.post(&format!("/app/policies/{id}/delete"), &[("csrf", &csrf)]).await;
    assert!(gone.body.contains("Policy deleted"));
}

crate::both_backends!(dashboard_policies, policies_page);

/// The code of a base32 TOTP secret `offset` seconds from now (one step either way is accepted).
fn code_of(base32: &str, offset: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(base32).expect("base32");
    let t = totp_rs::Builder::new().with_secret(secret).with_account_name("ann@acme.test").build().expect("totp");
    let at = u64::try_from(chrono::Utc::now().timestamp() + offset).expect("after 1970");
    t.generate(at).to_string()
}

async fn two_factor_sign_in(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let account = ann.get("/app/account").await;
    assert!(account.body.contains("Set up two-factor sign-in"));
    let csrf = account.csrf();
    let start = ann.post("/app/account/2fa/start", &[("csrf", &csrf)]).await;
    let secret = start
        .body
        .split("<code id=\"totp-secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("secret")
        .to_owned();
    let sealed = start
        .body
        .split("name=\"sealed\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("sealed")
        .to_owned();
    assert!(start.body.contains("otpauth://totp/"));
    assert!(start.body.contains("<div class=\"qr\"><svg"), "a QR code drawn on the server");
    let wrong = ann.post("/app/account/2fa/enable", &[("csrf", &csrf), ("sealed", &sealed), ("code", "000000")]).await;
    assert_eq!(wrong.status, 422);
    let on = ann
        .post("/app/account/2fa/enable", &[("csrf", &csrf), ("sealed", &sealed), ("code", &code_of(&secret, -30))])
        .await;
    assert!(on.body.contains("Two-factor sign-in is on"), "{}", on.body);
    // Ten recovery codes, shown once.
    assert!(on.url.starts_with("/app/shown/"), "{}", on.url);
    let codes: Vec<String> = on
        .body
        .split("class=\"mono codes\" rows=\"10\" readonly>")
        .nth(1)
        .and_then(|s| s.split("</textarea>").next())
        .expect("codes")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
    assert_eq!(ann.get(&on.location).await.status, 410, "shown once");
    assert!(ann.get("/app/account").await.body.contains("10 of 10 unused"));

    // The password alone no longer signs in.
    let b = Browser::new(&app);
    let login = b.get("/login").await;
    let step = b
        .post("/login", &[("csrf", &login.csrf()), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    assert_eq!(step.url, "/login/2fa");
    assert_eq!(b.get("/app").await.url, "/login/2fa", "a half-signed-in session opens nothing");
    let bad = b.post("/login/2fa", &[("csrf", &step.csrf()), ("code", "123456"), ("next", "/app")]).await;
    assert_eq!(bad.status, 401);
    let code = code_of(&secret, 0);
    let ok = b.post("/login/2fa", &[("csrf", &step.csrf()), ("code", &code), ("next", "/app/account")]).await;
    assert_eq!(ok.url, "/app/account");

    // A code is accepted once: someone who saw it cannot sign in with it again.
    let c = Browser::new(&app);
    let login = c.get("/login").await;
    let step = c
        .post("/login", &[("csrf", &login.csrf()), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    let replay = c.post("/login/2fa", &[("csrf", &step.csrf()), ("code", &code), ("next", "/app")]).await;
    assert_eq!(replay.status, 401, "a replayed code is refused");
    // A recovery code signs in once, typed in any case and with or without its dash.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let rescued = c.post("/login/2fa", &[("csrf", &step.csrf()), ("code", &typed), ("next", "/app/account")]).await;
    assert_eq!(rescued.url, "/app/account", "{}", rescued.body);
    assert!(rescued.body.contains("9 of 10 unused"));
    let d = Browser::new(&app);
    let login = d.get("/login").await;
    let step = d
        .post("/login", &[("csrf", &login.csrf()), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    let again = d.post("/login/2fa", &[("csrf", &step.csrf()), ("code", &codes[3]), ("next", "/app")]).await;
    assert_eq!(again.status, 401, "a recovery code works once");
    assert!(ann.get("/app/audit").await.body.contains("signed in with a recovery code"));

    let off = b.post("/app/account/2fa/disable", &[("csrf", &ok.csrf()), ("code", &code_of(&secret, 30))]).await;
    assert!(off.body.contains("Two-factor sign-in is off."), "{}", off.body);
}

crate::both_backends!(dashboard_two_factor, two_factor_sign_in);

/// Recovery codes are made anew with a current code; the old ones stop working.
async fn recovery_codes_made_anew(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let csrf = ann.get("/app/account").await.csrf();
    let start = ann.post("/app/account/2fa/start", &[("csrf", &csrf)]).await;
    let field = |name: &str| {
        start.body.split(name).nth(1).and_then(|s| s.split(['"', '<']).next()).expect("a field").to_owned()
    };
    let (secret, sealed) = (field("<code id=\"totp-secret\">"), field("name=\"sealed\" value=\""));
    let on = ann
        .post("/app/account/2fa/enable", &[("csrf", &csrf), ("sealed", &sealed), ("code", &code_of(&secret, -30))])
        .await;
    let first =
        on.body.split("rows=\"10\" readonly>").nth(1).and_then(|s| s.lines().next()).expect("a code").to_owned();
    let refused = ann.post("/app/account/2fa/recovery", &[("csrf", &csrf), ("code", "000000")]).await;
    assert_eq!(refused.status, 422);
    let fresh = ann.post("/app/account/2fa/recovery", &[("csrf", &csrf), ("code", &code_of(&secret, 0))]).await;
    assert!(fresh.url.starts_with("/app/shown/") && fresh.body.contains("New recovery codes"), "{}", fresh.body);
    let b = Browser::new(&app);
    let login = b.get("/login").await;
    let step = b
        .post("/login", &[("csrf", &login.csrf()), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    let old = b.post("/login/2fa", &[("csrf", &step.csrf()), ("code", &first), ("next", "/app")]).await;
    assert_eq!(old.status, 401, "the old codes no longer work");
}

crate::both_backends!(dashboard_recovery_codes, recovery_codes_made_anew);

//! The audit log page: what the team did in the dashboard, by whom, with filters, exports,
//! the chain's badge and the retention setting.

use sea_orm::ConnectionTrait;

use crate::dashboard::{Browser, create_key, sign_up};
use crate::helpers::TestApp;

async fn audit_page(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let empty = ann.get("/app/audit?action=policy.").await;
    assert!(empty.body.contains("No entry matches these filters") && empty.body.contains("Reset the filters"));
    let csrf = ann.get("/app").await.csrf();
    ann.post(
        "/app/apis",
        &[("csrf", &csrf), ("name", "Orders <script>x</script>"), ("key_prefix", "acme"), ("environment", "live")],
    )
    .await;
    let con =
        ann.post("/app/consumers", &[("csrf", &csrf), ("name", "Bob"), ("external_id", "cus_1"), ("email", "")]).await;
    let consumer_id = con.url.rsplit('/').next().expect("consumer id").to_owned();
    let made = create_key(&ann, &csrf, &consumer_id, "").await;
    assert_eq!(made.status, 200, "{}", made.body);
    let key_id = made.link("/app/keys/").trim_start_matches("/app/keys/").to_owned();
    let form = [("csrf", csrf.as_str()), ("enabled", "false"), ("confirm", "yes")];
    let off = ann.post(&format!("/app/keys/{key_id}/enabled"), &form).await;
    assert_eq!(off.status, 200);

    // Every action of the dashboard is there, by Ann, newest first, escaped.
    let log = ann.get("/app/audit").await;
    assert_eq!(log.status, 200);
    for line in [
        "Disabled key acme_live_",
        "Created key acme_live_",
        "Created the consumer Bob (cus_1)",
        "ann@acme.test signed in",
        "Created the team Acme",
    ] {
        assert!(log.body.contains(line), "{line} missing");
    }
    assert!(log.body.contains("Created the API Orders &#60;script&#62;") || log.body.contains("Orders &lt;script&gt;"));
    assert!(!log.body.contains("<script>x</script>"));
    assert!(log.body.contains("<td data-label=\"Who\">Ann</td>"), "members are named");
    assert!(log.body.contains("Chain intact"));
    assert!(log.body.find("Disabled key").unwrap_or(usize::MAX) < log.body.find("Created the consumer").unwrap_or(0));
    // The detail of a change: before and after, request id, address.
    assert!(log.body.contains("&#34;enabled&#34;: true") || log.body.contains("&quot;enabled&quot;: true"), "before");
    assert!(log.body.contains("127.0.0.1") && log.body.contains("req_"));

    // Filters keep what was chosen; a bad date is named and kept.
    let keys_only = ann.get("/app/audit?action=key.updated").await;
    assert!(keys_only.body.contains("Disabled key") && !keys_only.body.contains("Created the consumer"));
    assert!(keys_only.body.contains("value=\"key.updated\" selected"));
    let about = ann.get(&format!("/app/audit?target={key_id}")).await;
    assert!(
        about.body.contains("Disabled key")
            && about.body.contains("Created key")
            && !about.body.contains("Bob (cus_1)")
    );
    let bad = ann.get("/app/audit?from=30%2F11%2F2026").await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter a date like 2026-11-30.") && bad.body.contains("value=\"30/11/2026\""));
    let future = ann.get("/app/audit?from=2099-01-01").await;
    assert!(future.body.contains("No entry matches these filters"));

    // Exports with the same filters.
    let export = ann.get("/app/audit/export?format=csv&action=key.").await;
    assert!(
        export.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().starts_with("text/csv")
    );
    assert_eq!(
        export.body.split("\r\n").filter(|l| !l.is_empty()).count(),
        3,
        "header and two key entries: {}",
        export.body
    );
    let jsonl = ann.get("/app/audit/export?format=jsonl").await;
    assert!(jsonl.body.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert_eq!(ann.get("/app/audit/export?format=pdf").await.status, 422);

    // An edit behind Keyroll's back shows on the badge, pointing at the entry.
    let t = keyroll::store::tenants::all(&app.state.db).await.expect("tenants")[0].id.clone();
    app.state
        .db
        .execute_unprepared(&format!(
            "UPDATE audit_events SET actor = 'user:usr_someone_else' WHERE tenant_id = '{t}' AND seq = 5"
        ))
        .await
        .expect("tamper");
    let cached = ann.get("/app/audit").await;
    // A page view reads only what was written since the last intact check: the old edit waits
    // for a full check, which the page offers.
    assert!(cached.body.contains("Chain intact") && cached.body.contains("Check all again now"));
    let checked = ann.get("/app/audit?check=1").await;
    assert!(
        checked.body.contains("Chain broken") && checked.body.contains("href=\"#seq-5\""),
        "the first broken link is named"
    );
    assert!(ann.get("/app/audit").await.body.contains("Chain broken"), "and stays named on later views");

    // Retention: owners choose it, bad values are named, and the change is itself recorded.
    let bad = ann.post("/app/audit/retention", &[("csrf", &csrf), ("days", "5")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Keep entries 30 to 3650 days."));
    let saved = ann.post("/app/audit/retention", &[("csrf", &csrf), ("days", "400")]).await;
    assert!(saved.body.contains("Saved.") && saved.body.contains("<strong>400 days</strong>"));
    assert!(saved.body.contains("Audit entries are now kept 400 days (were 365)"));
    assert_eq!(ann.post("/app/audit/retention", &[("csrf", "forged"), ("days", "90")]).await.status, 403);

    // A developer reads the log but cannot change the retention.
    let hash = keyroll::crypto::password::hash("developer password").expect("hash");
    let dev = keyroll::store::accounts::create_user(&app.state.db, "dev@acme.test", "Dev", &hash).await.expect("user");
    keyroll::store::accounts::add_member(
        &app.state.db,
        &dev.id,
        &keyroll::domain::TenantId::from_trusted(t),
        "developer",
    )
    .await
    .expect("member");
    let d = Browser::new(&app);
    let login = d.get("/login").await;
    d.post("/login", &[("csrf", &login.csrf()), ("email", "dev@acme.test"), ("password", "developer password")]).await;
    let page = d.get("/app/audit").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("action=\"/app/audit/retention\""), "no form for non-owners");
    assert_eq!(d.post("/app/audit/retention", &[("csrf", &page.csrf()), ("days", "30")]).await.status, 403);
}
crate::both_backends!(dashboard_audit, audit_page);

async fn leak_policy_form(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let csrf = ann.get("/app").await.csrf();
    let apis = ann
        .post("/app/apis", &[("csrf", &csrf), ("name", "Orders"), ("key_prefix", "acme"), ("environment", "live")])
        .await;
    assert!(
        apis.body.contains("Rotate; the leaked key works for") && apis.body.contains("value=\"15\""),
        "the default"
    );
    let api_id =
        apis.body.split("action=\"/app/apis/").nth(1).and_then(|s| s.split('/').next()).expect("api id").to_owned();
    let path = format!("/app/apis/{api_id}/leak-policy");
    let bad = ann.post(&path, &[("csrf", &csrf), ("action", "rotate"), ("minutes", "a lot")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Between 0 and 1440 minutes.") && bad.body.contains("aria-invalid=\"true\""));
    let saved = ann.post(&path, &[("csrf", &csrf), ("action", "revoke"), ("minutes", "")]).await;
    assert!(saved.body.contains("Leak policy saved.") && saved.body.contains("value=\"revoke\" selected"));
    let log = ann.get("/app/audit?action=api.updated").await;
    assert!(log.body.contains("Changed the API Orders"));
    assert!(
        log.body.contains("&#34;leak_action&#34;: &#34;revoke&#34;")
            || log.body.contains("&quot;leak_action&quot;: &quot;revoke&quot;")
    );
    assert_eq!(ann.post(&path, &[("csrf", "forged"), ("action", "notify")]).await.status, 403);
}
crate::both_backends!(dashboard_leak_policy, leak_policy_form);

//! The dashboard in real headless Chromium through WebDriver (chromedriver): first run → API →
//! consumer → key → rotate → complete → revoke, and a viewer who tries to rotate. Screenshots of
//! the main pages go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};

/// chromedriver, stopped on drop.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// Starts chromedriver, or says why not (a failure with `KEYROLL_TEST_REQUIRE_SERVICES=1`).
pub(crate) fn driver() -> Option<(Driver, PathBuf)> {
    let skip = |why: &str| {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "a browser is required: {why} (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipping the browser test: {why}");
        None
    };
    let Some(chromedriver) = find(&["chromedriver"]) else { return skip("chromedriver not found") };
    let Some(chromium) = find(&["chromium", "chromium-browser", "google-chrome"]) else {
        return skip("Chromium not found");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).ok()?;
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let d = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            return skip("chromedriver did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((d, chromium))
}

pub(crate) async fn open(d: &Driver, chromium: &std::path::Path) -> Client {
    open_with(d, chromium, &[]).await
}

/// A session with more Chromium switches (e.g. a dark colour scheme).
pub(crate) async fn open_with(d: &Driver, chromium: &std::path::Path, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ];
    args.extend_from_slice(extra);
    let caps = json!({ "goog:chromeOptions": { "binary": chromium, "args": args } });
    let serde_json::Value::Object(caps) = caps else { unreachable!("an object") };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a Chromium session")
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("saved");
}

pub(crate) async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    e.clear().await.expect("cleared");
    e.send_keys(text).await.expect("typed");
}

pub(crate) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.expect("clicked");
}

/// The visible text of the page (empty while a new page is loading).
pub(crate) async fn body(c: &Client) -> String {
    match c.find(Locator::Css("main")).await {
        Ok(main) => main.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub(crate) async fn path(c: &Client) -> String {
    c.current_url().await.expect("url").path().to_owned()
}

/// Waits for the page after a click to show `text`.
pub(crate) async fn wait_for(c: &Client, text: &str) {
    let started = Instant::now();
    loop {
        if body(c).await.contains(text) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "page never showed {text:?}: {}", body(c).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The main pages of the dashboard, by path and screenshot name (found on the pages themselves
/// where they need an id).
async fn main_pages(c: &Client, app: &TestApp) -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = [
        ("/app", "overview"),
        ("/app/apis", "apis"),
        ("/app/consumers", "consumers"),
        ("/app/policies", "policies"),
        ("/app/alerts", "alerts"),
        ("/app/playbooks", "playbooks"),
        ("/app/audit", "audit"),
        ("/app/team", "team"),
        ("/app/account", "account"),
        ("/app/search?q=acme", "search"),
    ]
    .iter()
    .map(|(p, n)| ((*p).to_owned(), (*n).to_owned()))
    .collect();
    for (list, prefix, name) in [
        ("/app/apis", "/app/apis/api_", "api"),
        ("/app/consumers", "/app/consumers/con_", "consumer"),
        ("/app/playbooks", "/app/playbook-runs/run_", "playbook-run"),
    ] {
        c.goto(&app.url(list)).await.expect("list");
        let href = c
            .find(Locator::Css(&format!("main a[href^='{prefix}']")))
            .await
            .expect("a link")
            .attr("href")
            .await
            .expect("href")
            .expect("an href");
        pages.push((href, name.to_owned()));
        if name == "consumer" {
            c.goto(&app.url(&pages.last().expect("page").0)).await.expect("consumer");
            let key = c.find(Locator::Css("main a[href^='/app/keys/key_']")).await.expect("a key");
            pages.push((key.attr("href").await.expect("href").expect("an href"), "key".into()));
        }
    }
    pages
}

/// Screenshots of the main pages at 1400 px and 390 px wide (`scheme` names the colour scheme);
/// on a phone no page is wider than the screen (wide tables scroll inside their card).
async fn tour(c: &Client, app: &TestApp, scheme: &str) {
    let pages = main_pages(c, app).await;
    for (width, height, size) in [(1400, 900, "1400"), (390, 844, "390")] {
        c.set_window_size(width, height).await.expect("resize");
        for (path, name) in &pages {
            c.goto(&app.url(path)).await.expect("page");
            wait_for(c, "").await;
            let wide: serde_json::Value = c
                .execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![])
                .await
                .expect("widths");
            shot(c, &format!("tour-{scheme}-{size}-{name}")).await;
            if size == "390" {
                assert!(wide[0].as_f64() <= wide[1].as_f64(), "{path} is wider than a phone: {wide}");
            }
        }
    }
    c.set_window_size(1280, 900).await.expect("resize");
}

/// The ids of the keys with this name.
async fn keys_named(app: &TestApp, name: &str) -> Vec<String> {
    use sea_orm::ConnectionTrait;
    let db = &app.state.db;
    let sql = format!("SELECT id FROM keys WHERE name = '{name}'");
    let rows = db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.expect("query");
    rows.iter().map(|r| r.try_get::<String>("", "id").expect("id")).collect()
}

pub(crate) async fn secret_on_page(c: &Client) -> String {
    c.find(Locator::Css("#secret")).await.expect("secret field").prop("value").await.expect("value").expect("a secret")
}

async fn owner_and_viewer(app: &TestApp, c: &Client) {
    // First run.
    c.goto(&app.url("/")).await.expect("open");
    assert_eq!(path(c).await, "/setup");
    shot(c, "01-setup").await;
    fill(c, "#team", "Acme <script>alert(1)</script>").await;
    fill(c, "#name", "Ann Owner").await;
    fill(c, "#email", "ann@acme.test").await;
    fill(c, "#password", "short").await;
    click(c, "button[type=submit]").await;
    wait_for(c, "Use 10 to 128 characters.").await;
    assert_eq!(
        c.find(Locator::Css("#email")).await.expect("email").prop("value").await.expect("v").as_deref(),
        Some("ann@acme.test")
    );
    shot(c, "02-setup-errors").await;
    fill(c, "#password", "correct horse battery").await;
    click(c, "button[type=submit]").await;
    wait_for(c, "only time it is shown").await;
    assert!(secret_on_page(c).await.starts_with("kr_root_"));
    shot(c, "03-team-created").await;
    click(c, "a.button.primary").await;
    wait_for(c, "Start with an API").await;
    assert!(c.source().await.expect("source").contains("Acme &lt;script&gt;"), "the team name is escaped");
    shot(c, "04-overview-empty").await;

    // An API and a consumer.
    c.goto(&app.url("/app/apis")).await.expect("apis");
    fill(c, "#name", "Orders").await;
    fill(c, "#key_prefix", "acme").await;
    click(c, "form[action='/app/apis'] button[type=submit]").await;
    wait_for(c, "acme_live_").await;
    shot(c, "05-apis").await;
    c.goto(&app.url("/app/consumers")).await.expect("consumers");
    shot(c, "06-consumers-empty").await;
    fill(c, "#name", "Bob's Bakery").await;
    fill(c, "#external_id", "cus_42").await;
    fill(c, "#email", "bob@bakery.test").await;
    click(c, "form[method=post][action='/app/consumers'] button[type=submit]").await;
    wait_for(c, "No keys yet").await;

    // A key, shown once.
    click(c, "a.button.primary").await;
    wait_for(c, "New key for Bob").await;
    fill(c, "#name", "production").await;
    fill(c, "#scopes", "orders:read, orders:write").await;
    shot(c, "07-new-key").await;
    click(c, "form[action='/app/keys'] button[type=submit]").await;
    wait_for(c, "only time it is shown").await;
    let first = secret_on_page(c).await;
    assert_eq!(
        c.find(Locator::Css("#secret")).await.expect("f").attr("type").await.expect("t").as_deref(),
        Some("password"),
        "masked"
    );
    shot(c, "08-key-created").await;
    assert_eq!(app.verify_code(&first).await, "VALID");
    // A reload shows the secret no second time and creates no second key.
    c.refresh().await.expect("reload");
    wait_for(c, "Already shown").await;
    assert!(!c.source().await.expect("source").contains(&first), "not shown on a reload");
    let made: Vec<String> = keys_named(app, "production").await;
    assert_eq!(made.len(), 1, "one key, however often the page was loaded");
    shot(c, "08b-key-already-shown").await;
    c.goto(&app.url(&format!("/app/keys/{}", made[0]))).await.expect("open the key");
    wait_for(c, "Rotate key").await;
    assert!(!c.source().await.expect("source").contains(&first), "never shown again");
    shot(c, "09-key").await;

    // Rotate with a one-hour overlap: both verify; the lineage shows the migration progress.
    click(c, "input[name=overlap][value='3600']").await;
    click(c, "form[action$='/rotate'] button[type=submit]").await;
    wait_for(c, "Key rotated").await;
    let second = secret_on_page(c).await;
    assert_eq!((app.verify_code(&first).await, app.verify_code(&second).await), ("VALID".into(), "VALID".into()));
    click(c, "a.button.primary").await;
    wait_for(c, "Rotation in progress: v1 → v2").await;
    shot(c, "10-rotation-progress").await;
    let key_url = c.current_url().await.expect("url").to_string();

    // Complete: after a confirmation that says when v1 was last used, v1 is retired at once.
    click(c, "a.button.danger[href$='/complete']").await;
    wait_for(c, "Retire v1 now?").await;
    assert!(body(c).await.contains("v1 was last used"));
    shot(c, "10b-confirm-retire").await;
    click(c, "form[action$='/complete'] button.danger").await;
    wait_for(c, "The old version was retired.").await;
    assert_eq!(app.verify_code(&first).await, "EXPIRED");

    // Revoke needs a reason and the key's start.
    let start = second[..14].to_owned();
    fill(c, "#reason", "rotated after an incident").await;
    fill(c, "#confirm", "wrong").await;
    click(c, "form[action$='/revoke'] button[type=submit]").await;
    wait_for(c, &format!("Type {start} to confirm.")).await;
    shot(c, "11-revoke-errors").await;
    fill(c, "#confirm", &start).await;
    click(c, "form[action$='/revoke'] button[type=submit]").await;
    wait_for(c, "The key was revoked.").await;
    assert_eq!(app.verify_code(&second).await, "REVOKED");
    shot(c, "12-revoked").await;

    // On a phone.
    c.set_window_size(390, 844).await.expect("resize");
    c.goto(&key_url).await.expect("key");
    shot(c, "13-key-phone").await;
    // The navigation folds away on a phone, and the Menu button opens it (no JavaScript).
    let side = c.find(Locator::Css("nav.side")).await.expect("navigation");
    assert!(!side.is_displayed().await.expect("displayed?"), "folded on a phone");
    click(c, "label.nav-toggle-label").await;
    assert!(side.is_displayed().await.expect("displayed?"), "Menu opens it");
    shot(c, "13c-menu-phone").await;
    c.set_window_size(1280, 900).await.expect("resize");

    // The key's usage chart: drawn by the server, shown under the page's CSP, rejections apart.
    c.goto(&format!("{key_url}?range=1h")).await.expect("key usage");
    wait_for(c, "hover a bar for the reasons").await;
    let chart = c.find(Locator::Css("svg.chart")).await.expect("a chart");
    let size = chart.rectangle().await.expect("size");
    assert!(size.2 > 300.0 && size.3 > 100.0, "the chart is drawn at a readable size: {size:?}");
    assert!(!c.find_all(Locator::Css("svg.chart rect.bad")).await.expect("bars").is_empty(), "revoked uses show");
    shot(c, "13b-key-usage").await;

    // A viewer: sees the key, has no actions, and a forged rotation is refused.
    let hash = keyroll::crypto::password::hash("viewer password 1").expect("hash");
    let vic =
        keyroll::store::accounts::create_user(&app.state.db, "vic@acme.test", "Vic Viewer", &hash).await.expect("user");
    let ann = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    let team = keyroll::store::accounts::memberships(&app.state.db, &ann.id).await.expect("teams")[0].1.id.clone();
    keyroll::store::accounts::add_member(
        &app.state.db,
        &vic.id,
        &keyroll::domain::TenantId::from_trusted(team),
        "viewer",
    )
    .await
    .expect("member");
    // The other pages, for the record.
    for (path, name) in [
        ("/app", "16-overview"),
        ("/app/policies", "17-policies"),
        ("/app/bulk", "18-bulk"),
        ("/app/root-keys", "19-root-keys"),
        ("/app/webhooks", "20-webhooks"),
        ("/app/team", "21-team"),
        ("/app/alerts", "21b-alerts"),
    ] {
        c.goto(&app.url(path)).await.expect("page");
        wait_for(c, "").await;
        shot(c, name).await;
    }
    // The audit log names who revoked the key and why; an entry opens to its details.
    c.goto(&app.url("/app/audit")).await.expect("audit");
    wait_for(c, "Chain intact").await;
    wait_for(c, "Revoked key").await;
    click(c, "table.audit details summary").await;
    wait_for(c, "Request").await;
    shot(c, "22-audit").await;
    c.execute("document.querySelector('table.audit').scrollIntoView()", vec![]).await.expect("scroll");
    shot(c, "23-audit-entry").await;

    // A compromised consumer: a new key for Bob, the playbook's dry run, then the run itself.
    use sea_orm::ConnectionTrait;
    let row = app
        .state
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT id FROM consumers WHERE external_id = 'cus_42'",
        ))
        .await
        .expect("query")
        .expect("Bob");
    let bob: String = row.try_get("", "id").expect("id");
    c.goto(&app.url(&format!("/app/keys/new?consumer={bob}"))).await.expect("new key");
    fill(c, "#name", "backup").await;
    click(c, "form[action='/app/keys'] button[type=submit]").await;
    wait_for(c, "only time it is shown").await;
    let third = secret_on_page(c).await;
    c.goto(&app.url("/app/playbooks")).await.expect("playbooks");
    wait_for(c, "Incident playbooks").await;
    shot(c, "24-playbooks").await;
    c.goto(&app.url("/app/playbooks/compromised_consumer")).await.expect("playbook");
    // The consumer is found by its external id with the picker's search, and chosen by name.
    fill(c, "#target_q", "cus_42").await;
    click(c, "button[name=find]").await;
    wait_for(c, "cus_42").await;
    click(c, &format!("input[name=target_id][value='{bob}']")).await;
    click(c, "form[action$='/run#plan'] button.primary").await;
    wait_for(c, "Start the run").await;
    shot(c, "25-playbook-dry-run").await;
    click(c, "#plan button.danger").await;
    wait_for(c, "Completed").await;
    c.execute("document.querySelector('ol.steps details')?.setAttribute('open', '')", vec![]).await.expect("open");
    shot(c, "26-playbook-run").await;
    let v = app.verify(json!({"key": third})).await;
    assert!(v["code"] == "VALID" && v["rotation"].is_object(), "the old key is in grace: {v}");
    tour(c, app, "light").await;
    click(c, "form[action='/logout'] button").await;
    wait_for(c, "Sign in").await;
    shot(c, "14-login").await;
    fill(c, "#email", "vic@acme.test").await;
    fill(c, "#password", "viewer password 1").await;
    click(c, "button[type=submit]").await;
    wait_for(c, "Overview").await;
    c.goto(&key_url).await.expect("key");
    wait_for(c, "Versions").await;
    let page = body(c).await;
    assert!(!page.contains("Rotate key") && !page.contains("Danger zone"), "no actions for a viewer");
    let key_path = key_url.split("/app/").nth(1).map(|p| format!("/app/{p}")).expect("path");
    c.execute(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0] + '/rotate';
         for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['overlap', '3600']]) {
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![json!(key_path)],
    )
    .await
    .expect("forged form sent");
    wait_for(c, "Viewers cannot change keys.").await;
    shot(c, "15-viewer-refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let Some((d, chromium)) = driver() else { return };
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let c = open(&d, &chromium).await;
    let dark = open_with(&d, &chromium, &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    // The browsers close even when an assertion fails.
    let outcome = tokio::spawn({
        let (c, dark) = (c.clone(), dark.clone());
        async move {
            owner_and_viewer(&app, &c).await;
            dark_tour(&app, &dark).await;
        }
    })
    .await;
    let _ = c.close().await;
    let _ = dark.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The same pages in the dark colour scheme.
async fn dark_tour(app: &TestApp, c: &Client) {
    c.goto(&app.url("/login")).await.expect("login");
    fill(c, "#email", "ann@acme.test").await;
    fill(c, "#password", "correct horse battery").await;
    click(c, "button[type=submit]").await;
    wait_for(c, "Overview").await;
    let dark: serde_json::Value =
        c.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await.expect("scheme");
    assert_eq!(dark, json!(true), "the session prefers dark");
    tour(c, app, "dark").await;
}

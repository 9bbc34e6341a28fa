//! Who may create a team once the install has one: `KEYROLL_SIGNUP=open`, `invite` (a single-use
//! link from the command line) or `closed` (the default). The first-run form works in every mode.

use crate::dashboard::{Browser, sign_up};
use crate::helpers::{Backend, TestApp, fresh, spawn_node_with};

async fn install(policy: &str) -> Option<TestApp> {
    let (shared, dir) = fresh(Backend::Sqlite).await?;
    Some(spawn_node_with(&shared, dir, &[("signup", policy)]).await)
}

async fn try_sign_up(app: &TestApp, path: &str, invite: &str) -> (u16, String) {
    let b = Browser::new(app);
    let form = b.get(path).await;
    if form.status != 200 {
        return (form.status.as_u16(), form.body);
    }
    let csrf = form.csrf();
    let page = b
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("invite", invite),
                ("team", "Bakery"),
                ("name", "Bea"),
                ("email", &format!("bea{}@bakery.test", uuid::Uuid::now_v7().simple())),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    (page.status.as_u16(), page.body)
}

async fn teams(app: &TestApp) -> usize {
    keyroll::store::tenants::all(&app.state.db).await.expect("tenants").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_by_default_and_the_first_run_always_works() {
    let (shared, dir) = fresh(Backend::Sqlite).await.expect("sqlite");
    let settings =
        keyroll::config::Settings::from_pairs([("database_url", shared.database_url.as_str())]).expect("settings");
    assert_eq!(settings.signup, keyroll::config::SignupPolicy::Closed, "a self-hosted install is closed");
    let app = spawn_node_with(&shared, dir, &[("signup", "closed")]).await;
    // The empty install's first-run form.
    sign_up(&Browser::new(&app), "Acme", "ann@acme.test").await;
    assert_eq!(teams(&app).await, 1);
    let login = Browser::new(&app).get("/login").await;
    assert!(!login.body.contains("href=\"/signup\""), "no sign-up link on a closed install");
    let (status, body) = try_sign_up(&app, "/signup", "").await;
    assert_eq!(status, 403);
    assert!(body.contains("Sign-up is closed"), "{body}");
    // Posting the form anyway changes nothing.
    let b = Browser::new(&app);
    let csrf = b.get("/login").await.csrf();
    let forged = b
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("team", "X"),
                ("name", "X"),
                ("email", "x@x.test"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(teams(&app).await, 1);
    assert!(keyroll::config::Settings::from_pairs([("signup", "sometimes")]).is_err(), "a wrong value is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_lets_anyone_create_a_team() {
    let Some(app) = install("open").await else { return };
    sign_up(&Browser::new(&app), "Acme", "ann@acme.test").await;
    assert!(Browser::new(&app).get("/login").await.body.contains("href=\"/signup\""));
    let (status, body) = try_sign_up(&app, "/signup", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(teams(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_takes_a_single_use_link() {
    let Some(app) = install("invite").await else { return };
    sign_up(&Browser::new(&app), "Acme", "ann@acme.test").await;
    let (status, body) = try_sign_up(&app, "/signup", "").await;
    assert_eq!(status, 403);
    assert!(body.contains("Sign-up is by invitation"), "{body}");
    // A link as `keyroll tenant invite-link` makes it.
    let (token, digest) = keyroll::crypto::new_token();
    let expires = chrono::Utc::now() + chrono::TimeDelta::days(7);
    keyroll::store::signup_links::add(&app.state.db, &digest, expires).await.expect("link");
    let (status, body) = try_sign_up(&app, &format!("/signup?invite={token}"), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(teams(&app).await, 2);
    // Used once: neither the page nor the form takes it again.
    let (status, body) = try_sign_up(&app, &format!("/signup?invite={token}"), &token).await;
    assert_eq!(status, 403);
    assert!(body.contains("already used or has expired"), "{body}");
    let (status, _) = try_sign_up(&app, "/signup?invite=made-up", "made-up").await;
    assert_eq!(status, 403);
    assert_eq!(teams(&app).await, 2);
}

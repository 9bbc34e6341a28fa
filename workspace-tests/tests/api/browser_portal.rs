//! The consumer portal in real headless Chromium: enter by the provider's link, rotate (the new
//! key shown once; reloading shows no second key), revoke the old key after confirming, and
//! another consumer's key is "not found". Screenshots at desktop and phone widths.

use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{body, click, driver, open, path, secret_on_page, shot, wait_for};
use crate::helpers::{Backend, TestApp, spawn_app};

async fn fits_a_phone(c: &Client, what: &str) {
    let wide: serde_json::Value =
        c.execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![]).await.expect("widths");
    assert!(wide[0].as_f64() <= wide[1].as_f64(), "{what} is wider than a phone: {wide}");
}

async fn consumer_in_the_portal(app: &TestApp, c: &Client) {
    let acme = app.tenant("Acme").await;
    let (st, _) = app
        .call(
            reqwest::Method::PATCH,
            "/v1/portal/settings",
            &acme.root,
            Some(json!({"display_name": "Acme Cloud", "accent_color": "#7c3aed"})),
        )
        .await;
    assert_eq!(st, 200);
    let mine = app.make_key(&acme, "acme", json!({"name": "production"})).await;
    let theirs = app.make_key(&acme, "acme", json!({"name": "other"})).await;
    let (st, link) = app.post("/v1/portal/sessions", &acme.root, json!({"consumer_id": mine.consumer_id})).await;
    assert_eq!(st, 201, "{link}");

    c.goto(link["url"].as_str().expect("url")).await.expect("open the link");
    wait_for(c, "Your API keys").await;
    assert_eq!(path(c).await, "/portal", "the link became a session and left the address bar");
    let home = body(c).await;
    assert!(home.contains("production") && !home.contains("other"), "{home}");
    shot(c, "portal-1280-keys").await;

    click(c, &format!("a[href='/portal/keys/{}']", mine.key_id)).await;
    wait_for(c, "Rotate").await;
    shot(c, "portal-1280-key").await;
    click(c, "#rotate button[type=submit]").await;
    wait_for(c, "only time it is shown").await;
    let secret = secret_on_page(c).await;
    assert!(secret.starts_with("acme_live_"), "{secret}");
    assert_eq!(app.verify_code(&secret).await, "VALID");
    // Reloading neither shows the secret again nor makes another key.
    c.refresh().await.expect("reload");
    wait_for(c, "Already shown").await;
    assert!(!body(c).await.contains(&secret));
    let (_, list) = app.get(&format!("/v1/keys?consumer_id={}", mine.consumer_id), &acme.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "{list}");

    // The old key: revoke after confirming.
    c.goto(&app.url(&format!("/portal/keys/{}", mine.key_id))).await.expect("key page");
    wait_for(c, "Rotation in progress").await;
    click(c, "#revoke button[type=submit]").await;
    wait_for(c, "Tick the box").await;
    assert_eq!(app.verify_code(&mine.secret).await, "VALID", "nothing happens without confirming");
    click(c, "#revoke input[name=confirm]").await;
    click(c, "#revoke button[type=submit]").await;
    wait_for(c, "The key is revoked").await;
    assert_eq!(app.verify_code(&mine.secret).await, "REVOKED");

    // Another consumer's key.
    c.goto(&app.url(&format!("/portal/keys/{}", theirs.key_id))).await.expect("other key");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page = c.find(Locator::Css("body")).await.expect("body").text().await.expect("text");
    assert!(page.contains("Not found") && !page.contains("other"), "{page}");
    assert_eq!(app.verify_code(&theirs.secret).await, "VALID");

    // On a phone.
    c.set_window_size(390, 844).await.expect("resize");
    for (p, name) in [("/portal".to_owned(), "keys"), (format!("/portal/keys/{}", mine.key_id), "key")] {
        c.goto(&app.url(&p)).await.expect("page");
        wait_for(c, "").await;
        fits_a_phone(c, &p).await;
        shot(c, &format!("portal-390-{name}")).await;
    }
    c.set_window_size(1280, 900).await.expect("resize");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_in_chromium() {
    let Some((d, chromium)) = driver() else { return };
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let c = open(&d, &chromium).await;
    let outcome = tokio::spawn({
        let c = c.clone();
        async move { consumer_in_the_portal(&app, &c).await }
    })
    .await;
    let _ = c.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

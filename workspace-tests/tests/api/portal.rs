//! The consumer portal over HTTP: links minted by the provider, single use; the session cookie;
//! the consumer's own keys only (every route tried with another consumer's ids, of the same
//! tenant and of another); rotate with the secret shown once; revoke with confirmation;
//! branding. The browser tour is in `browser.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::dashboard::Browser;
use crate::helpers::{Made, Tenant, TestApp};

/// Mints a portal link for a consumer.
pub(crate) async fn link(app: &TestApp, t: &Tenant, consumer: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"consumer_id": consumer});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.post("/v1/portal/sessions", &t.root, body).await
}

/// A browser that entered the portal with a fresh link; also returns the cookie's value.
pub(crate) async fn enter(app: &TestApp, t: &Tenant, consumer: &str) -> (Browser, String) {
    let (st, l) = link(app, t, consumer, json!({})).await;
    assert_eq!(st, 201, "{l}");
    let url = l["url"].as_str().expect("url");
    let path = url.strip_prefix(&app.address).expect("the link is on this server");
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let res = raw.get(url).send().await.expect("entered");
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers().get("location").and_then(|v| v.to_str().ok()), Some("/portal"));
    let set = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a cookie").to_owned();
    assert!(set.starts_with("kr_portal="), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("Path=/portal"), "{set}");
    let cookie = set.trim_start_matches("kr_portal=").split(';').next().expect("value").to_owned();
    // The link is single-use.
    let again = raw.get(url).send().await.expect("sent");
    assert_eq!(again.status().as_u16(), 410, "a used link does not open the portal again");
    let b = Browser::new(app);
    b.set_cookie("kr_portal", &cookie, path);
    (b, cookie)
}

async fn portal_links_are_minted_by_the_provider_and_used_once(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (st, l) =
        link(&app, &acme, &k.consumer_id, json!({"return_url": "https://app.acme.test/settings", "ttl_seconds": 120}))
            .await;
    assert_eq!(st, 201, "{l}");
    assert!(l["url"].as_str().is_some_and(|u| u.starts_with(&format!("{}/portal/enter?token=", app.address))), "{l}");
    let expires = chrono::DateTime::parse_from_rfc3339(l["expires_at"].as_str().expect("expires")).expect("time");
    let left = expires.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((100..=121).contains(&left), "{left}");
    for (body, field) in [
        (json!({"ttl_seconds": 3601}), "ttl_seconds"),
        (json!({"ttl_seconds": 10}), "ttl_seconds"),
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (json!({"return_url": "/relative"}), "return_url"),
    ] {
        let (st, b) = link(&app, &acme, &k.consumer_id, body).await;
        assert_eq!((st, b["errors"][0]["field"].as_str()), (400, Some(field)), "{b}");
    }
    // Another tenant's consumer, a malformed id, a narrow root key.
    assert_eq!(link(&app, &umbrella, &k.consumer_id, json!({})).await.0, 404);
    assert_eq!(link(&app, &acme, "con_nope", json!({})).await.0, 400);
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"name": "n", "scopes": ["keys:write"]})).await;
    assert_eq!(
        link(
            &app,
            &Tenant { id: acme.id.clone(), root: narrow["secret"].as_str().expect("s").to_owned() },
            &k.consumer_id,
            json!({})
        )
        .await
        .0,
        403
    );
    let (st, b) = app.post("/v1/portal/sessions", &acme.root, json!({"consumer_id": k.consumer_id, "extra": 1})).await;
    assert_eq!(st, 400, "{b}");

    // A tampered or foreign token does not open it.
    let url = l["url"].as_str().expect("url");
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for bad in
        [format!("{url}x"), format!("{}/portal/enter?token=abc", app.address), format!("{}/portal/enter", app.address)]
    {
        assert_eq!(raw.get(&bad).send().await.expect("sent").status().as_u16(), 410, "{bad}");
    }
    let (b, _) = enter(&app, &acme, &k.consumer_id).await;
    let home = b.get("/portal").await;
    assert!(home.body.contains("No verifications in the last 30 days"), "an unused key's sparkline is flat");
    for _ in 0..3 {
        assert_eq!(app.verify_code(&k.secret).await, "VALID");
    }
    // Counts reach the database at the next flush (every 100 ms in tests).
    let mut home = b.get("/portal").await;
    for _ in 0..50 {
        if home.body.contains("3 verifications in the last 30 days") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        home = b.get("/portal").await;
    }
    assert!(home.body.contains("3 verifications in the last 30 days; busiest"), "the sparkline: {}", home.body);
    assert!(home.body.contains("class=\"spark\""));
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("Your API keys") && home.body.contains("Bob"), "{}", home.body);
    let start = &k.secret[..14];
    assert!(home.body.contains(start), "the key is listed: {}", home.body);
    assert_eq!(home.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert!(home.headers.get("content-security-policy").is_some());

    // Signing out ends the session.
    let csrf = home.csrf();
    assert_eq!(b.post("/portal/logout", &[("csrf", &csrf)]).await.status, StatusCode::OK);
    let after = b.get("/portal").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(after.body.contains("Your session has ended"), "{}", after.body);
}
both_backends!(portal_links, portal_links_are_minted_by_the_provider_and_used_once);

async fn a_portal_session_sees_only_its_consumers_keys(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let mine = app.make_key(&acme, "acme", json!({})).await;
    let neighbour = app.make_key(&acme, "acme", json!({})).await;
    let foreign: Made = app.make_key(&umbrella, "umb", json!({})).await;
    let (b, cookie) = enter(&app, &acme, &mine.consumer_id).await;
    let csrf = b.get("/portal").await.csrf();
    assert_eq!(b.get(&format!("/portal/keys/{}", mine.key_id)).await.status, StatusCode::OK);
    let home = b.get("/portal").await.body;
    assert!(!home.contains(&neighbour.secret[..14]) && !home.contains(&neighbour.key_id), "no other consumer's key");
    for other in [&neighbour, &foreign] {
        let page = b.get(&format!("/portal/keys/{}", other.key_id)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        assert!(!page.body.contains(&other.secret[..14]));
        for (action, form) in [
            ("rotate", vec![("csrf", csrf.as_str()), ("overlap_seconds", "3600")]),
            ("pickup", vec![("csrf", csrf.as_str())]),
            ("revoke", vec![("csrf", csrf.as_str()), ("confirm", "yes")]),
        ] {
            let page = b.post(&format!("/portal/keys/{}/{action}", other.key_id), &form).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}: {}", page.body);
        }
        assert_eq!(app.verify_code(&other.secret).await, "VALID", "nothing happened to it");
    }
    for junk in ["nope", "key_01jz0000000000000000000000", &mine.consumer_id] {
        assert_eq!(b.get(&format!("/portal/keys/{junk}")).await.status, StatusCode::NOT_FOUND, "{junk}");
    }
    // The portal cookie opens nothing else; a root key or a dashboard session opens no portal.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let with_cookie =
        |path: &str| plain.get(app.url(path)).header("cookie", format!("kr_portal={cookie}; kr_session={cookie}"));
    assert_eq!(with_cookie("/v1/keys").send().await.expect("sent").status().as_u16(), 401);
    let dash = with_cookie("/app").send().await.expect("sent");
    assert!(dash.status().is_redirection(), "{}", dash.status());
    assert!(dash.headers().get("location").and_then(|v| v.to_str().ok()).is_some_and(|l| l.starts_with("/login")));
    let res = plain.get(app.url("/portal")).bearer_auth(&acme.root).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    let res = plain
        .get(app.url(&format!("/portal/keys/{}", mine.key_id)))
        .bearer_auth(&mine.secret)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    // Forms need the session's CSRF token.
    let page = b
        .post(&format!("/portal/keys/{}/rotate", mine.key_id), &[("csrf", "wrong"), ("overlap_seconds", "3600")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.verify(json!({"key": mine.secret})).await["rotation"], Value::Null, "not rotated");
}
both_backends!(portal_isolation, a_portal_session_sees_only_its_consumers_keys);

async fn a_consumer_rotates_and_revokes_in_the_portal(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (b, _) = enter(&app, &acme, &k.consumer_id).await;
    let page = b.get(&format!("/portal/keys/{}", k.key_id)).await;
    assert!(page.body.contains("Rotate key"), "{}", page.body);
    assert!(!page.body.contains("Revoke key"), "the only working key cannot be revoked here");
    let csrf = page.csrf();
    let bad =
        b.post(&format!("/portal/keys/{}/rotate", k.key_id), &[("csrf", &csrf), ("overlap_seconds", "9999999")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert!(bad.body.contains("role=\"alert\""));

    let shown =
        b.post(&format!("/portal/keys/{}/rotate", k.key_id), &[("csrf", &csrf), ("overlap_seconds", "3600")]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.url.starts_with("/portal/shown/"), "post/redirect/get: {}", shown.url);
    let secret = shown.secret("acme_live_");
    assert_eq!(app.verify_code(&secret).await, "VALID");
    assert_eq!(app.verify(json!({"key": k.secret})).await["rotation"]["state"], "superseded", "the old key works on");
    let again = b.get(&shown.location).await;
    assert_eq!(again.status, StatusCode::GONE, "shown once");
    assert!(!again.body.contains(&secret));
    let (_, list) = app.get(&format!("/v1/keys?consumer_id={}", k.consumer_id), &acme.root).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2), "one new version, not two: {list}");
    let (_, audit) = app.get("/v1/audit-events?limit=20", &acme.root).await;
    let rotated =
        audit["data"].as_array().expect("data").iter().find(|e| e["action"] == "key.rotated").expect("audited");
    assert_eq!(rotated["actor"], format!("consumer:{}", k.consumer_id), "{rotated}");

    // Now two keys work: the old one may be revoked, after confirming.
    let page = b.get(&format!("/portal/keys/{}", k.key_id)).await;
    assert!(page.body.contains("Revoke key") && page.body.contains("Rotation in progress"), "{}", page.body);
    let unconfirmed = b.post(&format!("/portal/keys/{}/revoke", k.key_id), &[("csrf", &csrf)]).await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.verify_code(&k.secret).await, "VALID");
    let done = b.post(&format!("/portal/keys/{}/revoke", k.key_id), &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(app.verify_code(&k.secret).await, "REVOKED");
    // The last working key cannot be revoked from the portal.
    let (_, list) = app.get(&format!("/v1/keys?consumer_id={}", k.consumer_id), &acme.root).await;
    let new_id =
        list["data"].as_array().expect("data").iter().find(|x| x["id"] != k.key_id.as_str()).expect("new")["id"]
            .as_str()
            .expect("id")
            .to_owned();
    let last = b.post(&format!("/portal/keys/{new_id}/revoke"), &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.body);
    assert_eq!(app.verify_code(&secret).await, "VALID");
}
both_backends!(portal_rotate_revoke, a_consumer_rotates_and_revokes_in_the_portal);

async fn the_portal_wears_the_providers_brand(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (st, s) = app.get("/v1/portal/settings", &acme.root).await;
    assert_eq!((st, s["magic_link"].as_bool(), s["display_name"].clone()), (200, Some(false), Value::Null), "{s}");
    let patch = json!({"display_name": "Acme Cloud", "accent_color": "#FF6600", "logo_url": "https://acme.test/logo.svg",
                       "support_url": "mailto:help@acme.test"});
    let (st, s) = app.call(reqwest::Method::PATCH, "/v1/portal/settings", &acme.root, Some(patch)).await;
    assert_eq!((st, s["accent_color"].as_str()), (200, Some("#ff6600")), "{s}");
    for (bad, field) in [
        (json!({"accent_color": "red; } body { display:none"}), "accent_color"),
        (json!({"logo_url": "http://acme.test/logo.svg"}), "logo_url"),
        (json!({"support_url": "javascript:alert(1)"}), "support_url"),
        (json!({"display_name": ""}), "display_name"),
    ] {
        let (st, b) = app.call(reqwest::Method::PATCH, "/v1/portal/settings", &acme.root, Some(bad)).await;
        assert_eq!((st, b["errors"][0]["field"].as_str()), (400, Some(field)), "{b}");
    }
    let (b, _) = enter(&app, &acme, &k.consumer_id).await;
    let home = b.get("/portal").await;
    assert!(home.body.contains("Acme Cloud") && home.body.contains("https://acme.test/logo.svg"), "{}", home.body);
    assert!(home.body.contains("mailto:help@acme.test"));
    let css = b.get("/portal/brand.css").await;
    assert_eq!(css.body.trim(), ":root { --accent: #ff6600; }");
    let (st, s) =
        app.call(reqwest::Method::PATCH, "/v1/portal/settings", &acme.root, Some(json!({"accent_color": null}))).await;
    assert_eq!((st, s["accent_color"].clone()), (200, Value::Null));
    assert_eq!(b.get("/portal/brand.css").await.body, "");
}
both_backends!(portal_brand, the_portal_wears_the_providers_brand);

/// The dashboard's page for signing keys and the portal: phases listed, rotate and revoke,
/// branding saved with inline errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_manages_signing_keys_and_the_portal() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let ann = Browser::new(&app);
    crate::dashboard::sign_up(&ann, "Acme", "ann@acme.test").await;
    let page = ann.get("/app/tokens").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("No signing key yet"), "{}", page.body);
    let csrf = page.csrf();
    let bad = ann.post("/app/tokens/rotate", &[("csrf", &csrf), ("lead_hours", "-3")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"lead-error\""), "{}", bad.body);
    let first = ann.post("/app/tokens/rotate", &[("csrf", &csrf), ("lead_hours", "1")]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("phase-active"), "a team without a key gets one that signs at once");
    let second = ann.post("/app/tokens/rotate", &[("csrf", &csrf), ("lead_hours", "2")]).await;
    assert!(second.body.contains("phase-published") && second.body.contains("phase-active"), "{}", second.body);
    let waiting =
        second.body.split("action=\"/app/tokens/sig_").nth(1).and_then(|s| s.split('/').next()).expect("a kid");
    let revoked = ann.post(&format!("/app/tokens/sig_{waiting}/revoke"), &[("csrf", &csrf)]).await;
    assert!(revoked.body.contains("phase-revoked"), "{}", revoked.body);

    let saved = ann
        .post(
            "/app/tokens/portal",
            &[
                ("csrf", &csrf),
                ("display_name", "Acme Cloud"),
                ("accent_color", "teal"),
                ("logo_url", ""),
                ("support_url", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(saved.body.contains("id=\"accent_color-error\"") && saved.body.contains("value=\"teal\""), "kept as typed");
    let saved = ann
        .post(
            "/app/tokens/portal",
            &[
                ("csrf", &csrf),
                ("display_name", "Acme Cloud"),
                ("accent_color", "#008080"),
                ("logo_url", ""),
                ("support_url", "https://acme.test/help"),
                ("magic_link", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.contains("Portal settings saved") && saved.body.contains("value=\"#008080\""));
    assert!(saved.body.contains("checked"));
}

/// Magic links: off by default (404); on, the same page whether or not the address is known; a
/// real SMTP conversation carries a single-use link that opens the consumer's portal; asking is
/// throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_sign_in_by_email_when_the_provider_allows_it() {
    use crate::helpers::{Backend, fresh, spawn_node_with};
    let Some((shared, dir)) = fresh(Backend::Sqlite).await else { return };
    let Some(mailbox) = crate::notifications::Smtp::start() else { return };
    let smtp = format!("smtp://127.0.0.1:{}", mailbox.port);
    let app = spawn_node_with(&shared, dir, &[("smtp_url", smtp.as_str())]).await;
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (st, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/consumers/{}", k.consumer_id),
            &acme.root,
            Some(json!({"email": "Bob@Example.test"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, s) = app.get("/v1/portal/settings", &acme.root).await;
    let login = s["login_url"].as_str().expect("login url").strip_prefix(&app.address).expect("ours").to_owned();
    let b = Browser::new(&app);
    assert_eq!(b.get(&login).await.status, StatusCode::NOT_FOUND, "off unless the provider turns it on");
    let (st, _) =
        app.call(reqwest::Method::PATCH, "/v1/portal/settings", &acme.root, Some(json!({"magic_link": true}))).await;
    assert_eq!(st, 200);
    assert_eq!(b.get(&login).await.status, StatusCode::OK);

    let unknown = b.post(&login, &[("email", "nobody@example.test")]).await;
    let known = b.post(&login, &[("email", "bob@example.test")]).await;
    assert_eq!((unknown.status, known.status), (StatusCode::OK, StatusCode::OK));
    let strip = |p: &str| p.replace("nobody@example.test", "X").replace("bob@example.test", "X");
    assert_eq!(strip(&unknown.body), strip(&known.body), "the same answer either way");
    assert_eq!(b.post(&login, &[("email", "not an address")]).await.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The mail arrives over SMTP with a link that opens the portal once.
    let started = std::time::Instant::now();
    let link = loop {
        // The body is quoted-printable (its lines are long): undo the soft breaks and `=3D`.
        let decoded: Vec<String> =
            mailbox.messages().iter().map(|m| m.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")).collect();
        if let Some(m) = decoded.into_iter().find(|m| m.contains("/portal/enter?token=")) {
            let at = m.find("http://").expect("a link");
            break m[at..].split_whitespace().next().expect("link").to_owned();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no mail");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(mailbox.messages().len(), 1, "no mail for an unknown address");
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let res = raw.get(&link).send().await.expect("entered");
    assert_eq!(res.status().as_u16(), 303, "{link}");
    let cookie = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("cookie").to_owned();
    let cookie = cookie.trim_start_matches("kr_portal=").split(';').next().expect("value").to_owned();
    assert_eq!(raw.get(&link).send().await.expect("again").status().as_u16(), 410, "single use");
    let b = Browser::new(&app);
    b.set_cookie("kr_portal", &cookie, "/portal");
    let home = b.get("/portal").await;
    assert!(home.status == StatusCode::OK && home.body.contains(&k.secret[..14]), "{}", home.body);

    // Throttled: a handful of requests per address.
    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = Browser::new(&app).post(&login, &[("email", "spray@example.test")]).await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // A form posted from another site is refused.
    let res = raw
        .post(app.url(&login))
        .header("origin", "https://evil.test")
        .form(&[("email", "bob@example.test")])
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 403);
}

async fn a_consumer_sets_where_its_notices_go(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let other = app.make_key(&acme, "acme", json!({})).await;
    let (b, cookie) = enter(&app, &acme, &k.consumer_id).await;
    let (o, _) = enter(&app, &acme, &other.consumer_id).await;
    let page = b.get("/portal/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    let bad = b.post("/portal/settings/email", &[("csrf", &csrf), ("email", "not an address")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"email-error\"") && bad.body.contains("value=\"not an address\""));
    let ok = b.post("/portal/settings/email", &[("csrf", &csrf), ("email", "ops@bob.test")]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let (_, con) = app.get(&format!("/v1/consumers/{}", k.consumer_id), &acme.root).await;
    assert_eq!(con["email"], "ops@bob.test");

    // Its own endpoint: the secret shown once, on a page only this consumer can open.
    let shown = b.post("/portal/settings/endpoints", &[("csrf", &csrf), ("url", "http://127.0.0.1:9/hooks")]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.url.starts_with("/portal/shown/"));
    assert!(shown.secret("whsec_").starts_with("whsec_"));
    let (_, eps) = app.get("/v1/webhook-endpoints", &acme.root).await;
    let ep = eps["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["url"] == "http://127.0.0.1:9/hooks")
        .expect("made")
        .clone();
    assert_eq!(ep["consumer_id"], k.consumer_id.as_str(), "{ep}");
    let bad = b.post("/portal/settings/endpoints", &[("csrf", &csrf), ("url", "ftp://x")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another consumer neither sees nor removes it.
    let theirs = o.get("/portal/settings").await;
    assert!(!theirs.body.contains("127.0.0.1:9/hooks"));
    let ocsrf = theirs.csrf();
    let id = ep["id"].as_str().expect("id");
    let refused = o.post(&format!("/portal/settings/endpoints/{id}/delete"), &[("csrf", &ocsrf)]).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    // The provider's own endpoints are not the consumer's either.
    let (_, team) = app.post("/v1/webhook-endpoints", &acme.root, json!({"url": "http://127.0.0.1:9/team"})).await;
    let team_id = team["endpoint"]["id"].as_str().or(team["id"].as_str()).expect("id").to_owned();
    assert_eq!(
        b.post(&format!("/portal/settings/endpoints/{team_id}/delete"), &[("csrf", &csrf)]).await.status,
        StatusCode::NOT_FOUND
    );
    let gone = b.post(&format!("/portal/settings/endpoints/{id}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(gone.status, StatusCode::OK);
    assert!(!gone.body.contains("127.0.0.1:9/hooks"));

    // A secret page of one consumer is nothing to another.
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let res = raw
        .post(app.url(&format!("/portal/keys/{}/rotate", k.key_id)))
        .header("cookie", format!("kr_portal={cookie}"))
        .form(&[("csrf", csrf.as_str()), ("overlap_seconds", "3600")])
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 303);
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).expect("location").to_owned();
    assert!(location.starts_with("/portal/shown/"), "{location}");
    let stolen = o.get(&location).await;
    assert_eq!(stolen.status, StatusCode::GONE);
    assert!(!stolen.body.contains("value=\"acme_live_"));
    let mine = b.get(&location).await;
    assert_eq!(mine.status, StatusCode::OK, "the other consumer's try did not use it up");
    assert!(mine.secret("acme_live_").starts_with("acme_live_"));
}
both_backends!(portal_notifications, a_consumer_sets_where_its_notices_go);

async fn a_consumer_picks_up_a_key_a_rotation_issued(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let (st, run) =
        app.post("/v1/rotations/bulk", &acme.root, json!({"api_id": k.api_id, "overlap_seconds": 3600})).await;
    assert_eq!(st, 202, "{run}");
    let job = run["job_id"].as_str().expect("job").to_owned();
    let started = std::time::Instant::now();
    while app.get(&format!("/v1/jobs/{job}"), &acme.root).await.1["state"] != "done" {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "bulk job stuck");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (b, _) = enter(&app, &acme, &k.consumer_id).await;
    let home = b.get("/portal").await;
    assert!(home.body.contains("issued a new key for you"), "{}", home.body);
    let page = b.get(&format!("/portal/keys/{}", k.key_id)).await;
    assert!(page.body.contains("Pick up the new key"), "{}", page.body);
    let csrf = page.csrf();
    let shown = b.post(&format!("/portal/keys/{}/pickup", k.key_id), &[("csrf", &csrf)]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let secret = shown.secret("acme_live_");
    assert_eq!(app.verify_code(&secret).await, "VALID");
    assert_ne!(secret, k.secret);
    let again = b.post(&format!("/portal/keys/{}/pickup", k.key_id), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "once only");
    assert!(again.body.contains("No new key is waiting"));
    let (_, audit) = app.get("/v1/audit-events?action=key.secret_picked_up", &acme.root).await;
    assert_eq!(audit["data"][0]["actor"], format!("consumer:{}", k.consumer_id), "{audit}");
}
both_backends!(portal_pickup, a_consumer_picks_up_a_key_a_rotation_issued);

//! The dashboard over HTTP, as a browser without JavaScript uses it: first run, sessions,
//! CSRF, roles enforced on the server, escaping, security headers, throttled sign-in and
//! password reset.

use reqwest::StatusCode;

use crate::helpers::TestApp;

/// A browser: a cookie jar and the last page.
pub(crate) struct Browser {
    client: reqwest::Client,
    base: String,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) url: String,
    /// The path with its query, to load the same page again.
    pub(crate) location: String,
    pub(crate) body: String,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Page {
    pub(crate) fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        self.body[at..].split('"').next().expect("token").to_owned()
    }

    /// The secret shown once on the page: the first form value that starts with `head`.
    pub(crate) fn secret(&self, head: &str) -> String {
        self.body
            .split(&format!("value=\"{head}"))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|s| format!("{head}{s}"))
            .expect("a secret on the page")
    }

    /// The first `href="{prefix}…"` on the page.
    pub(crate) fn link(&self, prefix: &str) -> String {
        let at = self.body.find(&format!("href=\"{prefix}")).unwrap_or_else(|| panic!("no link to {prefix}")) + 6;
        self.body[at..].split('"').next().expect("href").to_owned()
    }
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Self {
            client: reqwest::Client::builder().cookie_provider(jar.clone()).build().expect("client"),
            base: app.address.clone(),
            jar,
        }
    }

    /// The cookie jar, for a client of its own (one that does not follow redirects).
    pub(crate) fn jar(&self) -> std::sync::Arc<reqwest::cookie::Jar> {
        self.jar.clone()
    }

    /// Puts a cookie in the jar, as a browser that followed a `Set-Cookie` would have it.
    pub(crate) fn set_cookie(&self, name: &str, value: &str, _from: &str) {
        let url: reqwest::Url = self.base.parse().expect("base url");
        self.jar.add_cookie_str(&format!("{name}={value}; Path=/portal; HttpOnly"), &url);
    }

    async fn page(res: reqwest::Response) -> Page {
        let status = res.status();
        let url = res.url().path().to_owned();
        let location = res.url().query().map_or_else(|| url.clone(), |q| format!("{url}?{q}"));
        let headers = res.headers().clone();
        Page { status, url, location, headers, body: res.text().await.expect("body") }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        Self::page(self.client.get(format!("{}{path}", self.base)).send().await.expect("sent")).await
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::page(self.client.post(format!("{}{path}", self.base)).form(form).send().await.expect("sent")).await
    }
}

pub(crate) async fn sign_up(b: &Browser, team: &str, email: &str) -> Page {
    let form = b.get("/setup").await;
    let csrf = form.csrf();
    let page = b
        .post(
            if form.url == "/setup" { "/setup" } else { "/signup" },
            &[
                ("csrf", &csrf),
                ("team", team),
                ("name", "Ann"),
                ("email", email),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

/// Ann signs up for Acme and, on the pages, makes an API (`acme_live_`), a consumer and a key.
/// Returns her browser, a CSRF token, the consumer's id and the key's id.
pub(crate) async fn ann_with_a_key(app: &TestApp) -> (Browser, String, String, String) {
    let ann = Browser::new(app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let csrf = ann.get("/app").await.csrf();
    ann.post("/app/apis", &[("csrf", &csrf), ("name", "Orders"), ("key_prefix", "acme"), ("environment", "live")])
        .await;
    let con =
        ann.post("/app/consumers", &[("csrf", &csrf), ("name", "Bob"), ("external_id", "cus_1"), ("email", "")]).await;
    let consumer_id = con.url.rsplit('/').next().expect("consumer id").to_owned();
    let made = create_key(&ann, &csrf, &consumer_id, "").await;
    let key_id = made.link("/app/keys/").trim_start_matches("/app/keys/").to_owned();
    (ann, csrf, consumer_id, key_id)
}

/// Creates a key for the consumer on the new-key page (its first API), with `scopes`.
pub(crate) async fn create_key(b: &Browser, csrf: &str, consumer_id: &str, scopes: &str) -> Page {
    let new_key = b.get(&format!("/app/keys/new?consumer={consumer_id}")).await;
    let api_id = new_key
        .body
        .split("option value=\"api_")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(|s| format!("api_{s}"))
        .expect("api");
    let form = [
        ("csrf", csrf),
        ("consumer_id", consumer_id),
        ("api_id", api_id.as_str()),
        ("name", "prod"),
        ("scopes", scopes),
        ("expires_days", ""),
    ];
    b.post("/app/keys", &form).await
}

async fn dashboard_flows(app: TestApp) {
    let ann = Browser::new(&app);

    // An empty install leads to the first-run form; bad input keeps what was typed.
    let first = ann.get("/").await;
    assert_eq!((first.status.as_u16(), first.url.as_str()), (200, "/setup"));
    let csrf = first.csrf();
    let bad = ann
        .post("/setup", &[("csrf", &csrf), ("team", "Acme"), ("name", "Ann"), ("email", "nope"), ("password", "short")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter an email address.") && bad.body.contains("Use 10 to 128 characters."));
    assert!(bad.body.contains("value=\"nope\"") && bad.body.contains("value=\"Acme\""), "what was typed stays");
    assert_eq!(ann.post("/setup", &[("csrf", "forged"), ("team", "X")]).await.status, 403, "CSRF checked");

    let created = sign_up(&ann, "Acme <script>alert(1)</script>", "ann@acme.test").await;
    assert!(created.body.contains("kr_root_"), "the root key is shown once");
    assert!(!created.body.contains("<script>alert(1)</script>"), "names are escaped");
    assert!(created.body.contains("Acme &#60;script&#62;") || created.body.contains("Acme &lt;script&gt;"));
    let csp = created.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(created.headers.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]));
    assert_eq!(ann.get("/setup").await.url, "/login", "setup runs once");

    // The overview says what to do next; an API, a consumer, a key.
    let overview = ann.get("/app").await;
    assert!(overview.body.contains("Start with an API"));
    let csrf = overview.csrf();
    let bad_api = ann
        .post("/app/apis", &[("csrf", &csrf), ("name", "Orders"), ("key_prefix", "A!"), ("environment", "live")])
        .await;
    assert_eq!(bad_api.status, 422);
    assert!(bad_api.body.contains("value=\"A!\""));
    let apis = ann
        .post("/app/apis", &[("csrf", &csrf), ("name", "Orders"), ("key_prefix", "acme"), ("environment", "live")])
        .await;
    assert_eq!((apis.status.as_u16(), apis.url.as_str()), (200, "/app/apis"));
    let consumer = ann
        .post(
            "/app/consumers",
            &[("csrf", &csrf), ("name", "<img src=x onerror=alert(1)>"), ("external_id", "cus_1"), ("email", "")],
        )
        .await;
    assert!(consumer.url.starts_with("/app/consumers/con_"), "{}", consumer.url);
    assert!(!consumer.body.contains("<img src=x"), "escaped");
    let consumer_id = consumer.url.rsplit('/').next().expect("id").to_owned();
    let found = ann.get("/app/consumers?q=CUS_").await;
    assert!(found.body.contains(&consumer_id), "search by external id, any case");
    assert!(ann.get("/app/consumers?q=nobody").await.body.contains("No consumer matches"));

    let made = create_key(&ann, &csrf, &consumer_id, "orders:*").await;
    assert!(made.body.contains("This is the only time it is shown"), "{}", made.body);
    let secret = made.secret("acme_live_");
    assert_eq!(app.verify_code(&secret).await, "VALID");
    // The secret was shown after a redirect: a reload shows it no second time, creates nothing,
    // and neither the browser nor a proxy may keep the page.
    assert!(made.url.starts_with("/app/shown/"), "{}", made.url);
    assert_eq!(made.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let again = ann.get(&made.location).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("Already shown") && !again.body.contains(&secret));
    let (_, keys) = app.get(&format!("/v1/keys?consumer_id={consumer_id}"), &root_of(&app).await).await;
    assert_eq!(keys["data"].as_array().map(Vec::len), Some(1), "one key, however often the page was loaded");
    let key_path = made.link("/app/keys/key_");
    let key_page = ann.get(&key_path).await;
    assert!(!key_page.body.contains(&secret), "never shown again");
    assert!(key_page.body.contains("Rotate key"));
    assert!(key_page.body.contains(" by Ann"), "who created it, by name");
    // Disabling asks first, saying what it breaks; without the confirmation nothing changes.
    assert!(key_page.body.contains(&format!("href=\"{key_path}/disable\"")), "disable leads to a confirmation");
    let unconfirmed = ann.post(&format!("{key_path}/enabled"), &[("csrf", &csrf), ("enabled", "false")]).await;
    assert_eq!(unconfirmed.url, format!("{key_path}/disable"));
    assert!(unconfirmed.body.contains("refused at once, on every node"), "{}", unconfirmed.body);
    assert!(unconfirmed.body.contains("v1 was last used") || unconfirmed.body.contains("v1 has never been used"));
    assert!(unconfirmed.body.contains("class=\"danger\"") && unconfirmed.body.contains(">Cancel</a>"));
    assert_eq!(app.verify_code(&secret).await, "VALID", "nothing changed without the confirmation");
    let off =
        ann.post(&format!("{key_path}/enabled"), &[("csrf", &csrf), ("enabled", "false"), ("confirm", "yes")]).await;
    assert!(off.body.contains("The key is disabled"), "{}", off.body);
    assert_eq!(app.verify_code(&secret).await, "DISABLED");
    let on = ann.post(&format!("{key_path}/enabled"), &[("csrf", &csrf), ("enabled", "true")]).await;
    assert!(on.body.contains("enabled again"));
    assert_eq!(app.verify_code(&secret).await, "VALID");

    // A viewer sees the key but cannot change it, even with a forged form.
    let hash = keyroll::crypto::password::hash("viewer password 1").expect("hash");
    let viewer =
        keyroll::store::accounts::create_user(&app.state.db, "vic@acme.test", "Vic", &hash).await.expect("user");
    let tenant_id = keyroll::store::accounts::memberships(&app.state.db, &viewer_owner(&app).await).await.expect("m")
        [0]
    .1
    .id
    .clone();
    keyroll::store::accounts::add_member(
        &app.state.db,
        &viewer.id,
        &keyroll::domain::TenantId::from_trusted(tenant_id),
        "viewer",
    )
    .await
    .expect("member");
    let vic = Browser::new(&app);
    let login = vic.get("/login").await;
    let signed = vic
        .post(
            "/login",
            &[
                ("csrf", &login.csrf()),
                ("email", "VIC@acme.test"),
                ("password", "viewer password 1"),
                ("next", &key_path),
            ],
        )
        .await;
    assert_eq!((signed.status.as_u16(), signed.url.as_str()), (200, key_path.as_str()), "back where they were going");
    assert!(!signed.body.contains("Rotate key") && !signed.body.contains("Danger zone"), "no actions for viewers");
    let forged = vic.post(&format!("{key_path}/rotate"), &[("csrf", &signed.csrf()), ("overlap", "3600")]).await;
    assert_eq!(forged.status, 403, "a viewer's forged rotation is refused");
    let forged =
        vic.post(&format!("{key_path}/revoke"), &[("csrf", &signed.csrf()), ("reason", "x"), ("confirm", "x")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(app.verify_code(&secret).await, "VALID", "nothing changed");
    assert!(
        vic.post(
            "/app/apis",
            &[("csrf", &signed.csrf()), ("name", "X"), ("key_prefix", "xx"), ("environment", "live")]
        )
        .await
        .status
            == 403
    );

    // The owner rotates; both versions verify; complete retires the old one.
    let rotated = ann
        .post(&format!("{key_path}/rotate"), &[("csrf", &csrf), ("overlap", "3600"), ("retire_mode", "at_deadline")])
        .await;
    assert!(rotated.body.contains("Key rotated"), "{}", rotated.body);
    let new_secret = rotated.secret("acme_live_");
    assert_eq!(
        (app.verify_code(&secret).await.as_str(), app.verify_code(&new_secret).await.as_str()),
        ("VALID", "VALID")
    );
    let lineage = ann.get(&rotated.link("/app/keys/key_")).await;
    assert!(lineage.body.contains("Rotation in progress"));
    let rid =
        lineage.body.split("/app/rotations/").nth(1).and_then(|s| s.split('/').next()).expect("rotation id").to_owned();
    // Retiring now asks first, with when the old version was last used.
    assert!(!lineage.body.contains("class=\"primary\">Retire"), "retiring is not the primary action");
    let ask = ann.post(&format!("/app/rotations/{rid}/complete"), &[("csrf", &csrf)]).await;
    assert!(ask.body.contains("Retire v1 now?") && ask.body.contains("v1 was last used"), "{}", ask.body);
    assert_eq!(app.verify_code(&secret).await, "VALID", "nothing changed without the confirmation");
    let rollback = ann.get(&format!("/app/rotations/{rid}/rollback")).await;
    assert!(rollback.body.contains("Roll back to v1?") && rollback.body.contains("is ended at once"));
    let done = ann.post(&format!("/app/rotations/{rid}/complete"), &[("csrf", &csrf), ("confirm", "yes")]).await;
    assert!(done.body.contains("The old version was retired."));
    assert_eq!(app.verify_code(&secret).await, "EXPIRED");

    // Revoking asks for a reason and the key's start.
    let new_path = rotated.link("/app/keys/key_");
    let start = &new_secret[..14];
    let refused =
        ann.post(&format!("{new_path}/revoke"), &[("csrf", &csrf), ("reason", "leaked"), ("confirm", "wrong")]).await;
    assert_eq!(refused.status, 422);
    let revoked =
        ann.post(&format!("{new_path}/revoke"), &[("csrf", &csrf), ("reason", "leaked"), ("confirm", start)]).await;
    assert!(revoked.body.contains("was revoked"), "{}", &revoked.body[..revoked.body.len().min(400)]);
    assert_eq!(app.verify_code(&new_secret).await, "REVOKED");
    // The overview counts the rejection once the usage flush has run.
    let started = std::time::Instant::now();
    while !ann.get("/app").await.body.contains(">REVOKED<") {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the overview shows no recent failure");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Other teams' pages are not found; signing out ends the session.
    let other = Browser::new(&app);
    sign_up(&other, "Globex", "gus@globex.test").await;
    assert_eq!(other.get(&key_path).await.status, 404);
    assert_eq!(other.get(&format!("/app/consumers/{consumer_id}")).await.status, 404);
    let out = ann.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.url, "/login");
    assert_eq!(ann.get("/app").await.url, "/login");
}

/// The owner's user id (Ann's).
async fn viewer_owner(app: &TestApp) -> String {
    keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann").id
}

async fn sign_in_is_throttled_and_passwords_reset(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let cookie = app.client.get(app.url("/login")).send().await.expect("sent");
    assert!(cookie.status().is_success());

    let eve = Browser::new(&app);
    let csrf = eve.get("/login").await.csrf();
    for _ in 0..5 {
        let p =
            eve.post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "wrong wrong wrong")]).await;
        assert_eq!(p.status, 401);
        assert!(p.body.contains("do not match"));
    }
    let p =
        eve.post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "correct horse battery")]).await;
    assert_eq!(p.status, 429, "throttled even with the right password");

    // A reset link sets a new password once; old sessions end.
    let user = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    let token = keyroll::store::accounts::start_reset(&app.state.db, &user.id, chrono::TimeDelta::hours(1))
        .await
        .expect("token");
    let form = eve.get(&format!("/reset/{token}")).await;
    assert_eq!(form.status, 200);
    let short = eve.post(&format!("/reset/{token}"), &[("csrf", &form.csrf()), ("password", "short")]).await;
    assert_eq!(short.status, 422);
    let done =
        eve.post(&format!("/reset/{token}"), &[("csrf", &form.csrf()), ("password", "a brand new password")]).await;
    assert_eq!(done.url, "/login");
    assert!(done.body.contains("Your password was changed"));
    assert_eq!(
        eve.post(&format!("/reset/{token}"), &[("csrf", &form.csrf()), ("password", "another new one!")]).await.status,
        404,
        "once"
    );
    assert_eq!(ann.get("/app").await.url, "/login", "the old session ended");
    let fresh = Browser::new(&app);
    let csrf = fresh.get("/login").await.csrf();
    let ok = fresh
        .post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "a brand new password")])
        .await;
    assert_eq!(ok.url, "/app");
}

crate::both_backends!(dashboard, dashboard_flows);
crate::both_backends!(dashboard_passwords, passwords_without_email);

/// Without email: `/forgot` says no link can come and how else to get one; a signed-in person
/// changes their password with the current one, which signs out their other sessions.
async fn passwords_without_email(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let other = Browser::new(&app);
    let csrf = other.get("/login").await.csrf();
    let signed = other
        .post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    assert_eq!(signed.url, "/app");

    let forgot = Browser::new(&app).get("/forgot").await;
    assert!(forgot.body.contains("This install sends no email") && forgot.body.contains("password-reset link"));
    assert!(!forgot.body.contains("is on its way"));

    let account = ann.get("/app/account").await;
    let csrf = account.csrf();
    let wrong = ann
        .post("/app/account/password", &[("csrf", &csrf), ("current", "not it at all"), ("new_password", "short")])
        .await;
    assert_eq!(wrong.status, 422);
    assert!(
        wrong.body.contains("This is not your current password.") && wrong.body.contains("Use 10 to 128 characters.")
    );
    let form =
        [("csrf", csrf.as_str()), ("current", "correct horse battery"), ("new_password", "a brand new password")];
    let changed = ann.post("/app/account/password", &form).await;
    assert!(
        changed.body.contains("Your password was changed, and 1 other session(s) were signed out."),
        "{}",
        changed.body
    );
    assert_eq!(ann.get("/app").await.url, "/app", "this session goes on");
    assert_eq!(other.get("/app").await.url, "/login", "the other session ended");
    let again = Browser::new(&app);
    let csrf = again.get("/login").await.csrf();
    let old = again
        .post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "correct horse battery")])
        .await;
    assert_ne!(old.url, "/app", "the old password no longer works");
    let new = again
        .post("/login", &[("csrf", &csrf), ("email", "ann@acme.test"), ("password", "a brand new password")])
        .await;
    assert_eq!(new.url, "/app");
    assert!(ann.get("/app/audit").await.body.contains("Changed their password"));
}
crate::both_backends!(dashboard_accounts, sign_in_is_throttled_and_passwords_reset);

async fn team_members_and_roles(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let team = ann.get("/app/team").await;
    assert!(team.body.contains("ann@acme.test") && team.body.contains("Invite someone"));
    let csrf = team.csrf();
    let bad = ann.post("/app/team/invite", &[("csrf", &csrf), ("email", "nope"), ("role", "developer")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("value=\"nope\""));
    let invited = ann.post("/app/team/invite", &[("csrf", &csrf), ("email", "Dan@Acme.test"), ("role", "admin")]).await;
    assert_eq!(invited.status, 200);
    // No email here: the inviter gets the link, once, and the page says why.
    assert!(invited.url.starts_with("/app/shown/"), "{}", invited.url);
    assert!(
        invited.body.contains("This install sends no email")
            && invited.body.contains("Invitation link for dan@acme.test")
    );
    let link = invited.secret("http");
    let token = link.split_once("/reset/").map(|(_, t)| t.to_owned()).expect("an invitation link");
    assert!(ann.get(&invited.location).await.status == 410, "shown once");
    let team = ann.get("/app/team").await;
    assert!(team.body.contains("dan@acme.test") && team.body.contains("invited"), "no password yet");
    let again = ann.post("/app/team/invite", &[("csrf", &csrf), ("email", "dan@acme.test"), ("role", "viewer")]).await;
    assert!(again.body.contains("already a member"));
    // Nobody can claim the invited address by signing up with it.
    let eve = Browser::new(&app);
    let form = eve.get("/signup").await;
    let claim = eve
        .post(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("team", "Evil"),
                ("name", "Eve"),
                ("email", "dan@acme.test"),
                ("password", "eve's password!"),
            ],
        )
        .await;
    assert_eq!(claim.status, 422, "an invited address cannot be signed up by someone else");
    assert!(claim.body.contains("An account with this email exists"));

    // Dan joins through the link Ann passed on, and is an admin.
    let d = Browser::new(&app);
    let form = d.get(&format!("/reset/{token}")).await;
    d.post(&format!("/reset/{token}"), &[("csrf", &form.csrf()), ("password", "dan's own password")]).await;
    let login = d.get("/login").await;
    let signed = d
        .post("/login", &[("csrf", &login.csrf()), ("email", "dan@acme.test"), ("password", "dan's own password")])
        .await;
    assert_eq!(signed.url, "/app");
    let dan = keyroll::store::accounts::user_by_email(&app.state.db, "dan@acme.test").await.expect("db").expect("dan");
    let dan_team = d.get("/app/team").await;
    assert!(dan_team.body.contains("ann@acme.test"));
    let dcsrf = dan_team.csrf();
    // An admin cannot make owners, nor touch the owner.
    let ann_id =
        keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann").id;
    assert_eq!(
        d.post("/app/team/invite", &[("csrf", &dcsrf), ("email", "eve@acme.test"), ("role", "owner")]).await.status,
        422
    );
    assert_eq!(d.post(&format!("/app/team/{ann_id}"), &[("csrf", &dcsrf), ("role", "")]).await.status, 403);
    assert_eq!(d.post(&format!("/app/team/{ann_id}"), &[("csrf", &dcsrf), ("role", "viewer")]).await.status, 403);
    let viewer = d.post("/app/team/invite", &[("csrf", &dcsrf), ("email", "vic@acme.test"), ("role", "viewer")]).await;
    assert_eq!(viewer.status, 200);
    // Without email, an admin makes a member's password link, shown once; never for the owner.
    let vic = keyroll::store::accounts::user_by_email(&app.state.db, "vic@acme.test").await.expect("db").expect("vic");
    let link = d.post(&format!("/app/team/{}/password-link", vic.id), &[("csrf", &dcsrf)]).await;
    assert!(link.url.starts_with("/app/shown/") && link.body.contains("Single-use password link for vic@acme.test"));
    assert!(link.secret("http").contains("/reset/"));
    assert_eq!(d.post(&format!("/app/team/{ann_id}/password-link"), &[("csrf", &dcsrf)]).await.status, 403);

    // The owner demotes Dan to viewer: Dan can no longer manage anyone.
    let changed = ann.post(&format!("/app/team/{}", dan.id), &[("csrf", &csrf), ("role", "viewer")]).await;
    assert!(changed.body.contains("The member is now viewer."));
    assert_eq!(
        d.post("/app/team/invite", &[("csrf", &dcsrf), ("email", "x@acme.test"), ("role", "viewer")]).await.status,
        403
    );
    let removed = ann.post(&format!("/app/team/{}", dan.id), &[("csrf", &csrf), ("role", "")]).await;
    assert!(removed.body.contains("The member was removed."));
    assert_eq!(d.get("/app").await.status, 403, "no team left for Dan");
}

crate::both_backends!(dashboard_team, team_members_and_roles);

/// A root key of Ann's team, made through the store.
pub(crate) async fn root_of(app: &TestApp) -> String {
    let ann = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    let t = keyroll::store::accounts::memberships(&app.state.db, &ann.id).await.expect("teams")[0].1.id.clone();
    let tenant = keyroll::domain::TenantId::from_trusted(t);
    let system = keyroll::store::apis::system(&app.state.db, &tenant).await.expect("system api");
    let (_, secret) = keyroll::store::keys::insert(
        &app.state.db,
        keyroll::store::keys::NewKey::root(
            tenant,
            keyroll::domain::ApiId::from_trusted(system.id),
            None,
            keyroll::domain::ScopeSet::parse_all(&["*"]).expect("scopes"),
            None,
            None,
        ),
        &keyroll::domain::KeyHead::Root,
    )
    .await
    .expect("root key");
    secret.expose().to_owned()
}

/// A 200-character name stays on one line in the lists, cut with an ellipsis, the whole of it on
/// hover.
async fn long_names_are_truncated(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let csrf = ann.get("/app").await.csrf();
    let long = "Bakery ".repeat(28) + "Ltd";
    assert!(long.chars().count() <= 200);
    let made = ann
        .post("/app/consumers", &[("csrf", &csrf), ("name", &long), ("external_id", "cus_long"), ("email", "")])
        .await;
    assert!(made.url.starts_with("/app/consumers/con_"), "{}", made.body);
    let list = ann.get("/app/consumers").await;
    assert!(list.body.contains(&format!("class=\"truncate\" title=\"{long}\">{long}</a>")), "{}", list.body);
}

crate::both_backends!(dashboard_long_names, long_names_are_truncated);

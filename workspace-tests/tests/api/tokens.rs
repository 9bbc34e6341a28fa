//! Access tokens: the OAuth 2.0 token endpoint, introspection, discovery and JWKS, and the
//! rotation of signing keys — checked here, and by PyPI's PyJWT and Authlib (independent
//! implementations) in `tokens_interop`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Made, Tenant, TestApp};

/// Asks for a token; returns status, headers and body.
pub async fn token(
    app: &TestApp,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.post(app.url("/v1/oauth/token")).form(form);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = req.send().await.expect("token request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// A JWT's header and claims, unverified.
pub fn parts(jwt: &str) -> (Value, Value) {
    let mut it = jwt.split('.');
    let mut next = || {
        let raw = URL_SAFE_NO_PAD.decode(it.next().expect("part")).expect("base64url");
        serde_json::from_slice::<Value>(&raw).expect("json")
    };
    (next(), next())
}

pub async fn lineage_of(app: &TestApp, t: &Tenant, key_id: &str) -> String {
    let (_, k) = app.get(&format!("/v1/keys/{key_id}"), &t.root).await;
    k["lineage_id"].as_str().expect("lineage").to_owned()
}

async fn introspect(app: &TestApp, root: &str, tok: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/v1/oauth/introspect"))
        .bearer_auth(root)
        .form(&[("token", tok)])
        .send()
        .await
        .expect("introspect");
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn the_token_endpoint_speaks_oauth(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({"scopes": ["orders:read", "orders:write"]})).await;
    let lineage = lineage_of(&app, &acme, &k.key_id).await;
    let grant = [("grant_type", "client_credentials")];

    let (st, h, body) = token(&app, Some(&basic(&lineage, &k.secret)), &grant).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_i64()), (Some("Bearer"), Some(900)));
    assert_eq!(body["scope"], "orders:read orders:write");
    let jwt = body["access_token"].as_str().expect("token");
    let (header, claims) = parts(jwt);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].as_str().is_some_and(|k| k.starts_with("sig_")), "{header}");
    assert_eq!(claims["iss"], format!("{}/t/{}", app.address, acme.id));
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some(k.consumer_id.as_str()), Some(k.api_id.as_str()))
    );
    assert_eq!(
        (claims["key_id"].as_str(), claims["lineage_id"].as_str()),
        (Some(k.key_id.as_str()), Some(lineage.as_str()))
    );
    assert_eq!(claims["version"], 1);
    assert_eq!(claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0), 900);
    assert!(claims["jti"].as_str().is_some_and(|j| j.starts_with("tok_")));

    // The bearer form, and client_secret_post.
    let (st, _, b) = token(&app, Some(&format!("Bearer {}", k.secret)), &grant).await;
    assert_eq!(st, 200, "{b}");
    let (st, _, b) = token(
        &app,
        None,
        &[("grant_type", "client_credentials"), ("client_id", &lineage), ("client_secret", &k.secret)],
    )
    .await;
    assert_eq!(st, 200, "{b}");

    // Scopes: a subset is granted; more than the key has is refused.
    let (st, _, b) = token(
        &app,
        Some(&basic(&lineage, &k.secret)),
        &[("grant_type", "client_credentials"), ("scope", "orders:read")],
    )
    .await;
    assert_eq!((st, b["scope"].as_str()), (200, Some("orders:read")), "{b}");
    assert_eq!(parts(b["access_token"].as_str().expect("token")).1["scope"], "orders:read");
    for scope in ["admin:all", "orders:read billing:read", "not a scope!"] {
        let (st, _, b) =
            token(&app, Some(&basic(&lineage, &k.secret)), &[("grant_type", "client_credentials"), ("scope", scope)])
                .await;
        assert_eq!((st, b["error"].as_str()), (400, Some("invalid_scope")), "{scope}: {b}");
    }

    // Client authentication failures: 401 invalid_client, with a challenge.
    let other = app.make_key(&acme, "acme", json!({})).await;
    let other_lineage = lineage_of(&app, &acme, &other.key_id).await;
    for auth in [
        Some(basic(&other_lineage, &k.secret)),
        Some(basic(&lineage, "acme_live_0000000000000000000000000000000000000000")),
        Some(basic(&lineage, "nonsense")),
        Some("Bearer acme_live_nope".to_owned()),
        Some("Basic !!!".to_owned()),
        None,
    ] {
        let (st, h, b) = token(&app, auth.as_deref(), &grant).await;
        assert_eq!((st, b["error"].as_str()), (401, Some("invalid_client")), "{auth:?}: {b}");
        assert!(b["error_description"].is_string());
        if auth.as_deref().is_some_and(|a| a.starts_with("Basic")) {
            assert!(h.get("www-authenticate").is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Basic"))));
        }
    }

    // Malformed requests.
    let auth = basic(&lineage, &k.secret);
    let (st, _, b) = token(&app, Some(&auth), &[("grant_type", "password")]).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("unsupported_grant_type")), "{b}");
    let (st, _, b) = token(&app, Some(&auth), &[]).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_request")), "{b}");
    let (st, _, b) =
        token(&app, Some(&auth), &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")]).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("invalid_request")), "{b}");
    let res = app
        .client
        .post(app.url("/v1/oauth/token"))
        .header("authorization", &auth)
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(res.json::<Value>().await.expect("json")["error"], "invalid_request");

    // The API's token lifetime.
    let (st, b) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{}", k.api_id),
            &acme.root,
            Some(json!({"token_ttl_seconds": 120})),
        )
        .await;
    assert_eq!((st, b["token_ttl_seconds"].as_i64()), (200, Some(120)), "{b}");
    let (_, _, b) = token(&app, Some(&auth), &grant).await;
    assert_eq!(b["expires_in"], 120, "{b}");
    for bad in [30, 901, -1] {
        let (st, b) = app
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/apis/{}", k.api_id),
                &acme.root,
                Some(json!({"token_ttl_seconds": bad})),
            )
            .await;
        assert_eq!((st, b["errors"][0]["field"].as_str()), (400, Some("token_ttl_seconds")), "{b}");
    }

    // A key that would not verify VALID gets no token.
    let disabled = app.make_key(&acme, "acme", json!({"enabled": false})).await;
    let (st, _, b) = token(&app, Some(&format!("Bearer {}", disabled.secret)), &grant).await;
    assert_eq!((st, b["error"].as_str()), (401, Some("invalid_client")), "{b}");
    let limited = app.make_key(&acme, "acme", json!({"ratelimit": {"limit": 1, "window_seconds": 60}})).await;
    let bearer = format!("Bearer {}", limited.secret);
    crate::helpers::clear_of_window_end(60).await;
    assert_eq!(token(&app, Some(&bearer), &grant).await.0, 200);
    let (st, h, b) = token(&app, Some(&bearer), &grant).await;
    assert_eq!(st, 429, "{b}");
    assert!(h.get("retry-after").is_some());
    let spent = app.make_key(&acme, "acme", json!({"credits": {"remaining": 1}})).await;
    let bearer = format!("Bearer {}", spent.secret);
    assert_eq!(token(&app, Some(&bearer), &grant).await.0, 200);
    let (st, _, b) = token(&app, Some(&bearer), &grant).await;
    assert_eq!((st, b["error"].as_str()), (400, Some("unauthorized_client")), "{b}");
    // A root key is not a client.
    let (st, _, b) = token(&app, Some(&format!("Bearer {}", acme.root)), &grant).await;
    assert_eq!((st, b["error"].as_str()), (401, Some("invalid_client")), "{b}");

    // Issuing counts as a verification of the key.
    let started = std::time::Instant::now();
    loop {
        let (_, u) = app.get(&format!("/v1/keys/{}/usage?granularity=minute", spent.key_id), &acme.root).await;
        if u["totals"]["VALID"] == 1 && u["totals"]["USAGE_EXCEEDED"] == 1 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{u}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
both_backends!(token_endpoint, the_token_endpoint_speaks_oauth);

async fn introspection_follows_the_key_behind_the_token(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    let grant = [("grant_type", "client_credentials")];
    let (_, _, b) = token(&app, Some(&format!("Bearer {}", k.secret)), &grant).await;
    let jwt = b["access_token"].as_str().expect("token").to_owned();

    let (st, i) = introspect(&app, &acme.root, &jwt).await;
    assert_eq!((st, i["active"].as_bool()), (200, Some(true)), "{i}");
    assert_eq!((i["key_id"].as_str(), i["sub"].as_str()), (Some(k.key_id.as_str()), Some(k.consumer_id.as_str())));
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(i["scope"], "orders:*");
    // Another tenant's root key learns nothing; garbage is merely inactive.
    assert_eq!(introspect(&app, &umbrella.root, &jwt).await.1, json!({"active": false}));
    for junk in ["", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", &jwt[..jwt.len() - 4]] {
        assert_eq!(introspect(&app, &acme.root, junk).await.1, json!({"active": false}), "{junk}");
    }
    // A tampered payload with the right signature fails.
    let mut segs: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let (_, mut claims) = parts(&jwt);
    claims["scope"] = json!("*");
    segs[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_eq!(introspect(&app, &acme.root, &segs.join(".")).await.1, json!({"active": false}));
    // No root key, or a root key without keys:read.
    let res = app.client.post(app.url("/v1/oauth/introspect")).form(&[("token", &jwt)]).send().await.expect("sent");
    assert_eq!(res.status().as_u16(), 401);
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"name": "n", "scopes": ["apis:read"]})).await;
    let narrow = narrow["secret"].as_str().expect("secret");
    assert_eq!(introspect(&app, narrow, &jwt).await.0, 403);

    // Revoking the key makes the token inactive at once, though it has not expired.
    let (st, _) = app.post(&format!("/v1/keys/{}/revoke", k.key_id), &acme.root, json!({"reason": "test"})).await;
    assert_eq!(st, 200);
    assert_eq!(introspect(&app, &acme.root, &jwt).await.1, json!({"active": false}));
    // Disabled likewise.
    let d = app.make_key(&acme, "acme", json!({})).await;
    let (_, _, b) = token(&app, Some(&format!("Bearer {}", d.secret)), &grant).await;
    let jwt = b["access_token"].as_str().expect("token").to_owned();
    assert_eq!(introspect(&app, &acme.root, &jwt).await.1["active"], true);
    let (st, _) = app
        .call(reqwest::Method::PATCH, &format!("/v1/keys/{}", d.key_id), &acme.root, Some(json!({"enabled": false})))
        .await;
    assert_eq!(st, 200);
    assert_eq!(introspect(&app, &acme.root, &jwt).await.1, json!({"active": false}));
}
both_backends!(introspection, introspection_follows_the_key_behind_the_token);

async fn jwks(app: &TestApp, tenant: &str) -> Vec<String> {
    let res = app.client.get(app.url(&format!("/t/{tenant}/.well-known/jwks.json"))).send().await.expect("jwks");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("public, max-age=60"));
    let set: Value = res.json().await.expect("json");
    set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            assert_eq!(
                (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str()),
                (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
            );
            assert!(k.get("d").is_none(), "never the private part: {k}");
            k["kid"].as_str().expect("kid").to_owned()
        })
        .collect()
}

async fn kid_of(app: &TestApp, k: &Made) -> (String, String) {
    let (st, _, b) = token(app, Some(&format!("Bearer {}", k.secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(st, 200, "{b}");
    let jwt = b["access_token"].as_str().expect("token").to_owned();
    (parts(&jwt).0["kid"].as_str().expect("kid").to_owned(), jwt)
}

async fn phases(app: &TestApp, t: &Tenant) -> Vec<(String, String)> {
    let (st, l) = app.get("/v1/signing-keys", &t.root).await;
    assert_eq!(st, 200, "{l}");
    l["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|k| (k["kid"].as_str().unwrap_or_default().to_owned(), k["phase"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

async fn signing_keys_rotate_without_downtime(app: TestApp) {
    let acme = app.tenant("Acme").await;
    let umbrella = app.tenant("Umbrella").await;
    let k = app.make_key(&acme, "acme", json!({})).await;
    assert!(phases(&app, &acme).await.is_empty(), "no key before the first token");
    assert!(jwks(&app, &acme.id).await.is_empty());

    let (first, t1) = kid_of(&app, &k).await;
    assert_eq!(phases(&app, &acme).await, vec![(first.clone(), "active".to_owned())]);
    assert_eq!(jwks(&app, &acme.id).await, vec![first.clone()]);

    // Discovery.
    let res =
        app.client.get(app.url(&format!("/t/{}/.well-known/openid-configuration", acme.id))).send().await.expect("d");
    assert_eq!(res.status().as_u16(), 200);
    let d: Value = res.json().await.expect("json");
    let issuer = format!("{}/t/{}", app.address, acme.id);
    assert_eq!(d["issuer"], issuer.as_str());
    assert_eq!(d["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(d["token_endpoint"], app.url("/v1/oauth/token"));
    assert_eq!(d["grant_types_supported"], json!(["client_credentials"]));
    for missing in ["ten_01jz0000000000000000000000", "nonsense"] {
        let res = app.client.get(app.url(&format!("/t/{missing}/.well-known/jwks.json"))).send().await.expect("sent");
        assert_eq!(res.status().as_u16(), 404, "{missing}");
    }

    // A rotation publishes the next key first; the current one keeps signing.
    let (st, next) = app.post("/v1/signing-keys/rotate", &acme.root, json!({"lead_seconds": 3600})).await;
    assert_eq!((st, next["phase"].as_str()), (201, Some("published")), "{next}");
    let second = next["kid"].as_str().expect("kid").to_owned();
    assert_eq!(jwks(&app, &acme.id).await.len(), 2);
    assert_eq!(kid_of(&app, &k).await.0, first, "the old key signs until the new one activates");
    let (st, b) = app.post("/v1/signing-keys/rotate", &acme.root, json!({})).await;
    assert_eq!(st, 409, "one waiting key at a time: {b}");
    let (st, b) = app.post("/v1/signing-keys/rotate", &acme.root, json!({"lead_seconds": 700_000})).await;
    assert_eq!((st, b["errors"][0]["field"].as_str()), (400, Some("lead_seconds")));
    // Revoking the waiting key leaves the current one signing.
    let (st, r) = app.post(&format!("/v1/signing-keys/{second}/revoke"), &acme.root, json!({})).await;
    assert_eq!((st, r["phase"].as_str()), (200, Some("revoked")), "{r}");
    assert_eq!(jwks(&app, &acme.id).await, vec![first.clone()]);
    assert_eq!(kid_of(&app, &k).await.0, first);

    // With no lead the new key signs at once; the old one stays published for its tokens.
    let (_, next) = app.post("/v1/signing-keys/rotate", &acme.root, json!({"lead_seconds": 0})).await;
    let third = next["kid"].as_str().expect("kid").to_owned();
    assert_eq!(next["phase"], "active", "{next}");
    let (kid, t3) = kid_of(&app, &k).await;
    assert_eq!(kid, third);
    let listed = phases(&app, &acme).await;
    assert!(listed.contains(&(first.clone(), "retiring".to_owned())), "{listed:?}");
    assert_eq!(jwks(&app, &acme.id).await.len(), 2);
    assert_eq!(introspect(&app, &acme.root, &t1).await.1["active"], true, "a retiring key's tokens hold");

    // Emergency: revoking the retiring key withdraws it and fails its tokens at once.
    let (st, _) = app.post(&format!("/v1/signing-keys/{first}/revoke"), &acme.root, json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(jwks(&app, &acme.id).await, vec![third.clone()]);
    assert_eq!(introspect(&app, &acme.root, &t1).await.1, json!({"active": false}));
    assert_eq!(introspect(&app, &acme.root, &t3).await.1["active"], true);
    // Revoking the active key puts a new one in its place at once.
    let (st, _) = app.post(&format!("/v1/signing-keys/{third}/revoke"), &acme.root, json!({})).await;
    assert_eq!(st, 200);
    let (fourth, _) = kid_of(&app, &k).await;
    assert!(![first.as_str(), second.as_str(), third.as_str()].contains(&fourth.as_str()));
    assert_eq!(jwks(&app, &acme.id).await, vec![fourth.clone()]);
    assert_eq!(introspect(&app, &acme.root, &t3).await.1, json!({"active": false}));

    // Another tenant cannot see or touch these keys; a narrow root key may not.
    assert!(phases(&app, &umbrella).await.is_empty());
    let (st, _) = app.post(&format!("/v1/signing-keys/{fourth}/revoke"), &umbrella.root, json!({})).await;
    assert_eq!(st, 404);
    let (_, narrow) = app.post("/v1/root-keys", &acme.root, json!({"name": "n", "scopes": ["keys:read"]})).await;
    let narrow = narrow["secret"].as_str().expect("secret");
    assert_eq!(app.get("/v1/signing-keys", narrow).await.0, 403);
    assert_eq!(app.post("/v1/signing-keys/rotate", narrow, json!({})).await.0, 403);
    // Every step is in the audit log.
    let (_, audit) = app.get("/v1/audit-events?limit=50", &acme.root).await;
    let actions: Vec<&str> =
        audit["data"].as_array().expect("data").iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["signing_key.created", "signing_key.rotated", "signing_key.revoked"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}
both_backends!(signing_keys, signing_keys_rotate_without_downtime);

/// Runs the interop script; `None` when PyJWT or Authlib is missing (a failure with
/// `KEYROLL_TEST_REQUIRE_SERVICES=1`).
fn python(args: &[&str]) -> Option<Value> {
    let has =
        std::process::Command::new("python3").args(["-c", "import jwt, authlib, requests, cryptography"]).status();
    if !has.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("KEYROLL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PyPI's pyjwt[crypto] and authlib are required (pip install 'pyjwt[crypto]' authlib requests)"
        );
        eprintln!("skipping the token interop test: PyPI's pyjwt[crypto] or authlib is not installed");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/oauth_client.py");
    let out = std::process::Command::new("python3").arg(script).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
}

/// Authlib's OAuth 2.0 client gets the tokens; PyJWT's `PyJWKClient` checks them against the
/// JWKS URL across a signing-key rotation and an emergency revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_libraries_get_and_check_tokens_across_a_rotation() {
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let acme = app.tenant("Acme").await;
    let k = app.make_key(&acme, "acme", json!({"scopes": ["orders:read", "orders:write"]})).await;
    let lineage = lineage_of(&app, &acme, &k.key_id).await;
    let issuer = format!("{}/t/{}", app.address, acme.id);
    let jwks_url = format!("{issuer}/.well-known/jwks.json");
    let base = app.address.clone();
    let fetch = |scope: Option<&'static str>| {
        let (base, lineage, secret) = (base.clone(), lineage.clone(), k.secret.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["fetch", base.as_str(), lineage.as_str(), secret.as_str()];
            args.extend(scope);
            python(&args)
        })
    };
    let Some(t1) = fetch(Some("orders:read")).await.expect("joined") else { return };
    assert_eq!((t1["token_type"].as_str(), t1["scope"].as_str()), (Some("Bearer"), Some("orders:read")), "{t1}");
    let t1 = t1["access_token"].as_str().expect("token").to_owned();
    let check = |tokens: Vec<String>| {
        let (jwks_url, issuer, aud) = (jwks_url.clone(), issuer.clone(), k.api_id.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["verify", jwks_url.as_str(), issuer.as_str(), aud.as_str()];
            args.extend(tokens.iter().map(String::as_str));
            python(&args).expect("checked")
        })
    };
    let v = check(vec![t1.clone()]).await.expect("joined");
    assert_eq!(v[0]["sub"], k.consumer_id.as_str(), "{v}");
    assert_eq!(v[0]["scope"], "orders:read");

    // Rotate with no lead: tokens from before and after both verify.
    let (st, _) = app.post("/v1/signing-keys/rotate", &acme.root, json!({"lead_seconds": 0})).await;
    assert_eq!(st, 201);
    let t2 = fetch(None).await.expect("joined").expect("fetched");
    let t2 = t2["access_token"].as_str().expect("token").to_owned();
    assert_ne!(parts(&t1).0["kid"], parts(&t2).0["kid"]);
    let v = check(vec![t1.clone(), t2.clone()]).await.expect("joined");
    assert!(v[0]["error"].is_null() && v[1]["error"].is_null(), "{v}");
    assert_eq!(v[1]["scope"], "orders:read orders:write");

    // A token for another audience, or from another issuer, is refused by the library.
    let wrong_aud = {
        let (jwks_url, issuer) = (jwks_url.clone(), issuer.clone());
        let t = t2.clone();
        tokio::task::spawn_blocking(move || {
            python(&["verify", &jwks_url, &issuer, "api_someone_else", &t]).expect("ran")
        })
        .await
        .expect("joined")
    };
    assert!(wrong_aud[0]["error"].as_str().is_some_and(|e| e.contains("Audience")), "{wrong_aud}");

    // Revoking the old signing key fails its tokens at once; the new key's hold.
    let old_kid = parts(&t1).0["kid"].as_str().expect("kid").to_owned();
    let (st, _) = app.post(&format!("/v1/signing-keys/{old_kid}/revoke"), &acme.root, json!({})).await;
    assert_eq!(st, 200);
    let v = check(vec![t1, t2]).await.expect("joined");
    assert!(v[0]["error"].is_string(), "{v}");
    assert!(v[1]["error"].is_null(), "{v}");
}

/// The schedule: a key 30 days old (less the lead) gets a successor published an hour before it
/// signs, once; a team whose key is young gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_replaced_on_schedule() {
    use keyroll::store::entities::signing_key;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await else { return };
    let old = app.tenant("Acme").await;
    let young = app.tenant("Umbrella").await;
    for t in [&old, &young] {
        let k = app.make_key(t, if t.id == old.id { "acme" } else { "umb" }, json!({})).await;
        kid_of(&app, &k).await;
    }
    let aged = chrono::Utc::now() - chrono::TimeDelta::days(30) + chrono::TimeDelta::minutes(30);
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::ActivatesAt, sea_orm::sea_query::Expr::value(aged))
        .filter(signing_key::Column::TenantId.eq(old.id.as_str()))
        .exec(&app.state.db)
        .await
        .expect("aged");
    for _ in 0..2 {
        keyroll::app::signing_keys::scheduled(&app.state).await.expect("scheduled");
    }
    let listed = phases(&app, &old).await;
    assert_eq!(listed.len(), 2, "one successor, not two: {listed:?}");
    assert_eq!(listed[0].1, "published", "{listed:?}");
    assert_eq!(listed[1].1, "active");
    let (_, l) = app.get("/v1/signing-keys", &old.root).await;
    let activates =
        chrono::DateTime::parse_from_rfc3339(l["data"][0]["activates_at"].as_str().expect("t")).expect("time");
    let lead = activates.signed_duration_since(chrono::Utc::now()).num_minutes();
    assert!((58..=60).contains(&lead), "published an hour before it signs: {lead}");
    assert_eq!(phases(&app, &young).await.len(), 1, "a young key is left alone");
    let (_, audit) = app.get("/v1/audit-events?action=signing_key.rotated", &old.root).await;
    assert_eq!(audit["data"][0]["actor"], "system", "{audit}");
}

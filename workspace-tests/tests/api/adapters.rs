//! The same bad input through the management API and through the dashboard's forms: one verdict.

use keyroll::domain::TenantId;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::dashboard::{Browser, create_key, root_of, sign_up};
use crate::helpers::TestApp;

/// The same bad input, through the management API and through the dashboard's forms, is
/// refused alike: the same fields, no change made.
async fn adapters_agree(app: TestApp) {
    let ann = Browser::new(&app);
    sign_up(&ann, "Acme", "ann@acme.test").await;
    let root = root_of(&app).await;
    let csrf = ann.get("/app").await.csrf();
    let (_, api) = app
        .post(
            "/v1/apis",
            &root,
            json!({"name": "Orders", "key_prefix": "agree", "environment": "live", "scope_catalogue": ["orders:read"]}),
        )
        .await;
    let api_id = api["id"].as_str().expect("api").to_owned();
    let (_, con) = app.post("/v1/consumers", &root, json!({"external_id": "cus_1", "name": "Bob"})).await;
    let consumer_id = con["id"].as_str().expect("consumer").to_owned();
    let tenant = tenant_of(&app).await;
    let count_keys = || {
        keyroll::store::entities::key::Entity::find()
            .filter(keyroll::store::entities::key::Column::TenantId.eq(tenant.as_str()))
            .count(&app.state.db)
    };
    let before = count_keys().await.expect("keys");

    // A scope outside the API's catalogue; a name of 201 characters.
    let long = "n".repeat(201);
    for (scopes, name, field) in
        [("billing:read", "prod", "scopes"), ("orders:read", long.as_str(), "name"), ("Not A Scope", "prod", "scopes")]
    {
        let (st, p) = app
            .post(
                "/v1/keys",
                &root,
                json!({"api_id": api_id, "consumer_id": consumer_id, "name": name, "scopes": [scopes]}),
            )
            .await;
        assert_eq!(st, 400, "{p}");
        assert!(p["errors"][0]["field"].as_str().is_some_and(|f| f.starts_with(field)), "{p}");
        let form = [
            ("csrf", csrf.as_str()),
            ("consumer_id", consumer_id.as_str()),
            ("api_id", api_id.as_str()),
            ("name", name),
            ("scopes", scopes),
            ("expires_days", ""),
        ];
        let page = ann.post("/app/keys", &form).await;
        assert_eq!(page.status, 422, "{scopes} / {}: the dashboard refuses it too", name.len());
        assert!(page.body.contains(&format!("id=\"{field}-error\"")) || page.body.contains("aria-invalid=\"true\""));
    }
    // The catalogue's own scopes are accepted by both.
    let made = create_key(&ann, &csrf, &consumer_id, "orders:read").await;
    assert!(made.body.contains("Key created"), "{}", made.body);

    // Root-key scopes: an unknown one is refused by both, not dropped.
    let (st, p) = app.post("/v1/root-keys", &root, json!({"name": "CI", "scopes": ["keys:read", "keys:fly"]})).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("scopes[1]")), "{p}");
    let page = ann
        .post("/app/root-keys", &[("csrf", &csrf), ("name", "CI"), ("scope", "keys:read"), ("scope", "keys:fly")])
        .await;
    assert_eq!(page.status, 422, "the dashboard refuses the unknown scope instead of dropping it");

    // A revoke reason over 500 characters.
    let reason = "r".repeat(501);
    let key_id = made.link("/app/keys/").trim_start_matches("/app/keys/").to_owned();
    let (st, p) = app.post(&format!("/v1/keys/{key_id}/revoke"), &root, json!({"reason": reason})).await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("reason")));
    let start = app.get(&format!("/v1/keys/{key_id}"), &root).await.1["start"].as_str().expect("start").to_owned();
    let page = ann
        .post(&format!("/app/keys/{key_id}/revoke"), &[("csrf", &csrf), ("reason", &reason), ("confirm", &start)])
        .await;
    assert_eq!(page.status, 422);

    // A leak-policy grace above a day.
    let (st, p) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/apis/{api_id}"),
            &root,
            Some(json!({"leak_policy": {"action": "rotate", "grace_seconds": 86_460}})),
        )
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("leak_policy.grace_seconds")));
    let page = ann
        .post(&format!("/app/apis/{api_id}/leak-policy"), &[("csrf", &csrf), ("action", "rotate"), ("minutes", "1441")])
        .await;
    assert_eq!(page.status, 422);

    // An unknown event type for a webhook endpoint.
    let (st, p) = app
        .post("/v1/webhook-endpoints", &root, json!({"url": "http://127.0.0.1:9/h", "event_types": ["key.nope"]}))
        .await;
    assert_eq!((st, p["errors"][0]["field"].as_str()), (400, Some("event_types[0]")));
    let page = ann
        .post("/app/webhooks", &[("csrf", &csrf), ("url", "http://127.0.0.1:9/h"), ("event_types", "key.nope")])
        .await;
    assert_eq!(page.status, 422);

    // Nothing was made by any refused input: one key more, the one accepted.
    let after = count_keys().await.expect("keys");
    assert_eq!(after, before + 1);
}

async fn tenant_of(app: &TestApp) -> TenantId {
    let ann = keyroll::store::accounts::user_by_email(&app.state.db, "ann@acme.test").await.expect("db").expect("ann");
    TenantId::from_trusted(
        keyroll::store::accounts::memberships(&app.state.db, &ann.id).await.expect("teams")[0].1.id.clone(),
    )
}

crate::both_backends!(adapters_give_one_verdict, adapters_agree);

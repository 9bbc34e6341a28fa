//! The API page as the hub of a keyspace, the full key form, editing keys and consumers, and
//! the header's search — as a browser without JavaScript uses them.

use serde_json::Value;

use crate::dashboard::{Page, ann_with_a_key, root_of};
use crate::helpers::TestApp;

/// The management API's view of a key.
async fn key_json(app: &TestApp, root: &str, id: &str) -> Value {
    app.get(&format!("/v1/keys/{id}"), root).await.1
}

async fn key_count(app: &TestApp, root: &str) -> usize {
    app.get("/v1/keys?limit=100", root).await.1["data"].as_array().expect("data").len()
}

/// The text of the element with this id and a little after it.
fn near<'a>(page: &'a Page, id: &str) -> &'a str {
    let at = page.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id}: {}", page.body));
    let end = (at..=(at + 300).min(page.body.len())).rev().find(|i| page.body.is_char_boundary(*i)).unwrap_or(at);
    &page.body[at..end]
}

fn api_id_of(page: &Page) -> String {
    page.link("/app/apis/api_").trim_start_matches("/app/apis/").split(['?', '#']).next().expect("id").to_owned()
}

async fn the_api_page_is_the_hub(app: TestApp) {
    let (ann, csrf, consumer_id, first_key) = ann_with_a_key(&app).await;
    let root = root_of(&app).await;
    let key_page = ann.get(&format!("/app/keys/{first_key}")).await;
    let api_id = api_id_of(&key_page);

    // The API page lists its keys and offers "Create key" preset to it.
    let hub = ann.get(&format!("/app/apis/{api_id}")).await;
    assert_eq!(hub.status, 200);
    assert!(hub.body.contains(&format!("href=\"/app/keys/new?api_id={api_id}\"")), "{}", hub.body);
    assert!(hub.body.contains(&format!("href=\"/app/keys/{first_key}\"")));
    assert!(hub.body.contains("href=\"/app/consumers/con_"), "each key names its consumer");

    // Create key from there: the page first asks who the key is for, with a server-side search.
    let pick = ann.get(&format!("/app/keys/new?api_id={api_id}")).await;
    assert!(pick.body.contains("Who is the key for?"), "{}", pick.body);
    let found = ann.get(&format!("/app/keys/new?api_id={api_id}&consumer_q=cus_1")).await;
    let chosen = format!("/app/keys/new?consumer={consumer_id}&amp;api_id={api_id}");
    assert!(found.body.contains(&chosen), "{}", found.body);
    let none = ann.get(&format!("/app/keys/new?api_id={api_id}&consumer_q=nobody")).await;
    assert!(none.body.contains("No consumer matches"));
    let form = ann.get(&format!("/app/keys/new?consumer={consumer_id}&api_id={api_id}")).await;
    assert!(form.body.contains(&format!("<option value=\"{api_id}\" selected>")), "the API it came from is chosen");
    for field in ["rl_limit", "rl_per", "credits", "refill_amount", "refill_interval", "ip_allowlist", "meta"] {
        assert!(form.body.contains(&format!("name=\"{field}\"")), "{field} is on the form");
    }

    // Every mistake of the form is reported at once, each in its field's unit; nothing is made.
    let before = key_count(&app, &root).await;
    let bad = ann
        .post(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("consumer_id", &consumer_id),
                ("api_id", &api_id),
                ("name", "partner"),
                ("scopes", "orders:read, Bad Scope"),
                ("rl_limit", "0"),
                ("rl_per", "40"),
                ("rl_unit", "day"),
                ("credits", "-5"),
                ("refill_interval", "weekly"),
                ("ip_allowlist", "10.0.0.0/8\nnot-an-ip"),
                ("meta", "{\"plan\": "),
                ("expires_days", "0"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    for (field, says) in [
        ("rl-limit-error", "from 1 to 1 000 000 000"),
        ("rl-per-error", "31 days"),
        ("refill-interval-error", "never, daily or monthly"),
        ("ip-error", "not-an-ip"),
        ("meta-error", "not valid JSON"),
        ("exp-error", "1 to 3650"),
        ("scopes-error", "“Bad”"),
    ] {
        assert!(near(&bad, field).contains(says), "{field} says {says}: {}", near(&bad, field));
    }
    assert!(bad.body.contains("value=\"partner\""), "what was typed stays");
    assert_eq!(key_count(&app, &root).await, before, "nothing was created");

    // The same form, right, makes a key with every setting.
    let made = ann
        .post(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("consumer_id", &consumer_id),
                ("api_id", &api_id),
                ("name", "partner"),
                ("scopes", "orders:read"),
                ("rl_limit", "100"),
                ("rl_per", "1"),
                ("rl_unit", "minute"),
                ("credits", "1 000"),
                ("refill_amount", "1000"),
                ("refill_interval", "monthly"),
                ("ip_allowlist", "10.0.0.0/8\n127.0.0.1"),
                ("meta", "{\"plan\": \"pro\"}"),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert!(made.url.starts_with("/app/shown/"), "{}", made.body);
    let key_id = made.link("/app/keys/key_").trim_start_matches("/app/keys/").to_owned();
    let k = key_json(&app, &root, &key_id).await;
    assert_eq!(k["ratelimit"], serde_json::json!({"limit": 100, "window_seconds": 60}), "{k}");
    assert_eq!(k["credits"]["remaining"], 1000, "{k}");
    assert_eq!(k["credits"]["refill"]["interval"], "monthly");
    assert_eq!(k["ip_allowlist"], serde_json::json!(["10.0.0.0/8", "127.0.0.1/32"]));
    assert_eq!(k["meta"], serde_json::json!({"plan": "pro"}));
    assert!(k["expires_at"].is_string());

    // The API page filters by state and finds keys by their start or name.
    let start = k["start"].as_str().expect("start").to_owned();
    let by_start = ann.get(&format!("/app/apis/{api_id}?q={start}")).await;
    assert!(by_start.body.contains(&format!("href=\"/app/keys/{key_id}\"")), "{}", by_start.body);
    assert!(!by_start.body.contains(&format!("href=\"/app/keys/{first_key}\"")), "only the match");
    let by_name = ann.get(&format!("/app/apis/{api_id}?q=PARTN")).await;
    assert!(by_name.body.contains(&format!("href=\"/app/keys/{key_id}\"")));
    let revoked = ann.get(&format!("/app/apis/{api_id}?state=revoked")).await;
    assert!(revoked.body.contains("No key matches"), "{}", revoked.body);

    // Paginated: 25 a page, with a link to the next that keeps the filter.
    for i in 0..25 {
        let name = format!("bulk {i}");
        let r = ann
            .post(
                "/app/keys",
                &[("csrf", &csrf), ("consumer_id", &consumer_id), ("api_id", &api_id), ("name", &name), ("scopes", "")],
            )
            .await;
        assert!(r.url.starts_with("/app/shown/"), "{}", r.body);
    }
    let first_page = ann.get(&format!("/app/apis/{api_id}?state=valid")).await;
    let next = first_page.link(&format!("/app/apis/{api_id}?q=&amp;state=valid&amp;cursor="));
    let second = ann.get(&next.replace("&amp;", "&")).await;
    assert!(second.body.contains(&format!("href=\"/app/keys/{first_key}\"")), "the oldest key is on page two");
    assert!(!first_page.body.contains(&format!("href=\"/app/keys/{first_key}\"")));

    // The header search finds keys by start, consumers by external id, APIs by name.
    let s = ann.get(&format!("/app/search?q={start}")).await;
    assert!(s.body.contains(&format!("href=\"/app/keys/{key_id}\"")), "{}", s.body);
    let s = ann.get("/app/search?q=cus_1").await;
    assert!(s.body.contains(&format!("href=\"/app/consumers/{consumer_id}\"")));
    let s = ann.get("/app/search?q=orders").await;
    assert!(s.body.contains(&format!("href=\"/app/apis/{api_id}\"")));
    let s = ann.get("/app/search?q=%25%25nothing").await;
    assert!(s.body.contains("Nothing matches"), "a % is searched for as itself");

    // A key can be created disabled, as the API allows.
    let off = ann
        .post(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("consumer_id", &consumer_id),
                ("api_id", &api_id),
                ("name", "later"),
                ("disabled", "on"),
            ],
        )
        .await;
    let off_id = off.link("/app/keys/key_").trim_start_matches("/app/keys/").to_owned();
    assert_eq!(key_json(&app, &root, &off_id).await["enabled"], false);
}

crate::both_backends!(dashboard_api_hub, the_api_page_is_the_hub);

async fn keys_and_consumers_are_edited(app: TestApp) {
    let (ann, csrf, consumer_id, key_id) = ann_with_a_key(&app).await;
    let root = root_of(&app).await;
    let page = ann.get(&format!("/app/keys/{key_id}")).await;
    assert!(page.body.contains(&format!("action=\"/app/keys/{key_id}/settings#settings\"")), "{}", page.body);

    // Credits set once are not reset by saving another field.
    let set = [
        ("csrf", csrf.as_str()),
        ("name", "renamed"),
        ("scopes", ""),
        ("rl_limit", "5"),
        ("rl_per", "2"),
        ("rl_unit", "hour"),
        ("credits", "10"),
        ("ip_allowlist", ""),
        ("meta", "{\"tier\": 2}"),
        ("expires", ""),
    ];
    let saved = ann.post(&format!("/app/keys/{key_id}/settings"), &set).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let k = key_json(&app, &root, &key_id).await;
    assert_eq!((k["name"].as_str(), &k["ratelimit"]["window_seconds"]), (Some("renamed"), &Value::from(7200)), "{k}");
    let again = ann.get(&format!("/app/keys/{key_id}")).await;
    assert!(again.body.contains("name=\"rl_per\" inputmode=\"numeric\" value=\"2\""), "filled back in hours");

    // A bad field changes nothing, and the form keeps what was typed.
    let mut bad = set.to_vec();
    bad[1] = ("name", "again");
    bad[8] = ("meta", "[]");
    bad[9] = ("expires", "2001-01-01T00:00");
    let refused = ann.post(&format!("/app/keys/{key_id}/settings"), &bad).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("Enter a JSON object") && refused.body.contains("in the future"), "{}", refused.body);
    assert!(refused.body.contains("value=\"again\""));
    assert_eq!(key_json(&app, &root, &key_id).await["name"], "renamed", "nothing saved");

    // The consumer: name, external id, email and metadata; a taken external id is refused.
    ann.post("/app/consumers", &[("csrf", &csrf), ("name", "Other"), ("external_id", "cus_2"), ("email", "")]).await;
    let edit = |x: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("name", "Bob Ltd".into()),
            ("external_id", x.into()),
            ("email", "bob@example.test".into()),
            ("meta", "{\"tier\": \"gold\"}".into()),
        ]
    };
    let taken = ann
        .post(
            &format!("/app/consumers/{consumer_id}"),
            &edit("cus_2").iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(taken.status, 422);
    assert!(taken.body.contains("external_id exists already"), "{}", taken.body);
    let ok = ann
        .post(
            &format!("/app/consumers/{consumer_id}"),
            &edit("cus_9").iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("<h1>Bob Ltd</h1>") && ok.body.contains("cus_9"), "{}", ok.body);
    let (_, c) = app.get(&format!("/v1/consumers/{consumer_id}"), &root).await;
    assert_eq!((c["external_id"].as_str(), c["meta"]["tier"].as_str()), (Some("cus_9"), Some("gold")));
}

crate::both_backends!(dashboard_edit, keys_and_consumers_are_edited);

async fn api_settings_in_one_form(app: TestApp) {
    let (ann, csrf, _, key_id) = ann_with_a_key(&app).await;
    let api_id = api_id_of(&ann.get(&format!("/app/keys/{key_id}")).await);
    let path = format!("/app/apis/{api_id}");
    let form = |name: &'static str, days: &'static str, hours: &'static str, minutes: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", name.to_owned()),
            ("scope_catalogue", "orders:read, orders:write".to_owned()),
            ("rl_limit", "1000".to_owned()),
            ("rl_per", "1".to_owned()),
            ("rl_unit", "minute".to_owned()),
            ("policy", "every".to_owned()),
            ("policy_days", days.to_owned()),
            ("policy_overlap_hours", hours.to_owned()),
            ("leak_action", "rotate".to_owned()),
            ("leak_minutes", minutes.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let ann = &ann;
        let path = path.clone();
        async move { ann.post(&path, &f.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await }
    };

    // Every error at once, in the field's unit; nothing saved.
    let bad = send(form("", "0", "0.1", "99999")).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    for (id, says) in [
        ("name-error", "Name"),
        ("policy-days-error", "1 to 3650"),
        ("policy-overlap-error", "0.5 hours"),
        ("leak-minutes-error", "minutes"),
    ] {
        assert!(near(&bad, id).contains(says), "{id}: {}", near(&bad, id));
    }
    // An overlap as long as the interval is refused in hours, not seconds.
    let long = send(form("Orders v2", "1", "24", "15")).await;
    assert_eq!(long.status, 422);
    assert!(long.body.contains("shorter than the time between rotations") && !long.body.contains("1800"));
    assert!(ann.get(&path).await.body.contains("<h1>Orders "), "the name did not change");

    let ok = send(form("Orders v2", "30", "12", "15")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("Settings saved.") && ok.body.contains("<h1>Orders v2"), "{}", ok.body);
    assert!(ok.body.contains("Rotates every 30 days, old and new key valid together for 12 h"), "{}", ok.body);
    let policies = ann.get("/app/policies").await;
    assert!(policies.body.contains("every 30 days"), "{}", policies.body);
    // Saving the same settings again records no change of the policy.
    let root = root_of(&app).await;
    let count = |v: serde_json::Value| v["data"].as_array().map_or(0, Vec::len);
    let (_, before) = app.get("/v1/audit-events?action=policy.", &root).await;
    assert_eq!(count(before.clone()), 1, "the policy's creation is recorded: {before}");
    let again = send(form("Orders v2", "30", "12", "15")).await;
    assert_eq!(again.status, 200);
    let (_, after) = app.get("/v1/audit-events?action=policy.", &root).await;
    assert_eq!(count(after), count(before), "no policy entry for an unchanged policy");

    // Scopes outside the new catalogue are refused on the key form.
    let consumer = ann.get(&format!("/app/keys/{key_id}")).await.link("/app/consumers/con_");
    let consumer_id = consumer.trim_start_matches("/app/consumers/");
    let refused = ann
        .post(
            "/app/keys",
            &[("csrf", &csrf), ("consumer_id", consumer_id), ("api_id", &api_id), ("scopes", "billing:read")],
        )
        .await;
    assert!(
        refused.body.contains("not in the API&#39;s scope catalogue") || refused.body.contains("scope catalogue"),
        "{}",
        refused.body
    );

    // No scheduled rotation removes the policy.
    let mut none = form("Orders v2", "30", "12", "15");
    none[6].1 = "none".into();
    let removed = send(none).await;
    assert!(!removed.body.contains("Rotates every"), "{}", removed.body);

    // The gateway rules: one route per line, an error naming its line, nothing saved until right.
    let mut rules = form("Orders v2", "30", "12", "15");
    rules[6].1 = "none".into();
    rules.push(("gateway_header", "X-API-Key".to_owned()));
    rules.push(("gateway_routes", "GET /orders orders:read\nFETCH /admin".to_owned()));
    let wrong = send(rules.clone()).await;
    assert_eq!(wrong.status, 422);
    assert!(near(&wrong, "gateway-routes-error").contains("Line 2: the method must be one of"), "{}", wrong.body);
    let (_, api) = app.get(&format!("/v1/apis/{api_id}"), &root).await;
    assert_eq!(api["gateway"]["header"], "authorization", "nothing saved: {api}");
    rules.last_mut().expect("routes").1 = "GET /orders orders:read\n\n/health".into();
    let saved = send(rules).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert!(saved.body.contains("GET /orders orders:read\n/health"), "shown as lines again: {}", saved.body);
    let (_, api) = app.get(&format!("/v1/apis/{api_id}"), &root).await;
    assert_eq!(api["gateway"]["header"], "x-api-key", "{api}");
    assert_eq!(api["gateway"]["routes"][1], serde_json::json!({"method": "*", "path_prefix": "/health", "scopes": []}));
}

crate::both_backends!(dashboard_api_settings, api_settings_in_one_form);

/// Another team's member, signed in, tries every new page and form on Ann's ids: not found, and
/// nothing changes; Ann's keys are not in their search.
async fn other_teams_see_nothing(app: TestApp) {
    let (ann, _, consumer_id, key_id) = ann_with_a_key(&app).await;
    let root = root_of(&app).await;
    let api_id = api_id_of(&ann.get(&format!("/app/keys/{key_id}")).await);
    let start = key_json(&app, &root, &key_id).await["start"].as_str().expect("start").to_owned();
    let gus = crate::dashboard::Browser::new(&app);
    crate::dashboard::sign_up(&gus, "Globex", "gus@globex.test").await;
    let csrf = gus.get("/app").await.csrf();
    for path in [
        format!("/app/apis/{api_id}"),
        format!("/app/apis/{api_id}?q={start}"),
        format!("/app/keys/new?consumer={consumer_id}"),
        format!("/app/keys/new?consumer={consumer_id}&api_id={api_id}"),
        format!("/app/playbooks/leaked_key?target={key_id}"),
    ] {
        let p = gus.get(&path).await;
        assert!(
            p.status == 404 || !p.body.contains(&start) && !p.body.contains("Bob"),
            "{path} shows Ann's data to another team: {}",
            p.status
        );
    }
    for (path, form) in [
        (format!("/app/keys/{key_id}/settings"), vec![("name", "stolen"), ("scopes", ""), ("expires", "")]),
        (format!("/app/consumers/{consumer_id}"), vec![("name", "stolen"), ("external_id", "x"), ("email", "")]),
        (format!("/app/apis/{api_id}"), vec![("name", "stolen"), ("policy", "none"), ("leak_action", "notify")]),
        ("/app/keys".to_owned(), vec![("consumer_id", consumer_id.as_str()), ("api_id", api_id.as_str())]),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(form);
        let p = gus.post(&path, &f).await;
        assert!(matches!(p.status.as_u16(), 404 | 422), "{path}: {} {}", p.status, p.body);
        assert!(!p.body.contains(&start), "{path} leaks Ann's key");
    }
    let s = gus.get(&format!("/app/search?q={start}")).await;
    assert!(s.body.contains("Nothing matches"), "another team's search finds nothing of Ann's");
    assert_eq!(key_json(&app, &root, &key_id).await["name"], "prod", "Ann's key is unchanged");
    let (_, c) = app.get(&format!("/v1/consumers/{consumer_id}"), &root).await;
    assert_eq!(c["name"], "Bob", "Ann's consumer is unchanged");
    assert!(ann.get(&format!("/app/apis/{api_id}")).await.body.contains("<h1>Orders "), "Ann's API is unchanged");
}

crate::both_backends!(dashboard_hub_isolation, other_teams_see_nothing);

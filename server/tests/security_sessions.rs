//! Sessions, tokens and sign-in limits, and app output for viewers, through the real
//! application: dead sessions are purged, a token with an expiry stops working after it, wrong
//! passwords from one address do not lock a user out of the others, and a viewer sees an
//! app's own environment values masked in its output. Time is a manual clock; every wait is
//! bounded.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::Duration;

mod common;

use common::{client_with_token, TestApp, ADMIN_PASSWORD, WAIT};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let res = client.post(url).json(&body).send().await.expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = client.get(url).send().await.expect("GET");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Signs in like the Console's form does; the status and whether a session cookie was set.
async fn console_login(
    app: &TestApp,
    client: &reqwest::Client,
    password: &str,
) -> (StatusCode, bool) {
    let res = client
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(format!("username=admin&password={password}&next=/"))
        .send()
        .await
        .expect("login");
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("slipway_session=") && !c.starts_with("slipway_session=;"));
    (res.status(), cookie)
}

/// Session rows in the server's database, usable or not (a second connection to its file).
async fn session_rows(app: &TestApp) -> u64 {
    let db = app.data_dir.path().join("data").join("slipway.db");
    let store = engine::store::Store::open(&format!("sqlite://{}", db.display()))
        .await
        .expect("the server's database");
    let n = engine::Auth::new(store.clone(), engine::AuthConfig::for_tests())
        .count_sessions()
        .await
        .expect("count");
    store.close().await;
    n
}

/// Polls (bounded by `within`) until `rows` sessions are left; the last count otherwise.
async fn wait_for_session_rows(app: &TestApp, rows: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = session_rows(app).await;
        if n == rows || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn expired_sessions_are_purged_by_the_server() {
    let clock = engine::auth::ManualClock::starting_now();
    let c = clock.clone();
    let app = TestApp::spawn_with(move |config| {
        config.clock = Some(server::config::AuthClock(c.clock()));
        config.auth.purge_interval = Duration::from_millis(20);
    })
    .await;
    let browser = reqwest::Client::new();
    for _ in 0..2 {
        let (status, cookie) = console_login(&app, &browser, ADMIN_PASSWORD).await;
        assert_eq!(status, StatusCode::OK);
        assert!(cookie);
    }
    assert!(session_rows(&app).await >= 2);
    // Nobody uses them for longer than the idle limit: they are deleted, not only refused.
    clock.advance(engine::AuthConfig::default().session_idle + Duration::from_secs(60));
    assert_eq!(
        wait_for_session_rows(&app, 0, Duration::from_secs(10)).await,
        0,
        "dead sessions are still stored"
    );
    // A new session is not purged with them.
    let (status, _) = console_login(&app, &browser, ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session_rows(&app).await, 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_token_with_an_expiry_stops_working_after_it() {
    let clock = engine::auth::ManualClock::starting_now();
    let c = clock.clone();
    let app = TestApp::spawn_with(move |config| {
        config.clock = Some(server::config::AuthClock(c.clock()));
    })
    .await;
    let tokens = app.url("/api/v1/tokens");
    let (status, body) = post_json(
        &app.client,
        &tokens,
        json!({"name": "ci", "role": "viewer", "expires_in_days": 7}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let info = &body["info"];
    let expires_at = info["expires_at"].as_i64().expect("expires_at");
    assert_eq!(
        expires_at - info["created_at"].as_i64().expect("created_at"),
        7 * 86_400_000
    );
    let id = info["id"].as_str().expect("id").to_string();
    let ci = client_with_token(body["token"].as_str().expect("token"));
    // Listed with its expiry; a token made without one never expires.
    let (status, list) = get_json(&app.client, &tokens).await;
    assert_eq!(status, 200);
    let listed = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(listed["expires_at"], json!(expires_at));
    assert!(list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .any(|t| t["name"] == "cli" && t["expires_at"].is_null()));

    let whoami = app.url("/api/v1/whoami");
    assert_eq!(ci.get(&whoami).send().await.expect("GET").status(), 200);
    clock.advance(7 * DAY - Duration::from_secs(1));
    assert_eq!(ci.get(&whoami).send().await.expect("GET").status(), 200);
    clock.advance(Duration::from_secs(1));
    let res = ci.get(&whoami).send().await.expect("GET");
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    // The admin's own token (no expiry) still works.
    assert_eq!(
        app.client.get(&whoami).send().await.expect("GET").status(),
        200
    );

    // Bad lifetimes are refused with a JSON error naming the field.
    for bad in [json!(0), json!(-5), json!(367), json!("30"), json!(1.5)] {
        let (status, body) = post_json(
            &app.client,
            &tokens,
            json!({"name": "x", "role": "viewer", "expires_in_days": bad}),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid", "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("expires_in_days"), "{bad}: {body}");
    }
    app.shutdown().await;
}

/// A client whose connections come from `ip` (any of 127.0.0.0/8 is local on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_admin_out_of_another() {
    let app = TestApp::spawn().await;
    let attacker = client_from("127.0.0.2");
    let admin = client_from("127.0.0.3");
    let login = app.url("/api/v1/login");
    let limit = engine::AuthConfig::default().login_max_failures;
    for _ in 0..limit {
        let (status, _) = post_json(
            &attacker,
            &login,
            json!({"user": "admin", "password": "wrong-password"}),
        )
        .await;
        assert_eq!(status, 401);
    }
    // The attacker's address is limited, the right password included...
    let res = attacker
        .post(&login)
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        console_login(&app, &attacker, ADMIN_PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...while admin signs in from another address, with the API and the Console.
    let (status, body) = post_json(
        &admin,
        &login,
        json!({"user": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        console_login(&app, &admin, ADMIN_PASSWORD).await,
        (StatusCode::OK, true)
    );
    app.shutdown().await;
}

/// Polls (bounded) until the app's promotions have all ended; returns the newest.
async fn wait_until_settled(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = app.get_json("/api/v1/apps/hello/promotions").await;
        let promotions = list["promotions"].as_array().cloned().unwrap_or_default();
        if !promotions.is_empty() && promotions.iter().all(|p| p["state"] != "running") {
            return promotions[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still promoting: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets `env` on hello, promotes it and waits until the promotion ended; returns it.
async fn promote_env(app: &TestApp, env: Value) -> Value {
    let (status, body) = post_json(
        &app.client,
        &app.url("/api/v1/apps/hello/env"),
        json!({"set": env, "promote": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["promotion"]["id"]
        .as_str()
        .expect("promotion")
        .to_string();
    let promotion = wait_until_settled(app).await;
    assert_eq!(promotion["id"], id.as_str());
    promotion
}

/// Reads an event stream (bounded) until the promotion-finished event of `promotion`; returns
/// its data.
async fn finished_event(events: &mut reqwest::Response, promotion: &str) -> String {
    const EVENT: &str = "event: promotion-finished\n";
    let mut seen: Vec<u8> = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            // Whole events only: the last piece may not have arrived in full.
            let whole = text.rsplit_once("\n\n").map_or("", |(whole, _)| whole);
            let finished = whole
                .split("\n\n")
                .filter_map(|e| e.strip_prefix(EVENT))
                .find(|data| data.contains(&format!("\"id\":\"{promotion}\"")));
            if let Some(data) = finished {
                return Some(data.to_owned());
            }
            match events.chunk().await.expect("stream") {
                Some(chunk) => seen.extend_from_slice(&chunk),
                None => return None,
            }
        }
    })
    .await;
    match found {
        Ok(Some(data)) => data,
        other => panic!(
            "no promotion-finished event ({other:?}): {}",
            String::from_utf8_lossy(&seen)
        ),
    }
}

async fn text(client: &reqwest::Client, url: &str) -> String {
    let res = client.get(url).send().await.expect("GET");
    assert_eq!(res.status(), 200, "{url}");
    res.text().await.expect("body")
}

#[tokio::test]
async fn a_viewer_sees_the_apps_own_values_masked_in_its_output() {
    const RUNNING: &str = "s3cr3t-of-the-running-release";
    const FAILED: &str = "s3cr3t-of-the-failed-release";
    let app = TestApp::spawn().await;
    app.deploy_example().await;
    wait_until_settled(&app).await;
    let viewer = app.user("vera", "viewer").await;
    let deployer = app.user("dave", "deployer").await;

    // The running processes print a value of their environment.
    let p = promote_env(&app, json!({"EXAMPLE_SAY": RUNNING})).await;
    assert_eq!(p["state"], "active", "{p}");
    let processes = app.url("/api/v1/apps/hello/processes");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = get_json(&deployer, &processes).await;
        if body.to_string().contains(&format!("says: {RUNNING}")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get_json(&viewer, &processes).await;
    assert_eq!(status, 200);
    let shown = body.to_string();
    assert!(!shown.contains(RUNNING), "a viewer sees the value: {shown}");
    assert!(shown.contains("says: ••••"), "{shown}");

    // A promotion that failed keeps the output of its process, printed with its release's
    // environment. (Its end is followed live too.)
    let events = app.url("/api/v1/apps/hello/events");
    let mut viewer_events = viewer.get(&events).send().await.expect("events");
    let mut deployer_events = deployer.get(&events).send().await.expect("events");
    let failed = promote_env(
        &app,
        json!({"EXAMPLE_SAY": FAILED, "EXAMPLE_EXIT_AT_START": "1"}),
    )
    .await;
    assert_eq!(failed["state"], "rolled-back", "{failed}");
    let id = failed["id"].as_str().expect("id");
    let detail = app.url(&format!("/api/v1/promotions/{id}"));
    let (_, as_deployer) = get_json(&deployer, &detail).await;
    let output = as_deployer["promotion"]["failed_output"]
        .as_str()
        .unwrap_or_default();
    assert!(output.contains(&format!("says: {FAILED}")), "{as_deployer}");
    let (_, as_viewer) = get_json(&viewer, &detail).await;
    let output = as_viewer["promotion"]["failed_output"]
        .as_str()
        .unwrap_or_default();
    assert!(output.contains("says: ••••"), "{as_viewer}");
    for path in [
        format!("/api/v1/promotions/{id}"),
        "/api/v1/apps/hello/promotions".to_string(),
        "/api/v1/apps/hello/releases".to_string(),
        "/api/v1/apps/hello/processes".to_string(),
    ] {
        let shown = text(&viewer, &app.url(&path)).await;
        for secret in [RUNNING, FAILED] {
            assert!(!shown.contains(secret), "a viewer sees {secret} in {path}");
        }
    }
    let (_, all) = get_json(&deployer, &app.url("/api/v1/apps/hello/promotions")).await;
    assert!(all.to_string().contains(FAILED), "{all}");
    let live = finished_event(&mut viewer_events, id).await;
    assert!(
        !live.contains(FAILED),
        "a viewer sees the value live: {live}"
    );
    assert!(live.contains("says: ••••"), "{live}");
    let live = finished_event(&mut deployer_events, id).await;
    assert!(live.contains(FAILED), "{live}");
    drop((viewer_events, deployer_events));

    // The Console's pages too: the rollout panel and the release's promotions.
    let release = failed["release"].as_str().expect("release");
    for page in [
        "/apps/hello/releases".to_string(),
        format!("/apps/hello/releases/{release}"),
    ] {
        let as_viewer = text(&viewer, &app.url(&page)).await;
        assert!(
            !as_viewer.contains(FAILED),
            "a viewer sees the value on {page}"
        );
        assert!(as_viewer.contains("says: ••••"), "{page}: {as_viewer}");
        let as_deployer = text(&deployer, &app.url(&page)).await;
        assert!(as_deployer.contains(FAILED), "{page}: {as_deployer}");
    }
    app.shutdown().await;
}

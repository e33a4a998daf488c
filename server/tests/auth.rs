//! Who may do what, through the real application: every API route and every server function
//! without credentials and as a viewer, sessions and tokens that end, CSRF, sign-in limits,
//! secrets at rest, and the audit log.

use app::policy::Need;
use engine::Role;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

mod common;

use common::{client_with_token, TestApp, ADMIN_PASSWORD};

/// A path of the route table with its parameters filled in.
fn fill(path: &str) -> String {
    path.replace("{app}", "hello")
        .replace("{id}", "RAAAAAAAAAA")
        .replace("{name}", "nobody")
}

/// Routes a viewer may call although they change something: their own tokens and signing
/// out. Every other state-changing route must refuse a viewer.
const VIEWER_SELF_SERVICE: [&str; 4] = [
    "/api/v1/login",
    "/api/v1/logout",
    "/api/v1/tokens",
    "/api/v1/tokens/{id}/revoke",
];

#[tokio::test]
async fn every_api_route_needs_credentials_and_every_mutation_refuses_a_viewer() {
    let app = TestApp::spawn().await;
    let anonymous = reqwest::Client::new();
    let viewer = app.user("vera", "viewer").await;
    let routes = server::api::routes();
    assert!(routes.len() > 20, "the route table is suspiciously short");
    for route in &routes {
        let full = format!("{}{}", server::api::PREFIX, route.path);
        let url = app.url(&fill(&full));
        let send = |client: &reqwest::Client| {
            let mut req = client.request(route.method.clone(), &url);
            if route.method == Method::POST {
                req = req.json(&json!({}));
            }
            req.send()
        };
        let status = send(&anonymous).await.expect("request").status();
        match route.need {
            Need::Anyone => assert_ne!(status, StatusCode::UNAUTHORIZED, "{full}"),
            Need::Role(_) => assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "anonymous {} {full}",
                route.method
            ),
        }
        if full.ends_with("/logout") {
            continue; // would sign the viewer out
        }
        let status = send(&viewer).await.expect("request").status();
        let mutation = route.method != Method::GET;
        let self_service = VIEWER_SELF_SERVICE.contains(&full.as_str());
        if (mutation && !self_service) || route.need == Need::Role(Role::Admin) {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "viewer {} {full}",
                route.method
            );
        } else {
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "viewer {} {full}: {status}",
                route.method
            );
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn every_server_function_has_a_rule_and_it_is_enforced() {
    let app = TestApp::spawn().await;
    let anonymous = reqwest::Client::new();
    let viewer = app.user("vera", "viewer").await;
    let paths: Vec<_> = leptos::server_fn::axum::server_fn_paths().collect();
    assert!(paths.len() > 10, "server functions not registered?");
    for (path, _) in paths {
        let rule = app::policy::rule(path)
            .unwrap_or_else(|| panic!("server function {path} has no rule in app/src/policy.rs"));
        let post = |client: &reqwest::Client| {
            client
                .post(app.url(path))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "application/json")
                .body("")
                .send()
        };
        let status = post(&anonymous).await.expect("request").status();
        match rule.need {
            Need::Anyone => assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}"),
            Need::Role(_) => assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous {path}"),
        }
        if path == <app::pages::login::Logout as leptos::server_fn::ServerFn>::PATH {
            continue;
        }
        let status = post(&viewer).await.expect("request").status();
        match rule.need {
            Need::Role(r) if !Role::Viewer.allows(r) => {
                assert_eq!(status, StatusCode::FORBIDDEN, "viewer {path}")
            }
            _ => assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "viewer {path}: {status}"
            ),
        }
    }
    // Pages send strangers to sign in.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/apps/hello/releases"))
        .send()
        .await
        .expect("GET");
    assert!(res.status().is_redirection());
    assert_eq!(
        res.headers()[header::LOCATION],
        "/login?next=%2Fapps%2Fhello%2Freleases"
    );
    app.shutdown().await;
}

/// Signs in like the Console's form does; returns the session cookie (`name=value`).
async fn console_login(app: &TestApp, user: &str, password: &str) -> (StatusCode, Option<String>) {
    let res = reqwest::Client::new()
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(format!("username={user}&password={password}&next=/"))
        .send()
        .await
        .expect("login");
    let status = res.status();
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("slipway_session="))
        .map(|c| c.to_string());
    (status, cookie)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn sessions_end_on_logout_and_after_inactivity_and_cookies_are_strict() {
    let clock = engine::auth::ManualClock::starting_now();
    let c = clock.clone();
    let app = TestApp::spawn_with(move |config| {
        config.clock = Some(server::config::AuthClock(c.clock()));
    })
    .await;
    let (status, set_cookie) = console_login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = set_cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    // Behind a TLS proxy the cookie is Secure.
    let res = reqwest::Client::new()
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .header("x-forwarded-proto", "https")
        .body(format!("username=admin&password={ADMIN_PASSWORD}&next=/"))
        .send()
        .await
        .expect("login");
    let secure = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(secure.contains("; Secure"), "{secure}");
    let cookie = cookie_pair(&set_cookie);
    let page = |cookie: String| {
        let url = app.url("/apps/hello/releases");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .get(url)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .expect("GET")
                .status()
        }
    };
    // Signed in: the page (a 404 for the unknown app, not a redirect to sign in).
    assert_eq!(page(cookie.clone()).await, StatusCode::NOT_FOUND);
    // Idle for longer than the limit: refused.
    clock.advance(app_idle() + Duration::from_secs(60));
    assert!(page(cookie.clone()).await.is_redirection());

    // A new session, then sign out: refused too.
    let (_, set_cookie) = console_login(&app, "admin", ADMIN_PASSWORD).await;
    let cookie = cookie_pair(&set_cookie.expect("cookie"));
    assert_eq!(page(cookie.clone()).await, StatusCode::NOT_FOUND);
    let res = reqwest::Client::new()
        .post(app.url("/api/logout"))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, app.url(""))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "{}", res.status());
    assert!(page(cookie).await.is_redirection());
    app.shutdown().await;
}

fn app_idle() -> Duration {
    engine::AuthConfig::default().session_idle
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(
        &app.client,
        &app.url("/api/v1/tokens"),
        json!({"name": "ci", "role": "deployer"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let id = body["info"]["id"].as_str().expect("id").to_string();
    let ci = client_with_token(&token);
    let res = ci.get(app.url("/api/v1/whoami")).send().await.expect("GET");
    assert_eq!(res.status(), 200);
    let (status, _) = post_json(
        &app.client,
        &app.url(&format!("/api/v1/tokens/{id}/revoke")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let res = ci.get(app.url("/api/v1/whoami")).send().await.expect("GET");
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    // A token's role never exceeds its owner's.
    let viewer = app.user("vera", "viewer").await;
    let (status, body) = post_json(
        &viewer,
        &app.url("/api/v1/tokens"),
        json!({"name": "x", "role": "admin"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    app.shutdown().await;
}

async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let res = client.post(url).json(&body).send().await.expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cross_origin_posts_are_refused() {
    let app = TestApp::spawn().await;
    let (_, set_cookie) = console_login(&app, "admin", ADMIN_PASSWORD).await;
    let cookie = cookie_pair(&set_cookie.expect("cookie"));
    let host = app.addr.to_string();
    let post = |origin: Option<String>| {
        let mut req = reqwest::Client::new()
            .post(app.url("/api/deploy_example"))
            .header(header::COOKIE, &cookie)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.body("").send()
    };
    let res = post(Some("http://evil.example".into()))
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res
        .text()
        .await
        .unwrap_or_default()
        .contains("cross-origin"));
    // Nothing was deployed.
    let apps: Value = app.get_json("/api/v1/apps").await;
    assert_eq!(apps["apps"].as_array().map(Vec::len), Some(0), "{apps}");
    // From the Console's own origin it goes through.
    let res = post(Some(format!("http://{host}"))).await.expect("POST");
    assert_eq!(res.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited() {
    let app = TestApp::spawn().await;
    let limit = engine::AuthConfig::default().login_max_failures;
    for _ in 0..limit {
        let (status, _) = post_json(
            &reqwest::Client::new(),
            &app.url("/api/v1/login"),
            json!({"user": "admin", "password": "wrong-password"}),
        )
        .await;
        assert_eq!(status, 401);
    }
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/login"))
        .json(&json!({"user": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    // The Console's sign-in shares the limit.
    let (status, cookie) = console_login(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie.is_none());
    app.shutdown().await;
}

#[tokio::test]
async fn passwords_and_tokens_are_not_stored_in_clear() {
    let app = TestApp::spawn().await;
    let (_, set_cookie) = console_login(&app, "admin", ADMIN_PASSWORD).await;
    let session = cookie_pair(&set_cookie.expect("cookie"))
        .trim_start_matches("slipway_session=")
        .to_string();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.path().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().contains("slipway.db") {
            stored.extend(std::fs::read(&path).expect("read"));
        }
    }
    assert!(!stored.is_empty());
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("$argon2id$"), "password hashes are argon2id");
    for secret in [ADMIN_PASSWORD, app.token.as_str(), session.as_str()] {
        assert!(!contains(secret), "a secret is stored in clear");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_and_who_was_refused() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(
        &app.client,
        &app.url("/api/v1/apps"),
        json!({"name": "hello"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        &app.client,
        &app.url("/api/v1/apps/hello/env"),
        json!({"set": {"SECRET": "hunter2"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let res = app
        .client
        .get(app.url("/api/v1/apps/hello/env?reveal=true"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 200);
    let viewer = app.user("vera", "viewer").await;
    let res = viewer
        .get(app.url("/api/v1/apps/hello/env?reveal=true"))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status(), 403);
    let (status, _) = post_json(&viewer, &app.url("/api/v1/apps/hello/cancel"), json!({})).await;
    assert_eq!(status, 403);

    let log: Value = app.get_json("/api/v1/audit?app=hello").await;
    let entries: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
                e["result"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, result: &str| {
        entries.contains(&(actor.into(), action.into(), result.into()))
    };
    assert!(has("admin", "app.create", "ok"), "{entries:?}");
    assert!(has("admin", "env.change", "ok"), "{entries:?}");
    assert!(has("admin", "env.reveal", "ok"), "{entries:?}");
    assert!(has("vera", "env.reveal", "denied"), "{entries:?}");
    assert!(has("vera", "promotion.cancel", "denied"), "{entries:?}");
    assert!(
        !log.to_string().contains("hunter2"),
        "a value in the audit log"
    );
    // Filtered by actor.
    let log: Value = app.get_json("/api/v1/audit?actor=vera").await;
    assert!(log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .all(|e| e["actor"] == "vera"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_viewer_sees_no_promote_button_and_a_forged_promote_is_refused() {
    let app = TestApp::spawn().await;
    app.deploy_example().await;
    let (status, body) = post_json(
        &app.client,
        &app.url("/api/v1/apps/hello/env"),
        json!({"set": {"A": "1"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let release = body["release"]["id"].as_str().expect("id").to_string();
    let as_admin = app
        .client
        .get(app.url("/apps/hello/releases"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        as_admin.contains(&format!("Promote {release}")),
        "the admin can promote"
    );
    let viewer = app.user("vera", "viewer").await;
    let as_viewer = viewer
        .get(app.url("/apps/hello/releases"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(as_viewer.contains(&release), "the viewer sees the release");
    assert!(!as_viewer.contains("Promote"), "no Promote for a viewer");
    let res = viewer
        .post(app.url("/api/promote_release"))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("app=hello&release={release}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let promotions: Value = app.get_json("/api/v1/apps/hello/promotions").await;
    assert!(
        promotions["promotions"]
            .as_array()
            .expect("list")
            .iter()
            .all(|p| p["release"] != release.as_str()),
        "the forged promote ran"
    );
    app.shutdown().await;
}

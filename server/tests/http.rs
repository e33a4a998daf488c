//! Starts the real application on port 0 and talks HTTP to it.

use leptos::server_fn::ServerFn;
use std::time::Duration;

mod common;

use common::TestApp;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await, (200, "ok".to_string()));
    app.shutdown().await;
}

#[tokio::test]
async fn apps_page_is_fully_rendered_on_the_server() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Apps</h1>"), "{body}");
    assert!(body.contains("No apps yet"), "{body}");
    assert!(body.contains("Deploy the example app"), "{body}");
    // SsrMode::Async: the server fn's result is in the first response, no JS needed
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    assert!(body.contains("/pkg/slipway.css"), "{body}");
    assert!(body.contains("/pkg/slipway.js"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn releases_page_of_an_unknown_app_is_a_404() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/apps/nope/releases").await;
    assert_eq!(status, 404);
    assert!(body.contains("<code>nope</code>"), "{body}");
    assert!(body.contains("app nope was not found"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_get_the_404_page() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(body.contains("Page not found"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn server_info_server_fn_round_trip() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(app.url(app::pages::apps::GetServerInfo::PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body("")
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 200);
    let info: app::pages::apps::ServerInfo = res.json().await.expect("ServerInfo JSON");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(info.started_at.ends_with(" GMT"), "{info:?}");
    app.shutdown().await;
}

#[tokio::test]
async fn creates_the_data_dir() {
    let app = TestApp::spawn().await;
    // the server is up once /healthz answers; by then serve() has created the data dir
    assert_eq!(app.get("/healthz").await.0, 200);
    assert!(app.data_dir.path().join("data").is_dir());
    app.shutdown().await;
}

/// The status cell of `release` on the Releases page HTML.
fn status_of(page: &str, release: &str) -> Option<String> {
    let row = page.split(&format!("data-release=\"{release}\"")).nth(1)?;
    let row = &row[..row.find("</tr>")?];
    let cell = row.split("class=\"status").nth(1)?;
    let text = &cell[cell.find('>')? + 1..];
    Some(text[..text.find('<')?].trim().to_string())
}

/// Release IDs on the Releases page, newest first.
fn release_ids(page: &str) -> Vec<String> {
    page.split("data-release=\"")
        .skip(1)
        .filter_map(|s| s.get(..11).map(str::to_owned))
        .collect()
}

impl TestApp {
    /// Loads the Releases page until `release` shows `status` (bounded).
    async fn wait_for_status(&self, app: &str, release: &str, status: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, page) = self.get(&format!("/apps/{app}/releases")).await;
            if status_of(&page, release).as_deref() == Some(status) {
                return page;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{release} never became {status}: {:?}",
                status_of(&page, release)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until no promotion of `app` runs: a promotion stays running after
    /// its release became active until the old processes are gone, and another promote is
    /// refused until then.
    async fn wait_settled(&self, app: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let list = self
                .get_json(&format!("/api/v1/apps/{app}/promotions?limit=1"))
                .await;
            if list["promotions"][0]["state"] != "running" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a promotion of {app} never ended: {list}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, path: &str, form: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.to_string())
            .send()
            .await
            .expect("POST")
    }
}

#[tokio::test]
async fn deploy_the_example_then_promote_an_older_release_without_javascript() {
    use app::pages::{apps::DeployExample, releases::PromoteRelease};
    let app = TestApp::spawn().await;
    let res = app.call(DeployExample::PATH, "").await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.json::<String>().await.expect("JSON"), "hello");
    let (_, page) = app.get("/apps/hello/releases").await;
    let first = release_ids(&page);
    assert_eq!(first.len(), 1, "{page}");
    let r1 = first[0].clone();
    app.wait_for_status("hello", &r1, "active").await;

    // A second deploy makes a second release, which becomes active.
    assert_eq!(
        app.call(DeployExample::PATH, "").await.status().as_u16(),
        200
    );
    let (_, page) = app.get("/apps/hello/releases").await;
    let ids = release_ids(&page);
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], r1, "newest first");
    let r2 = ids[0].clone();
    let page = app.wait_for_status("hello", &r2, "active").await;
    assert_eq!(status_of(&page, &r1).as_deref(), Some(""));
    app.wait_settled("hello").await;
    assert!(
        page.contains(&format!("aria-label=\"Promote {r1}\"")),
        "no Promote on {r1}"
    );
    assert!(
        !page.contains(&format!("aria-label=\"Promote {r2}\"")),
        "Promote on the active release"
    );

    // The Promote form as a browser without JavaScript sends it: a plain form post, then a
    // redirect back to the page it came from.
    let referer = app.url("/apps/hello/releases");
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(app.url(PromoteRelease::PATH))
        .header("authorization", format!("Bearer {}", app.token))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("referer", &referer)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(format!("app=hello&release={r1}"))
        .send()
        .await
        .expect("POST");
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()["location"].to_str().expect("location");
    assert!(location.starts_with(&referer), "{location}");
    app.wait_for_status("hello", &r1, "active").await;

    // A release with another environment: its confirmation on the list says the environment
    // differs and links to the release's page, which says which variables (the list never
    // diffs environments; with JavaScript the confirmation fetches that list when opened).
    let res = app
        .client
        .post(app.url("/api/v1/apps/hello/env"))
        .json(&serde_json::json!({ "set": { "NEW_SETTING": "on" } }))
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 201);
    let (_, page) = app.get("/apps/hello/releases").await;
    let r3 = release_ids(&page)[0].clone();
    let release_page = format!("/apps/hello/releases/{r3}");
    assert!(
        page.contains(&format!("data-changes-from=\"{release_page}\""))
            && page.contains(&format!("href=\"{release_page}#diff-title\"")),
        "{page}"
    );
    let (_, detail) = app.get(&release_page).await;
    let changes = detail
        .split("id=\"changes\"")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("the release page lists the changes");
    assert!(changes.contains("add:NEW_SETTING"), "{changes}");

    // Bad input comes back as a readable error.
    let res = app
        .call(PromoteRelease::PATH, "app=hello&release=nope")
        .await;
    assert!(!res.status().is_success());
    let body = res.text().await.expect("body");
    assert!(body.contains("is not a release ID"), "{body}");
    let res = app
        .call(PromoteRelease::PATH, "app=nope&release=RAAAAAAAAAA")
        .await;
    assert_eq!(res.status().as_u16(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let first = TestApp::spawn().await;
    let config = common::config(&first.data_dir.path().join("data"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = tokio::time::timeout(
        common::WAIT,
        server::serve(&config, listener, std::future::pending()),
    )
    .await
    .expect("the second server gives up at once");
    let err = second
        .expect_err("a second server on the same data dir")
        .to_string();
    assert!(err.contains("is already using the data dir"), "{err}");
    // The first one still serves.
    let res = first
        .client
        .get(first.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

//! The JSON API under `/api/v1`, against the real application on port 0.

mod common;

use common::{TestApp, WAIT};
use reqwest::Method;
use serde_json::{json, Value};
use std::{collections::BTreeSet, time::Duration};

const API: &str = "/api/v1";

/// The example app's source as a `.tar.gz`, its manifest passed through `tweak`.
fn example_archive(tweak: impl Fn(String) -> String) -> Vec<u8> {
    let dir = engine::testing::example_copy(tweak);
    engine::artifacts::pack_dir(dir.path()).expect("pack")
}

fn unchanged(s: String) -> String {
    s
}

/// A manifest whose processes never become healthy (within a long grace): the rollout keeps
/// running until it is cancelled.
fn never_healthy(s: String) -> String {
    s.replace("path: /health", "path: /never-healthy")
        .replace("grace: 10", "grace: 300")
}

impl TestApp {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.url(&format!("{API}{path}")));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn api_get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn api_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let res = self
            .client
            .post(self.url(&format!("{API}{path}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn create_app(&self, name: &str) {
        let (status, body) = self.api_post("/apps", json!({ "name": name })).await;
        assert_eq!(status, 201, "{body}");
    }

    /// Uploads the example (tweaked) and returns `{"build","release"}`.
    async fn upload(&self, app: &str, tweak: impl Fn(String) -> String) -> Value {
        let (status, body) = self
            .post_raw(
                &format!("/apps/{app}/builds?description=example&git_sha=abc123"),
                "application/gzip",
                example_archive(tweak),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Polls the promotion (bounded) until it has ended.
    async fn wait_promotion(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.api_get(&format!("/promotions/{id}")).await;
            assert_eq!(status, 200, "{body}");
            if body["promotion"]["state"] != "running" {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "promotion {id} still running after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Promotes and waits until the promotion ended; returns its detail.
    async fn promote_and_wait(&self, app: &str, release: &str) -> Value {
        let (status, p) = self
            .api_post(
                &format!("/apps/{app}/releases/{release}/promote"),
                json!({}),
            )
            .await;
        assert_eq!(status, 202, "{p}");
        assert_eq!(p["state"], "running", "{p}");
        self.wait_promotion(p["id"].as_str().expect("id")).await
    }
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}")),
        body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}")),
    )
}

#[tokio::test]
async fn apps_and_input_errors() {
    let app = TestApp::spawn().await;
    assert_eq!(app.api_get("/apps").await, (200, json!({ "apps": [] })));

    let (status, body) = app.api_post("/apps", json!({ "name": "hello" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "hello");
    assert_eq!(body["created_by"], "admin");

    let (status, body) = app.api_get("/apps").await;
    assert_eq!(status, 200);
    assert_eq!(body["apps"][0]["app"]["name"], "hello", "{body}");
    let (status, body) = app.api_get("/apps/hello").await;
    assert_eq!((status, &body["name"]), (200, &json!("hello")), "{body}");

    // 409: the name is taken
    let (status, body) = app.api_post("/apps", json!({ "name": "hello" })).await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    // 400, naming the field
    let (status, body) = app.api_post("/apps", json!({ "name": "Not A Name" })).await;
    assert_eq!((status, error_of(&body).0), (400, "invalid"), "{body}");
    assert!(error_of(&body).1.contains("app name"), "{body}");
    let (status, body) = app.api_post("/apps", json!({ "nome": "x" })).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("name"), "{body}");
    let (status, body) = app.api_post("/apps", json!({ "name": 5 })).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("name"), "{body}");
    // malformed JSON is a JSON error too
    let (status, body) = app
        .post_raw("/apps", "application/json", b"{\"name\": ".to_vec())
        .await;
    assert_eq!((status, error_of(&body).0), (400, "invalid"), "{body}");
    // bad path and query values; a path the front door refuses is answered as JSON too
    let (status, body) = app.api_get("/apps/a%2Fb/releases").await;
    assert_eq!((status, error_of(&body).0), (400, "invalid"), "{body}");
    assert!(error_of(&body).1.contains("path"), "{body}");
    let (status, body) = app.api_get("/apps/UPPER").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("app name"), "{body}");
    let (status, body) = app.api_get("/apps/hello/releases?limit=lots").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("limit"), "{body}");
    let (status, body) = app.api_get("/apps/hello/releases/nope").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("release"), "{body}");
    // 404s
    let (status, body) = app.api_get("/apps/nope").await;
    assert_eq!((status, error_of(&body).0), (404, "not_found"), "{body}");
    let (status, body) = app.api_get("/apps/nope/releases").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.api_get("/promotions/PAAAAAAAAAA").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.api_get("/no/such/route").await;
    assert_eq!((status, error_of(&body).0), (404, "not_found"), "{body}");
    // 405, as JSON
    let (status, body) = app.send(Method::DELETE, "/apps", None).await;
    assert_eq!((status, error_of(&body).0), (405, "method_not_allowed"));
    app.shutdown().await;
}

#[tokio::test]
async fn body_limits() {
    let app = TestApp::spawn().await;
    app.create_app("hello").await;
    // JSON bodies: at most 1 MiB
    let big = "x".repeat(server::api::MAX_JSON_BYTES + 1);
    let (status, body) = app
        .api_post("/apps/hello/releases", json!({ "description": big }))
        .await;
    assert_eq!((status, error_of(&body).0), (413, "too_large"), "{body}");
    // Build uploads may be larger than that: a 2 MiB body reaches the engine, which says it
    // is not an archive (well-formed, but not something it can unpack: 422).
    let (status, body) = app
        .post_raw(
            "/apps/hello/builds",
            "application/octet-stream",
            vec![7u8; 2 * 1024 * 1024],
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, "unprocessable"),
        "{body}"
    );
    assert!(error_of(&body).1.contains("not a valid .tar.gz"), "{body}");
    // ... but not larger than the engine takes.
    let (status, body) = app
        .post_raw(
            "/apps/hello/builds",
            "application/gzip",
            vec![0u8; engine::artifacts::MAX_ARCHIVE_BYTES + 1],
        )
        .await;
    assert_eq!((status, error_of(&body).0), (413, "too_large"), "{body}");
    // An environment value over the engine's limit
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "set": { "BIG": "v".repeat(engine::env::MAX_VALUE_BYTES + 1) } }),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (413, "too_large"), "{body}");
    assert!(!error_of(&body).1.contains("vvvv"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn builds_releases_promote_and_rollback() {
    let app = TestApp::spawn().await;
    app.create_app("hello").await;
    // nothing to cancel is a conflict
    let (status, body) = app.api_post("/apps/hello/cancel", json!({})).await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");

    // 422: a bad manifest; 400: no body
    let (status, body) = app
        .post_raw(
            "/apps/hello/builds",
            "application/gzip",
            example_archive(|s| s.replace("services:", "servicez:")),
        )
        .await;
    assert_eq!(
        (status, error_of(&body).0),
        (422, "unprocessable"),
        "{body}"
    );
    let (status, body) = app
        .post_raw("/apps/hello/builds", "application/gzip", Vec::new())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("body"), "{body}");
    let (status, body) = app
        .post_raw(
            "/apps/hello/builds",
            "application/json",
            example_archive(unchanged),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("content-type"), "{body}");
    let (status, _) = app
        .post_raw(
            "/apps/nope/builds",
            "application/gzip",
            example_archive(unchanged),
        )
        .await;
    assert_eq!(status, 404);

    // an environment before the first build
    let (status, body) = app
        .api_post("/apps/hello/env", json!({ "set": { "GREETING": "hi" } }))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["promotion"], Value::Null);
    // Well-formed requests this state refuses (409): promoting or rolling back to a release
    // without a build, promoting a change when there is no build, a change that changes nothing.
    let r0 = body["release"]["id"]
        .as_str()
        .expect("release id")
        .to_owned();
    for path in [
        format!("/apps/hello/releases/{r0}/promote"),
        format!("/apps/hello/releases/{r0}/rollback"),
    ] {
        let (status, body) = app.api_post(&path, json!({})).await;
        assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
        assert!(error_of(&body).1.contains("has no build"), "{body}");
    }
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "set": { "OTHER": "x" }, "promote": true }),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    let (status, body) = app
        .api_post("/apps/hello/env", json!({ "set": { "GREETING": "hi" } }))
        .await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    assert!(error_of(&body).1.contains("nothing to change"), "{body}");

    let first = app.upload("hello", unchanged).await;
    let build_id = first["build"]["id"].as_str().expect("build id").to_owned();
    let r1 = first["release"]["id"]
        .as_str()
        .expect("release id")
        .to_owned();
    assert_eq!(first["build"]["description"], "example");
    assert_eq!(first["build"]["git_sha"], "abc123");
    assert_eq!(first["release"]["build"], json!(build_id));
    assert_eq!(first["release"]["env"], json!({ "GREETING": "****" }));

    let (status, body) = app.api_get("/apps/hello/builds?limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(body["builds"][0]["id"], json!(build_id), "{body}");
    let (status, body) = app.api_get(&format!("/apps/hello/builds/{build_id}")).await;
    assert_eq!((status, &body["release"]), (200, &json!(r1)), "{body}");
    let (status, body) = app.api_get("/apps/hello/builds/BAAAAAAAAAA").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.api_get("/apps/hello/builds/RAAAAAAAAAA").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("build"), "{body}");

    // the release, masked and revealed
    let (status, body) = app.api_get(&format!("/apps/hello/releases/{r1}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["env"], json!({ "GREETING": "****" }));
    let (_, body) = app
        .api_get(&format!("/apps/hello/releases/{r1}?reveal=true"))
        .await;
    assert_eq!(body["env"], json!({ "GREETING": "hi" }));
    let (status, body) = app.api_get("/apps/hello/releases/RAAAAAAAAAA").await;
    assert_eq!(status, 404, "{body}");

    // promote; it runs, then is active
    let detail = app.promote_and_wait("hello", &r1).await;
    assert_eq!(detail["promotion"]["state"], "active", "{detail}");
    assert!(detail["events"].as_array().is_some_and(|e| !e.is_empty()));
    let p1 = detail["promotion"]["id"].as_str().expect("id").to_owned();

    // a release made directly, with a new environment
    let (status, body) = app
        .api_post(
            "/apps/hello/releases",
            json!({ "from": r1, "env": { "GREETING": "hello" }, "description": "direct" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["description"], "direct");
    let r2 = body["id"].as_str().expect("id").to_owned();
    let (status, body) = app
        .api_post("/apps/hello/releases", json!({ "env": { "1BAD": "x" } }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .api_post("/apps/hello/releases", json!({ "build": "BAAAAAAAAAA" }))
        .await;
    assert_eq!(status, 404, "{body}");

    // the list: newest first, with status, and pages
    let (status, body) = app.api_get("/apps/hello/releases").await;
    assert_eq!(status, 200);
    let releases = body["releases"].as_array().expect("releases");
    let ids: Vec<_> = releases.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids.len(), 3, "{body}");
    assert_eq!(ids[0], json!(r2));
    assert_eq!(ids[1], json!(r1));
    assert_eq!(releases[1]["status"], "active");
    assert_eq!(releases[1]["active"], true);
    assert_eq!(releases[1]["promoted_by"], "admin");
    assert_eq!(releases[1]["last_promotion"]["id"], json!(p1));
    // A list carries summaries: which keys each release changed, no environment ...
    assert_eq!(releases[1].get("env"), None, "{body}");
    assert_eq!(
        releases[0]["env_changes"],
        json!({ "added": [], "changed": ["GREETING"], "removed": [] })
    );
    assert_eq!(releases[1]["same_env_as_active"], true);
    assert_eq!(releases[0]["same_env_as_active"], false);
    assert_eq!(releases[0]["status"], "");
    // ... unless asked for, and then masked.
    let (status, with_env) = app.api_get("/apps/hello/releases?include=env").await;
    assert_eq!(status, 200, "{with_env}");
    assert_eq!(
        with_env["releases"][1]["env"],
        json!({ "GREETING": "****" })
    );
    assert_eq!(
        with_env["releases"][0]["env"],
        json!({ "GREETING": "****" })
    );
    let (status, refused) = app.api_get("/apps/hello/releases?include=secrets").await;
    assert_eq!(
        (status, error_of(&refused).0),
        (400, "invalid"),
        "{refused}"
    );
    assert_eq!(body["next_before"], Value::Null);
    let (_, page1) = app.api_get("/apps/hello/releases?limit=2").await;
    assert_eq!(page1["releases"].as_array().map(Vec::len), Some(2));
    let before = page1["next_before"].as_i64().expect("next_before");
    let (_, page2) = app
        .api_get(&format!("/apps/hello/releases?limit=2&before={before}"))
        .await;
    assert_eq!(
        page2["releases"].as_array().map(Vec::len),
        Some(1),
        "{page2}"
    );
    assert_eq!(page2["next_before"], Value::Null);

    // the environment of the newest release and of another
    let (status, body) = app.api_get("/apps/hello/env").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "release": r2, "env": { "GREETING": "****" } })
    );
    let (_, body) = app
        .api_get(&format!("/apps/hello/env?release={r1}&reveal=true"))
        .await;
    assert_eq!(body, json!({ "release": r1, "env": { "GREETING": "hi" } }));

    // an environment change that is promoted at once
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "set": { "COLOR": "blue" }, "unset": ["GREETING"], "base": r2, "promote": true }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["release"]["description"],
        "env add:COLOR remove:GREETING"
    );
    let r3 = body["release"]["id"].as_str().expect("id").to_owned();
    let p3 = body["promotion"]["id"]
        .as_str()
        .expect("promotion")
        .to_owned();
    let detail = app.wait_promotion(&p3).await;
    assert_eq!(detail["promotion"]["state"], "active", "{detail}");
    assert_eq!(detail["promotion"]["release"], json!(r3));

    // the output of the running processes of the active release
    let (status, body) = app.api_get("/apps/hello/processes?lines=20").await;
    assert_eq!(status, 200, "{body}");
    let processes = body["processes"].as_array().expect("processes");
    let mut names: Vec<&str> = processes
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["web.1", "web.2"], "{body}");
    for p in processes {
        let output = p["output"].as_str().expect("output");
        assert!(output.contains(&format!("as release {r3}")), "{output}");
    }
    assert_eq!(app.api_get("/apps/nope/processes").await.0, 404);

    // roll back to r1: a new release like it, promoted
    let rollback = format!("/apps/hello/releases/{r1}/rollback");
    let (status, body) = app.api_post(&rollback, json!({ "timeout": 120 })).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["release"]["rollback_of"], json!(r1));
    let p4 = body["promotion"]["id"].as_str().expect("id").to_owned();
    let detail = app.wait_promotion(&p4).await;
    assert_eq!(detail["promotion"]["state"], "active", "{detail}");
    let (_, body) = app.api_get("/apps/hello").await;
    assert_eq!(
        body["active_release"], detail["promotion"]["release"],
        "{body}"
    );

    // promotions: all of the app's, and one release's
    let (status, body) = app.api_get("/apps/hello/promotions").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["promotions"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    let (_, body) = app
        .api_get(&format!("/apps/hello/promotions?release={r1}&limit=5"))
        .await;
    let ids: Vec<_> = body["promotions"]
        .as_array()
        .expect("promotions")
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(p1)]);

    // a bad timeout names the field
    let (status, body) = app
        .api_post(
            &format!("/apps/hello/releases/{r1}/promote"),
            json!({ "timeout": 0 }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("timeout"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn rollout_in_progress_cancel_and_event_stream() {
    let app = TestApp::spawn().await;
    app.create_app("hello").await;
    let built = app.upload("hello", never_healthy).await;
    let release = built["release"]["id"].as_str().expect("id").to_owned();

    // Follow the app's events from before the promote.
    let mut events = app
        .client
        .get(app.url(&format!("{API}/apps/hello/events")))
        .send()
        .await
        .expect("events");
    assert_eq!(events.status().as_u16(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .expect("content-type")
        .starts_with("text/event-stream"));

    let (status, p) = app
        .api_post(
            &format!("/apps/hello/releases/{release}/promote"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{p}");
    let promotion = p["id"].as_str().expect("id").to_owned();

    // The stream delivers a step of this promotion.
    let mut seen = String::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match events.chunk().await.expect("stream") {
                Some(chunk) => {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains("event: promotion\n") && seen.contains(&promotion) {
                        return true;
                    }
                }
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    let data = seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains(&promotion))
        .expect("data line");
    let event: Value = serde_json::from_str(&data["data: ".len()..]).expect("JSON data");
    assert_eq!(event["app"], "hello", "{event}");
    drop(events);
    // Another stream stays open across the shutdown below, which must still finish.
    let mut open_stream = app
        .client
        .get(app.url(&format!("{API}/apps/hello/events")))
        .send()
        .await
        .expect("events");
    assert_eq!(open_stream.status().as_u16(), 200);

    // 409: another rollout of the app while this one runs
    let (status, body) = app
        .api_post(
            &format!("/apps/hello/releases/{release}/promote"),
            json!({}),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    assert!(error_of(&body).1.contains("in progress"), "{body}");
    let (status, body) = app
        .api_post(
            &format!("/apps/hello/releases/{release}/rollback"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (_, list) = app.api_get("/apps/hello/releases").await;
    assert_eq!(list["releases"][0]["status"], "promoting", "{list}");

    // cancel: answered once the promotion has ended
    let (status, body) = app.api_post("/apps/hello/cancel", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(promotion));
    assert_eq!(body["state"], "cancelled", "{body}");
    app.shutdown().await;
    // The server ended the open event stream.
    let ended = tokio::time::timeout(WAIT, async {
        while let Ok(Some(_)) = open_stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream did not end at shutdown");
}

#[tokio::test]
async fn stale_base_is_a_conflict_that_says_what_changed() {
    let app = TestApp::spawn().await;
    app.create_app("hello").await;
    let (status, body) = app
        .api_post("/apps/hello/env", json!({ "set": { "A": "1" } }))
        .await;
    assert_eq!(status, 201, "{body}");
    let base = body["release"]["id"].as_str().expect("id").to_owned();
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "set": { "B": "2" }, "base": base }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "set": { "A": "3" }, "base": base, "description": "mine" }),
        )
        .await;
    assert_eq!((status, error_of(&body).0), (409, "conflict"), "{body}");
    let message = error_of(&body).1;
    assert!(
        message.contains(&base) && message.contains('B'),
        "{message}"
    );
    assert!(!message.contains("\"2\""), "{message}");

    // 400s naming what is wrong
    let (status, body) = app
        .api_post("/apps/hello/env", json!({ "set": { "NOT-A-KEY": "1" } }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("NOT-A-KEY"), "{body}");
    let (status, body) = app
        .api_post(
            "/apps/hello/env",
            json!({ "base": "nope", "set": { "A": "1" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("release"), "{body}");
    let (status, body) = app
        .api_post("/apps/hello/env", json!({ "unset": "A" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("unset"), "{body}");
    app.shutdown().await;
}

/// `{app}` and `{id}` of a route filled with values of the right shape.
fn fill(path: &str) -> String {
    let id = if path.contains("/builds/") {
        "BAAAAAAAAAA"
    } else if path.contains("/promotions/") {
        "PAAAAAAAAAA"
    } else {
        "RAAAAAAAAAA"
    };
    path.replace("{app}", "hello").replace("{id}", id)
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_routes() {
    let app = TestApp::spawn().await;
    app.create_app("hello").await;
    let (status, doc) = app.api_get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<_> = server::api::route_table()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    assert_eq!(documented, routed);

    // Each documented route answers a request of the right shape (an engine 404 for the
    // made-up IDs is fine; "no such route" or 405 is not).
    for (method, path) in &documented {
        // Signing out would revoke this test's own token.
        if path.ends_with("/logout") {
            continue;
        }
        let url = app.url(&fill(path));
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = app.client.request(method.clone(), &url);
        if method == Method::POST {
            req = if path.ends_with("/builds") {
                req.header("content-type", "application/gzip")
                    .body(example_archive(unchanged))
            } else if path.ends_with("/apps") {
                req.json(&json!({ "name": "other" }))
            } else if path.ends_with("/env") {
                req.json(&json!({ "set": { "X": "1" } }))
            } else {
                req.json(&json!({}))
            };
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        if path.ends_with("/events") {
            assert_eq!(status, 200, "{method} {path}");
            continue;
        }
        let body: Value = res.json().await.expect("JSON");
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(status < 500, "{method} {path}: {body}");
        if status == 404 {
            assert_ne!(
                body["error"]["message"], "no such API route",
                "{method} {path}"
            );
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn openapi_document_carries_the_rules_the_server_checks() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.api_get("/openapi.json").await;
    let p = &doc["paths"];
    // Path parameters: the newtypes' own patterns and lengths.
    let param = |path: &str, method: &str, name: &str| -> Value {
        p[path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or(Value::Null)
    };
    let app_param = param("/api/v1/apps/{app}", "get", "app");
    assert_eq!(
        app_param["schema"]["pattern"],
        engine::AppName::RULE.pattern
    );
    assert_eq!(app_param["schema"]["maxLength"], 30);
    let id = param("/api/v1/apps/{app}/releases/{id}", "get", "id");
    assert_eq!(id["schema"]["pattern"], "^R[A-Z]{10}$");
    let token = param("/api/v1/tokens/{id}/revoke", "post", "id");
    assert_eq!(token["schema"]["pattern"], "^T[A-Z]{10}$");
    // Bodies: a new app's name, env keys, the rollout deadline's range.
    let create = &p["/api/v1/apps"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        create["properties"]["name"]["pattern"],
        engine::AppName::RULE.pattern
    );
    let env = &p["/api/v1/apps/{app}/env"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        env["properties"]["set"]["propertyNames"]["pattern"],
        engine::EnvKey::RULE.pattern
    );
    assert_eq!(env["properties"]["timeout"]["maximum"], 86_400);
    // What the server sends: an audit entry's result is an object.
    let result = &doc["components"]["schemas"]["AuditRecord"]["properties"]["result"];
    assert_eq!(result["type"], "object");
    let (_, audit) = app.api_get("/audit?limit=1").await;
    let status = &audit["entries"][0]["result"]["status"];
    assert!(
        result["properties"]["status"]["enum"]
            .as_array()
            .is_some_and(|e| e.contains(status)),
        "{audit}"
    );
    // Each operation lists the statuses it answers, each error with the error body.
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let responses = p[format!("/api/v1{path}")][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"));
        for (status, response) in responses {
            if status.starts_with(['4', '5']) {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
        }
        responses.keys().cloned().collect()
    };
    assert_eq!(statuses("/apps", "get"), ["200", "401", "500"]);
    assert_eq!(statuses("/whoami", "get"), ["200", "401"]);
    assert_eq!(
        statuses("/login", "post"),
        ["201", "400", "401", "403", "413", "429", "500"]
    );
    assert_eq!(
        statuses("/apps/{app}/builds", "post"),
        ["201", "400", "401", "403", "404", "413", "422", "500"]
    );
    assert_eq!(
        statuses("/apps/{app}/releases/{id}/promote", "post"),
        ["202", "400", "401", "403", "404", "409", "413", "500"]
    );
    assert_eq!(
        statuses("/apps/{app}/releases/{id}", "get"),
        ["200", "400", "401", "403", "404", "500"]
    );
    assert_eq!(statuses("/logout", "post"), ["200", "401", "403", "500"]);
    assert_eq!(statuses("/users", "get"), ["200", "401", "403", "500"]);
    app.shutdown().await;
}

//! Security finding 7: the audit log is written by the engine's use cases with what they
//! really did, not guessed by the access check from request bodies; anonymous callers cannot
//! grow it without bound; and a secret is not revealed when its audit entry cannot be written.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{TestApp, WAIT};

/// The audit log's entries (newest first) whose action starts with `action`.
async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let log = app
        .get_json(&format!("/api/v1/audit?action={action}&limit=500"))
        .await;
    log["entries"].as_array().expect("entries").clone()
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app
        .client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A server function called as the admin with a urlencoded `form`.
async fn server_fn(app: &TestApp, name: &str, form: &str) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.url(&format!("/api/{name}")))
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("POST");
    let status = res.status();
    (status, res.text().await.expect("body"))
}

/// Sends `body` as JSON in two chunks (no Content-Length) with the admin's token over a
/// plain connection; returns the status and the raw response.
async fn post_chunked(app: &TestApp, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let (a, b) = body.split_at(body.len() / 2);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {la:x}\r\n{a}\r\n{lb:x}\r\n{b}\r\n0\r\n\r\n",
        addr = app.addr,
        token = app.token,
        la = a.len(),
        lb = b.len(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, response)
}

#[tokio::test]
async fn a_chunked_api_request_is_audited_with_its_real_subject() {
    let app = TestApp::spawn().await;
    let (status, response) = post_chunked(&app, "/api/v1/apps", r#"{"name": "chunky"}"#).await;
    assert_eq!(status, 201, "{response}");
    let (status, response) = post_chunked(
        &app,
        "/api/v1/apps/chunky/env",
        r#"{"set": {"DATABASE_URL": "postgres://secret"}}"#,
    )
    .await;
    assert_eq!(status, 201, "{response}");
    let release: Value = app.get_json("/api/v1/apps/chunky/env").await;
    let release = release["release"].as_str().expect("a release").to_owned();

    let created = audit(&app, "app.create").await;
    assert!(
        created.iter().any(|e| e["app"] == "chunky"
            && e["actor"] == "admin"
            && e["result"]["status"] == "ok"),
        "{created:#?}"
    );
    let changed = audit(&app, "env.change").await;
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["app"], "chunky");
    assert_eq!(
        changed[0]["target"],
        format!("{release} env add:DATABASE_URL"),
        "the release made and the key changed"
    );
    assert!(!format!("{changed:?}").contains("postgres://secret"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_form_with_two_keys_is_logged_with_the_key_acted_on() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(&app, "/api/v1/apps", json!({"name": "hello"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        &app,
        "/api/v1/apps/hello/env",
        json!({"set": {"PUBLIC": "public-value", "SECRET": "secret-value"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let release = body["release"]["id"].as_str().expect("id").to_owned();

    for form in [
        format!("app=hello&release={release}&key=PUBLIC&key=SECRET"),
        format!("app=hello&release={release}&k%65y=PUBLIC&key=SECRET"),
        format!("app=hello&release={release}&key=SECRET&k%65y=PUBLIC"),
    ] {
        let before = audit(&app, "env.reveal").await.len();
        let (status, text) = server_fn(&app, "reveal_env", &form).await;
        let after = audit(&app, "env.reveal").await;
        let new = &after[..after.len() - before];
        if status == StatusCode::OK {
            // The row names the key whose value was returned, and nothing else.
            let value: String = serde_json::from_str(&text).expect("a string");
            let key = if value == "secret-value" {
                "SECRET"
            } else {
                assert_eq!(value, "public-value", "{form}");
                "PUBLIC"
            };
            assert_eq!(new.len(), 1, "{form}: {new:#?}");
            assert_eq!(new[0]["target"], format!("{release} {key}"), "{form}");
            assert_eq!(new[0]["result"]["status"], "ok", "{form}");
        } else {
            // Refused before any key was acted on: no row claims one was.
            assert!(
                new.iter().all(|e| e["result"]["status"] != "ok"
                    && !e["target"]
                        .as_str()
                        .is_some_and(|t| t.contains("PUBLIC") || t.contains("SECRET"))),
                "{form}: {status} {new:#?}"
            );
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn apply_changes_is_logged_with_the_release_it_made() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(&app, "/api/v1/apps", json!({"name": "hello"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, text) = server_fn(
        &app,
        "apply_env",
        "app=hello&base=&paste=GREETING%3Dhowdy%0AAPI_KEY%3Dk3y-value",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let applied: Value = serde_json::from_str(&text).expect("JSON");
    let release = applied["release"].as_str().expect("release").to_owned();
    let changed = audit(&app, "env.change").await;
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["app"], "hello");
    assert_eq!(
        changed[0]["target"],
        format!("{release} env add:API_KEY add:GREETING")
    );
    assert!(!format!("{changed:?}").contains("k3y-value"));
    app.shutdown().await;
}

#[tokio::test]
async fn anonymous_callers_cannot_grow_the_audit_log() {
    let app = TestApp::spawn().await;
    let total = |log: &Value| log["entries"].as_array().map_or(0, Vec::len);
    let before = total(&app.get_json("/api/v1/audit?limit=500").await);
    let anonymous = reqwest::Client::new();
    for path in [
        "/api/nonexistent_fn",
        "/api/promote_release",
        "/api/v1/apps/hello/releases/RABCDEFGHIJ/promote",
    ] {
        for _ in 0..500 {
            let res = anonymous
                .post(app.url(path))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("app=hello&release=RABCDEFGHIJ")
                .send()
                .await
                .expect("POST");
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
    }
    let log = app.get_json("/api/v1/audit?limit=500").await;
    let added = total(&log) - before;
    // One row per (client, action) per minute at most: none for the made-up function, one
    // for each audited action.
    assert!(added <= 2, "{added} rows: {log:#}");
    let entries = log["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .all(|e| !e["action"].as_str().unwrap_or("").contains("nonexistent")),
        "{log:#}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_failed_promote_is_recorded_with_its_reason() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(&app, "/api/v1/apps", json!({"name": "hello"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post_json(
        &app,
        "/api/v1/apps/hello/releases/RZZZZZZZZZZ/promote",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server_fn(&app, "promote_release", "app=hello&release=RYYYYYYYYYY").await;
    assert!(!status.is_success());
    let promotes = audit(&app, "release.promote").await;
    for id in ["RZZZZZZZZZZ", "RYYYYYYYYYY"] {
        let entry = promotes
            .iter()
            .find(|e| e["target"] == id)
            .unwrap_or_else(|| panic!("no entry for {id}: {promotes:#?}"));
        assert_eq!(entry["actor"], "admin");
        assert_eq!(entry["app"], "hello");
        assert_eq!(entry["result"]["status"], "failed");
        assert_eq!(
            entry["result"]["detail"],
            format!("release {id} not found"),
            "the engine's reason, not an HTTP status"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_reveal_whose_audit_entry_cannot_be_written_reveals_nothing() {
    let app = TestApp::spawn().await;
    let (status, body) = post_json(&app, "/api/v1/apps", json!({"name": "hello"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        &app,
        "/api/v1/apps/hello/env",
        json!({"set": {"SECRET": "hunter2-value"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let release = body["release"]["id"].as_str().expect("id").to_owned();

    // The audit log refuses every write from now on.
    let db = app.data_dir.path().join("data").join("slipway.db");
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    sqlx::query(
        "CREATE TRIGGER audit_full BEFORE INSERT ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is full'); END",
    )
    .execute(&raw)
    .await
    .expect("trigger");

    for path in [
        "/api/v1/apps/hello/env?reveal=true".to_owned(),
        format!("/api/v1/apps/hello/releases/{release}?reveal=true"),
    ] {
        let (status, text) = app.get(&path).await;
        assert!(status >= 500, "{path}: {status} {text}");
        assert!(!text.contains("hunter2-value"), "{path}: {text}");
    }
    let (status, text) = server_fn(
        &app,
        "reveal_env",
        &format!("app=hello&release={release}&key=SECRET"),
    )
    .await;
    assert!(status.is_server_error(), "{status} {text}");
    assert!(!text.contains("hunter2-value"), "{text}");
    // Without the reveal, the value stays masked and readable.
    let (status, text) = app.get("/api/v1/apps/hello/env").await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("hunter2-value"));
    raw.close().await;
    app.shutdown().await;
}

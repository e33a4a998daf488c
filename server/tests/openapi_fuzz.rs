//! The API against its own OpenAPI document: schemathesis generates requests from
//! `/api/v1/openapi.json` (examples, boundary values, then random ones, both well-formed and
//! not) and checks every answer — no 5xx, every status and body as documented, well-formed
//! requests accepted (or refused with a documented 401/403/404/409/422/429), malformed ones
//! refused.
//!
//! Runs the `st` named by `SLIPWAY_SCHEMATHESIS` (`make unit` and `make test` set it to the one
//! `scripts/bootstrap.sh` installs under the build directory); without it the test says it was
//! skipped. Generation is deterministic (schemathesis's deterministic mode, which derandomizes
//! hypothesis, and a fixed seed; one worker; no example database), so every run makes the
//! same requests and a failure reproduces.

mod common;

use common::{api_token, TestApp};
use serde_json::{json, Value};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

/// The path of schemathesis's `st`.
const FUZZER_ENV: &str = "SLIPWAY_SCHEMATHESIS";
/// Fixed, so that every run makes the same requests (deterministic mode needs none, but says
/// so in its report).
const SEED: u64 = 15;
/// Random requests per operation (after the examples and the boundary values).
const MAX_EXAMPLES: u32 = 60;
/// The run is killed after this long.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Checks that must hold for every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,positive_data_acceptance,negative_data_rejection,\
                      ignored_auth";
/// The refusals of well-formed requests the document lists: not signed in (a revoked token),
/// not allowed, no such thing, not in this state, content that cannot be processed (not an
/// archive, a bad manifest), too many sign-in attempts.
const ACCEPTED_REFUSALS: &[&str] = &["401", "403", "404", "409", "422", "429"];
/// The refusals of malformed requests: schemathesis's own list, and 413 (a value over its
/// limit).
const REJECTIONS: &[&str] = &[
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_its_document_says() {
    let Some(st) = std::env::var_os(FUZZER_ENV).map(PathBuf::from) else {
        // Written past the test harness's capture, so that a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the_api_answers_what_its_document_says: {FUZZER_ENV} is not set, so the \
             API fuzzer did not run. `make unit` and `make test` set it to the schemathesis \
             that `scripts/bootstrap.sh fuzzer` installs; to run it alone, see \
             \"The API fuzzer\" in the README."
        );
        return;
    };
    assert!(
        st.is_file(),
        "{FUZZER_ENV}={} is not a file: run `make fuzz-deps`",
        st.display()
    );

    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    let work = tempfile::tempdir().expect("temp dir");
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, config_toml(&seeded)).expect("write the config");

    let started = Instant::now();
    let (ok, report) = run_fuzzer(&st, &config, work.path(), &app).await;
    let took = started.elapsed();
    if !ok {
        let kept = work.keep();
        panic!(
            "schemathesis found problems (after {took:?}; its config and event log are kept in \
             {}):\n{report}",
            kept.display()
        );
    }

    // The run was against a signed-in admin throughout: nothing it did locked the admin out,
    // and what ends or changes its caller ran (and was refused) as the users made for it.
    let whoami = app.get_json("/api/v1/whoami").await;
    assert_eq!(
        whoami["role"], "admin",
        "the admin was locked out: {whoami}"
    );
    for (action, user) in [
        ("logout", "fuzz-logout"),
        ("token.revoke", "fuzz-revoke"),
        ("user.update", "fuzz-admin"),
    ] {
        let by = |actor: &str| format!("/api/v1/audit?action={action}&actor={actor}&limit=1");
        let entries = |v: Value| v["entries"].as_array().map_or(0, Vec::len);
        assert_eq!(
            entries(app.get_json(&by("admin")).await),
            0,
            "{action} as admin"
        );
        assert_eq!(
            entries(app.get_json(&by(user)).await),
            1,
            "no {action} as {user}"
        );
    }
    let summary = report
        .find("API Operations:")
        .map_or(report.as_str(), |at| &report[at..]);
    eprintln!(
        "schemathesis passed in {took:?}, {} requests to the API:\n{summary}",
        requests_made(work.path()),
    );
    app.shutdown().await;
}

/// What [`seed`] made, for the fuzzer to find.
struct Seeded {
    admin_token: String,
    /// An admin of its own for user changes (which could lock their caller out).
    users_token: String,
    /// A user whose token signs out (once; later calls are refused as unauthenticated).
    logout_token: String,
    /// A deployer whose token revokes tokens, and ids of its own tokens to revoke.
    revoke_token: String,
    revocable: Vec<String>,
    /// A user the fuzzer may change.
    target_user: String,
    /// A user and password the fuzzer may sign in with (not the admin, so that failed
    /// attempts never rate-limit it).
    login_user: String,
    login_password: String,
    apps: Vec<String>,
    releases: Vec<String>,
    builds: Vec<String>,
    promotions: Vec<String>,
}

/// An app with releases with and without a build, a build and a promotion, and the users
/// and tokens the fuzzer needs.
async fn seed(app: &TestApp) -> Seeded {
    post(app, "/apps", json!({ "name": "hello" })).await;
    // A release without a build (promoting it is refused), then a build and an env change.
    let r0 = post(
        app,
        "/apps/hello/env",
        json!({ "set": { "GREETING": "hi" } }),
    )
    .await;
    let archive = {
        let dir = engine::testing::example_copy(|s| s);
        engine::artifacts::pack_dir(dir.path()).expect("pack")
    };
    let res = app
        .client
        .post(app.url("/api/v1/apps/hello/builds?description=seed"))
        .header("content-type", "application/gzip")
        .body(archive)
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status().as_u16(), 201);
    let built: Value = res.json().await.expect("JSON");
    let r2 = post(
        app,
        "/apps/hello/env",
        json!({ "set": { "COLOR": "blue" } }),
    )
    .await;
    let r1 = built["release"]["id"].as_str().expect("release").to_owned();
    let promotion = post(
        app,
        &format!("/apps/hello/releases/{r1}/promote"),
        json!({}),
    )
    .await;
    post(app, "/apps", json!({ "name": "empty" })).await;

    let id = |v: &Value| v["release"]["id"].as_str().expect("id").to_owned();
    let mut seeded = Seeded {
        admin_token: app.token.clone(),
        users_token: String::new(),
        logout_token: String::new(),
        revoke_token: String::new(),
        revocable: Vec::new(),
        target_user: "fuzz-target".into(),
        login_user: "fuzz-login".into(),
        login_password: "fuzz-login-password".into(),
        apps: vec!["hello".into(), "empty".into()],
        releases: vec![id(&r0), r1, id(&r2)],
        builds: vec![built["build"]["id"].as_str().expect("build").to_owned()],
        promotions: vec![promotion["id"].as_str().expect("promotion").to_owned()],
    };
    // `app.user` signs each one in; the password is `<name>-password`.
    for (name, role) in [
        ("fuzz-admin", "admin"),
        ("fuzz-logout", "viewer"),
        ("fuzz-revoke", "deployer"),
        ("fuzz-target", "viewer"),
        ("fuzz-login", "viewer"),
    ] {
        app.user(name, role).await;
    }
    seeded.users_token = api_token(app.addr, "fuzz-admin", "fuzz-admin-password").await;
    seeded.logout_token = api_token(app.addr, "fuzz-logout", "fuzz-logout-password").await;
    seeded.revoke_token = api_token(app.addr, "fuzz-revoke", "fuzz-revoke-password").await;
    let revoker = common::client_with_token(&seeded.revoke_token);
    for name in ["spare-1", "spare-2"] {
        let res = revoker
            .post(app.url("/api/v1/tokens"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("token");
        assert_eq!(res.status().as_u16(), 201);
        let body: Value = res.json().await.expect("JSON");
        let id = body["info"]["id"].as_str().expect("token id").to_owned();
        seeded.revocable.push(id);
    }
    seeded
}

/// `POST /api/v1{path}` with `body` as the admin; the answer must be a success.
async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app
        .client
        .post(app.url(&format!("/api/v1{path}")))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("JSON");
    assert!(status < 300, "{path}: {status} {body}");
    body
}

/// A TOML array of strings (the values are names and IDs: nothing to escape).
fn list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The fuzzer's configuration: deterministic generation, the checks, which refusals of
/// well-formed requests are documented, the seeded names and IDs (used in half of the
/// requests where they fit), and the operations that sign out, revoke tokens, change users
/// or sign in made with tokens and users of their own.
fn config_toml(s: &Seeded) -> String {
    let bearer = |token: &str| format!("{{ Authorization = \"Bearer {token}\" }}");
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let accepted = list(&[strings(&["2xx"]), strings(ACCEPTED_REFUSALS)].concat());
    let rejections = list(&strings(REJECTIONS));
    let mut ids = s.releases.clone();
    ids.extend(s.builds.iter().cloned());
    ids.extend(s.promotions.iter().cloned());
    format!(
        r#"
workers = 1
headers = {admin}

[generation]
database = "none"
max-examples = {MAX_EXAMPLES}

[checks.positive_data_acceptance]
expected-statuses = {accepted}

[checks.negative_data_rejection]
expected-statuses = {rejections}

[dictionaries.apps]
values = {apps}
[dictionaries.releases]
values = {releases}
[dictionaries.ids]
values = {ids}
[dictionaries.tokens]
values = {tokens}
[dictionaries.users]
values = {users}
[dictionaries.login-user]
values = {login_user}
[dictionaries.login-password]
values = {login_password}

[parameters]
"path.app" = {{ dictionary = "apps", probability = 0.5 }}
"query.app" = {{ dictionary = "apps", probability = 0.5 }}
"path.id" = {{ dictionary = "ids", probability = 0.5 }}
"query.release" = {{ dictionary = "releases", probability = 0.5 }}
"body.from" = {{ dictionary = "releases", probability = 0.5 }}
"body.base" = {{ dictionary = "releases", probability = 0.5 }}
"body.build" = {{ dictionary = "ids", probability = 0.5 }}

# The event stream never ends: read it for half a second, a few times.
[[operations]]
include-path = "/api/v1/apps/{{app}}/events"
request-timeout = 0.5
generation = {{ max-examples = 5 }}

[[operations]]
include-path = "/api/v1/logout"
headers = {logout}

[[operations]]
include-path = "/api/v1/tokens/{{id}}/revoke"
headers = {revoke}
parameters = {{ "path.id" = {{ dictionary = "tokens", probability = 0.5 }} }}

[[operations]]
include-path-regex = "^/api/v1/users"
headers = {users_auth}
parameters = {{ "path.name" = {{ dictionary = "users", probability = 0.5 }} }}

[[operations]]
include-path = "/api/v1/login"
parameters = {{ "body.user" = {{ dictionary = "login-user", probability = 0.9 }}, "body.password" = {{ dictionary = "login-password", probability = 0.5 }} }}
"#,
        admin = bearer(&s.admin_token),
        apps = list(&s.apps),
        releases = list(&s.releases),
        ids = list(&ids),
        tokens = list(&s.revocable),
        users = list(std::slice::from_ref(&s.target_user)),
        login_user = list(std::slice::from_ref(&s.login_user)),
        login_password = list(std::slice::from_ref(&s.login_password)),
        logout = bearer(&s.logout_token),
        revoke = bearer(&s.revoke_token),
        users_auth = bearer(&s.users_token),
    )
}

/// Runs schemathesis against `app` (bounded by [`RUN_LIMIT`]; killed after it) and returns
/// whether it passed and what it printed.
async fn run_fuzzer(st: &Path, config: &Path, work: &Path, app: &TestApp) -> (bool, String) {
    let out_path = work.join("schemathesis.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("output file");
    let mut child = tokio::process::Command::new(st)
        .arg("--config-file")
        .arg(config)
        .arg("--no-color")
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .arg("--generation-deterministic")
        .args(["--seed", &SEED.to_string()])
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(work.join("events.ndjson"))
        .current_dir(work)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", st.display()));
    let status = match tokio::time::timeout(RUN_LIMIT, child.wait()).await {
        Ok(status) => Some(status.expect("wait for schemathesis")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), printed),
        None => (
            false,
            format!("{printed}\n(killed: still running after {RUN_LIMIT:?})"),
        ),
    }
}

/// How many requests the run made (the interactions in its event log), for the record.
fn requests_made(work: &Path) -> usize {
    let events = std::fs::read_to_string(work.join("events.ndjson")).unwrap_or_default();
    events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| {
            event["ScenarioFinished"]["recorder"]["interactions"]
                .as_object()
                .map(|i| i.len())
        })
        .sum()
}

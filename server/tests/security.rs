//! The security suite: a real server attacked the way an outsider, a viewer or a deployed app
//! would. Paths in disguise against every page and server function, HEAD and every method
//! against the route table, server functions without the middleware in front, the preview
//! oracle, sign-in redirects, the CSRF and Host matrix, and a build and an app that try to
//! reach the server's secrets. (Archives, the apps' router, the audit log and sessions have
//! suites of their own: `security_*.rs` here and `engine/tests/router_proxy.rs`.)

mod common;

use common::{TestApp, ADMIN_PASSWORD, WAIT};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A secret value the tests look for in answers that must not have it.
const SECRET: &str = "s3cr3t-value-nobody-may-see";

/// One raw HTTP/1.1 request, bytes exactly as given (clients normalise `..` and `%2e%2e`
/// away, attackers do not). Returns the status and the whole answer.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = if method == "POST" { "app=hello" } else { "" };
    if method == "POST" {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let answer = tokio::time::timeout(WAIT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .expect("the server answers");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// An app `hello` with a secret value in its newest release.
async fn seed(app: &TestApp) {
    let res = app
        .client
        .post(app.url("/api/v1/apps"))
        .json(&json!({ "name": "hello" }))
        .send()
        .await
        .expect("create app");
    assert_eq!(res.status(), 201);
    let res = app
        .client
        .post(app.url("/api/v1/apps/hello/env"))
        .json(&json!({ "set": { "DATABASE_PASSWORD": SECRET } }))
        .send()
        .await
        .expect("set env");
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

/// Every page of the Console, its parameters filled in.
fn pages() -> Vec<String> {
    let mut pages: Vec<String> = leptos_axum::generate_route_list(app::App)
        .iter()
        .map(|r| {
            r.path()
                .replace(":app", "hello")
                .replace("{app}", "hello")
                .replace(":id", "RAAAAAAAAAA")
                .replace("{id}", "RAAAAAAAAAA")
        })
        .collect();
    pages.sort();
    pages.dedup();
    assert!(
        pages.len() >= 8,
        "the route list is suspiciously short: {pages:?}"
    );
    pages
}

fn server_functions() -> Vec<&'static str> {
    let paths: Vec<&'static str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path)
        .collect();
    assert!(paths.len() > 10, "server functions not registered?");
    paths
}

#[tokio::test]
async fn dot_segments_never_reach_a_page_or_a_server_function() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let mut targets: Vec<(String, &str)> = pages()
        .into_iter()
        .filter(|p| p != "/login")
        .map(|p| (p, "GET"))
        .collect();
    targets.extend(
        server_functions()
            .into_iter()
            .map(|p| (p.to_owned(), "POST")),
    );
    targets.push(("/api/v1/apps/hello/env".into(), "GET"));
    for (target, method) in &targets {
        let rest = target.trim_start_matches('/');
        for variant in [
            format!("/pkg/../{rest}"),
            format!("/pkg/./../{rest}"),
            format!("/pkg/%2e%2e/{rest}"),
            format!("/pkg/%2E%2E/{rest}"),
            format!("/pkg/%2e%2E/{rest}"),
            format!("/pkg/.%2e/{rest}"),
            format!("/pkg/%2e./{rest}"),
            format!("/pkg/..%2f{rest}"),
            format!("/pkg/%2e%2e%2f{rest}"),
            format!("/pkg/..%5c{rest}"),
            format!("/favicon.svg/../{rest}"),
            format!("/healthz/../{rest}"),
            format!("/login/../{rest}"),
        ] {
            let (status, answer) = raw(app.addr, method, &variant, &[]).await;
            assert_eq!(status, 400, "{method} {variant}: {answer}");
            for leak in ["hello", "DATABASE_PASSWORD", SECRET, "admin"] {
                assert!(
                    !answer.contains(leak),
                    "{method} {variant} leaked {leak}: {answer}"
                );
            }
        }
    }
    app.shutdown().await;
}

#[tokio::test]
async fn only_the_sites_files_are_public_and_every_page_needs_a_user() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let stranger = no_redirects();
    for page in pages().iter().filter(|p| *p != "/login") {
        for method in [Method::GET, Method::HEAD] {
            let res = stranger
                .request(method.clone(), app.url(page))
                .send()
                .await
                .expect("request");
            assert!(
                res.status().is_redirection(),
                "{method} {page}: {}",
                res.status()
            );
            let location = res.headers()[header::LOCATION].to_str().expect("location");
            assert!(location.starts_with("/login?next="), "{location}");
            let body = res.text().await.unwrap_or_default();
            assert!(
                !body.contains("hello") && !body.contains(SECRET),
                "{page}: {body}"
            );
        }
    }
    // Files that are not the built site's are not served, and nothing else under /pkg is a
    // page.
    for path in [
        "/pkg/nope.js",
        "/pkg/",
        "/pkg/slipway.db",
        "/favicon.ico",
        "/Cargo.toml",
    ] {
        let res = stranger.get(app.url(path)).send().await.expect("GET");
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert!(
            status == StatusCode::NOT_FOUND || status.is_redirection(),
            "{path}: {status}"
        );
        assert!(
            !body.contains("<html") && !body.contains("hello"),
            "{path}: {body}"
        );
    }
    app.shutdown().await;
}

/// The server functions check the caller themselves: served here by Leptos alone, with no
/// access middleware in front, each refuses a caller who is not signed in.
#[tokio::test]
async fn server_functions_refuse_strangers_even_without_the_middleware() {
    let data = tempfile::tempdir().expect("temp dir");
    let router = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let engine = engine::Engine::start(
        engine::EngineConfig::new(
            format!("sqlite://{}/slipway.db?mode=rwc", data.path().display()),
            data.path().join("data"),
        ),
        router,
    )
    .await
    .expect("engine");
    let auth = engine::Auth::new(engine.store().clone(), engine::AuthConfig::for_tests());
    auth.bootstrap_admin(Some(ADMIN_PASSWORD))
        .await
        .expect("admin");
    engine
        .create_app(
            &engine::AppName::parse("hello").expect("name"),
            &engine::Actor::new("t"),
        )
        .await
        .expect("app");
    let console = app::context::ConsoleContext::new(
        std::time::SystemTime::now(),
        engine.clone(),
        auth,
        data.path().to_path_buf(),
    );
    let bare = axum::Router::new().route(
        "/api/{*name}",
        axum::routing::post(move |req: axum::extract::Request| {
            let console = console.clone();
            leptos_axum::handle_server_fns_with_context(
                move || leptos::prelude::provide_context(console.clone()),
                req,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, bare).await });
    let client = reqwest::Client::new();
    // Every field any server function takes, so that each gets as far as its own check.
    let form = "app=hello&release=RAAAAAAAAAA&id=TAAAAAAAAAA&key=DATABASE_PASSWORD&base=&paste=\
                &username=someone&name=someone&password=x&role=viewer&next=/&disabled=false";
    for path in server_functions() {
        if path == <app::pages::login::Login as leptos::server_fn::ServerFn>::PATH {
            continue;
        }
        let res = client
            .post(format!("http://{addr}{path}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .expect("POST");
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert!(
            body.contains("Unauthorized") && body.contains("sign in first"),
            "{path} answered a stranger without the middleware: {status} {body}"
        );
    }
    server.abort();
    engine.shutdown().await;
}

#[tokio::test]
async fn head_and_every_method_are_checked_like_get() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let viewer = app.user("vera", "viewer").await;
    let stranger = reqwest::Client::new();
    // HEAD needs what GET needs: a viewer cannot list users or learn a value's length.
    for (path, want) in [
        ("/api/v1/users", StatusCode::FORBIDDEN),
        ("/api/v1/apps/hello/env?reveal=true", StatusCode::FORBIDDEN),
        ("/api/v1/apps/hello/env", StatusCode::OK),
    ] {
        let res = viewer.head(app.url(path)).send().await.expect("HEAD");
        assert_eq!(res.status(), want, "viewer HEAD {path}");
    }
    for route in server::api::routes() {
        let path = format!("{}{}", server::api::PREFIX, route.path)
            .replace("{app}", "hello")
            .replace("{id}", "RAAAAAAAAAA")
            .replace("{name}", "nobody");
        if route.method == Method::GET && route.need != app::policy::Need::Anyone {
            let res = stranger.head(app.url(&path)).send().await.expect("HEAD");
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "anonymous HEAD {path}"
            );
        }
        for method in [Method::PUT, Method::DELETE, Method::PATCH] {
            let res = stranger
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .expect("request");
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "anonymous {method} {path}"
            );
            let res = app
                .client
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .expect("request");
            assert_eq!(
                res.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "admin {method} {path}"
            );
        }
    }
    // Server functions answer to no GET from strangers either.
    for path in server_functions() {
        if path == <app::pages::login::Login as leptos::server_fn::ServerFn>::PATH {
            continue;
        }
        let res = stranger.get(app.url(path)).send().await.expect("GET");
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "anonymous GET {path}"
        );
    }
    app.shutdown().await;
}

/// A preview compares against the stored values: a viewer could confirm a guess with it.
#[tokio::test]
async fn a_viewer_cannot_confirm_a_guessed_secret() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let viewer = app.user("vera", "viewer").await;
    let deployer = app.user("dora", "deployer").await;
    let releases = app.get_json("/api/v1/apps/hello/releases").await;
    let base = releases["releases"][0]["id"]
        .as_str()
        .expect("release")
        .to_owned();
    let guess = format!(
        "app=hello&base={base}&rows[0][key]=DATABASE_PASSWORD&rows[0][value]={SECRET}&rows[0][original]=DATABASE_PASSWORD"
    );
    let preview = |client: &reqwest::Client| {
        client
            .post(app.url("/api/preview_env"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(guess.clone())
            .send()
    };
    let res = preview(&viewer).await.expect("POST");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap_or_default();
    assert!(!body.contains("change") && !body.contains(SECRET), "{body}");
    let res = preview(&deployer).await.expect("POST");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap_or_default()
    );
    app.shutdown().await;
}

#[tokio::test]
async fn sign_in_redirects_only_to_plain_same_site_paths() {
    let app = TestApp::spawn().await;
    let origin = app.url("");
    let sign_in = |next: &str, password: &str| {
        let body = format!(
            "username=admin&password={}&next={}",
            url_encode(password),
            url_encode(next)
        );
        no_redirects()
            .post(app.url("/api/login"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "text/html")
            .header(header::ORIGIN, origin.clone())
            .body(body)
            .send()
    };
    let bad = [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "http:evil.example",
        "/ok\r\nSet-Cookie: pwned=1",
        "/ok\0nul",
        " /leading-space",
        "javascript:alert(1)",
    ];
    let signed_in = |res: &reqwest::Response| {
        res.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| c.starts_with("slipway_session=") && !c.starts_with("slipway_session=;"))
    };
    for next in bad {
        let res = sign_in(next, ADMIN_PASSWORD).await.expect("login");
        let status = res.status();
        assert!(status.is_redirection(), "{next:?}: {status}");
        assert!(signed_in(&res), "{next:?}: not signed in");
        assert_eq!(res.headers()[header::LOCATION], "/", "{next:?}");
        assert!(res.headers().get("pwned").is_none());
    }
    let res = sign_in("/apps/hello/releases?page=2", ADMIN_PASSWORD)
        .await
        .expect("login");
    assert!(signed_in(&res));
    assert_eq!(
        res.headers()[header::LOCATION],
        "/apps/hello/releases?page=2"
    );
    // A wrong password with any of these `next` values is an error, never a crash.
    for next in bad {
        let res = sign_in(next, "wrong").await.expect("login");
        assert!(!signed_in(&res), "{next:?}");
        assert!(
            !res.status().is_server_error(),
            "{next:?}: {}",
            res.status()
        );
    }
    app.shutdown().await;
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A session cookie for `admin`, signed in like the Console's form.
async fn session_cookie(app: &TestApp) -> String {
    let res = reqwest::Client::new()
        .post(app.url("/api/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .header(header::ORIGIN, app.url(""))
        .body(format!("username=admin&password={ADMIN_PASSWORD}&next=/"))
        .send()
        .await
        .expect("login");
    assert!(res.status().is_success(), "{}", res.status());
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("slipway_session="))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned()
}

#[tokio::test]
async fn csrf_needs_a_same_origin_and_dns_rebinding_hosts_are_refused() {
    let app = TestApp::spawn().await;
    let cookie = session_cookie(&app).await;
    let cookie_header = ("Cookie", cookie.as_str());
    let own = format!("http://{}", app.addr);
    let page = format!("http://{}/apps", app.addr);
    let other_port = format!("http://127.0.0.1:{}", app.addr.port() + 1);
    let localhost = format!("localhost:{}", app.addr.port());
    // A state change (a POST to a server function) with a session cookie.
    for (headers, want) in [
        (vec![cookie_header], 403),
        (vec![cookie_header, ("Origin", "http://evil.example")], 403),
        (vec![cookie_header, ("Origin", "null")], 403),
        (vec![cookie_header, ("Origin", other_port.as_str())], 403),
        (
            vec![cookie_header, ("Referer", "http://evil.example/x")],
            403,
        ),
        (vec![cookie_header, ("Origin", own.as_str())], 200),
        (vec![cookie_header, ("Referer", page.as_str())], 200),
    ] {
        let (status, answer) = raw(app.addr, "POST", "/api/list_apps", &headers).await;
        assert_eq!(status, want, "{headers:?}: {answer}");
    }
    // An API token is not sent by browsers on their own: no Origin needed.
    let token = format!("Bearer {}", app.token);
    let (status, answer) = raw(
        app.addr,
        "POST",
        "/api/list_apps",
        &[("Authorization", token.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // Hosts: this Console's address and loopback names only.
    for (host, refused) in [
        ("evil.example", true),
        ("rebind.attacker.example:3000", true),
        ("10.0.0.5", true),
        (localhost.as_str(), false),
        ("127.0.0.1", false),
    ] {
        for (method, path) in [
            ("GET", "/audit"),
            ("GET", "/api/v1/apps"),
            ("POST", "/api/list_apps"),
        ] {
            let (status, answer) =
                raw(app.addr, method, path, &[("Host", host), cookie_header]).await;
            if refused {
                assert_eq!(status, 421, "{method} {path} Host {host}: {answer}");
                assert!(!answer.contains("admin"), "{answer}");
            } else {
                assert_ne!(status, 421, "{method} {path} Host {host}: {answer}");
            }
        }
    }
    // The health check answers whatever the Host (load balancers ask by address).
    let (status, _) = raw(app.addr, "GET", "/healthz", &[("Host", "10.0.0.5")]).await;
    assert_eq!(status, 200);
    app.shutdown().await;

    // With a public URL, that name is accepted and other addresses are not.
    let app = TestApp::spawn_with(|c| {
        c.public_url = Some(url::Url::parse("https://console.example.com").expect("url"));
    })
    .await;
    for (host, refused) in [
        ("console.example.com", false),
        ("console.example.com:443", false),
        ("console.example.com:8443", true),
        ("evil.example", true),
        ("10.0.0.5:3000", true),
        ("127.0.0.1", false),
    ] {
        let (status, answer) = raw(app.addr, "GET", "/api/v1/apps", &[("Host", host)]).await;
        if refused {
            assert_eq!(status, 421, "Host {host}: {answer}");
        } else {
            assert_eq!(status, 401, "Host {host}: {answer}");
        }
    }
    app.shutdown().await;
}

/// A build and an app that try to read the database, the server's environment and another
/// app's source: every attempt fails, and they say so in files the app then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_and_apps_cannot_reach_the_servers_secrets() {
    let app = TestApp::spawn().await;
    let data = std::fs::canonicalize(app.data_dir.path().join("data")).expect("data dir");
    for name in ["other", "prober"] {
        let res = app
            .client
            .post(app.url("/api/v1/apps"))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("create app");
        assert_eq!(res.status(), 201);
    }
    // Another app's source, with a secret of its own.
    let other = tempfile::tempdir().expect("dir");
    std::fs::write(
        other.path().join("slipway.yml"),
        "services:\n  web:\n    command: sleep 1000\n",
    )
    .expect("write");
    std::fs::write(other.path().join("secret.txt"), "OTHER-APP-SECRET").expect("write");
    upload(&app, "other", other.path()).await;

    let pid = std::process::id();
    let probe = format!(
        r#"out="probe-$1.txt"
try() {{ if cat "$2" >/dev/null 2>&1; then echo "$1: READ"; else echo "$1: refused"; fi; }}
{{
  try db "{data}/slipway.db"
  try environ /proc/{pid}/environ
  try mem /proc/{pid}/maps
  if cat "{data}"/sources/*/secret.txt "{data}"/sources/*/*/secret.txt 2>/dev/null | grep -q OTHER-APP-SECRET; then echo "other: READ"; else echo "other: refused"; fi
  if ls "{data}" 2>/dev/null | grep -q slipway.db; then echo "listing: READ"; else echo "listing: refused"; fi
  if env | grep -q -e CARGO -e SLIPWAY_ADMIN; then echo "env: LEAKED"; else echo "env: clean"; fi
  if echo x > "{data}/planted" 2>/dev/null; then echo "write: DONE"; else echo "write: refused"; fi
  echo "done"
}} > "$out"
if [ "$1" = run ]; then exec python3 -m http.server --bind 127.0.0.1 "$PORT"; fi
"#,
        data = data.display()
    );
    let prober = tempfile::tempdir().expect("dir");
    std::fs::write(prober.path().join("probe.sh"), probe).expect("write");
    std::fs::write(
        prober.path().join("slipway.yml"),
        "build: sh probe.sh build\nservices:\n  web:\n    command: sh probe.sh run\n    port: 8000\n    health: /\n",
    )
    .expect("write");
    let release = upload(&app, "prober", prober.path()).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/apps/prober/releases/{release}/promote")))
        .json(&json!({}))
        .send()
        .await
        .expect("promote");
    assert_eq!(res.status(), 202);
    let promotion: Value = res.json().await.expect("JSON");
    let id = promotion["id"].as_str().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = app.get_json(&format!("/api/v1/promotions/{id}")).await;
        let state = body["promotion"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state != "running" {
            assert_eq!(state, "active", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "promotion never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: Value = app
        .client
        .post(app.url("/api/get_server_info"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .expect("server info")
        .json()
        .await
        .expect("JSON");
    let router_port = info["router_port"].as_u64().expect("router port");
    assert_ne!(info["isolation"], "environment-only", "{info}");
    for stage in ["build", "run"] {
        let text = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{router_port}/probe-{stage}.txt"))
            .header(header::HOST, "prober.localhost")
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert!(
            text.contains("done"),
            "{stage}: the probe did not run: {text}"
        );
        for line in [
            "db: refused",
            "environ: refused",
            "mem: refused",
            "other: refused",
            "listing: refused",
            "env: clean",
            "write: refused",
        ] {
            assert!(text.contains(line), "{stage}: {line:?} missing in\n{text}");
        }
    }
    assert!(!data.join("planted").exists());
    app.shutdown().await;
}

/// Uploads `dir` as a build of `app`; returns its release's ID.
async fn upload(app: &TestApp, name: &str, dir: &std::path::Path) -> String {
    let archive = engine::artifacts::pack_dir(dir).expect("pack");
    let res = app
        .client
        .post(app.url(&format!("/api/v1/apps/{name}/builds")))
        .header(header::CONTENT_TYPE, "application/gzip")
        .body(archive)
        .send()
        .await
        .expect("upload");
    let status = res.status();
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(status, 201, "{body}");
    body["release"]["id"].as_str().expect("release").to_owned()
}

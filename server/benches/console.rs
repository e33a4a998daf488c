//! Console SSR benchmark (`make bench`, or `cargo bench -p server --bench console`).
//!
//! Serves the real application (release build, SQLite) with an app of 10,000 releases and, in
//! the same run, a bare axum handler that answers a static page of exactly the same size. Each
//! is loaded with `wrk` (Debian's) for the same time and connections; prints a Markdown table
//! with requests/s, p50 and p99 latency and the throughput ratio (goal ≥ 0.5). Results are kept
//! in docs/benchmarks.md.

use std::process::Command;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const RELEASES: usize = 10_000;
const PAGE: &str = "/apps/bench/releases";
/// The second app: as many releases, with an environment of this many variables.
const WIDE_VARS: usize = 200;
const WIDE_PAGE: &str = "/apps/wide/releases";
const WIDE_API: &str = "/api/v1/apps/wide/releases";
const ADMIN_PASSWORD: &str = "bench-admin-password";

/// wrk's settings: two threads (the machine's cores are shared with the server), 32
/// connections, 10 seconds.
const WRK_ARGS: [&str; 6] = ["-t2", "-c32", "-d10s", "--latency", "--timeout", "5s"];

struct Load {
    requests_per_sec: f64,
    p50: String,
    p99: String,
    non_2xx: bool,
}

fn wrk(url: &str, token: &str) -> Load {
    let out = Command::new("wrk")
        .args(WRK_ARGS)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(url)
        .output()
        .expect("wrk runs (make bench installs it from Debian)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
    };
    Load {
        requests_per_sec: field("Requests/sec:").parse().expect("requests/sec"),
        p50: field("50%"),
        p99: field("99%"),
        non_2xx: text.contains("Non-2xx"),
    }
}

/// Seeds `bench` (10,000 releases, one variable) and `wide` (10,000 releases, 200 variables);
/// returns how long `bench` took.
async fn seed(data_dir: &std::path::Path) -> Duration {
    let router = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let engine = engine::Engine::start(
        engine::EngineConfig::new(
            data_dir.join("slipway.db").display().to_string(),
            data_dir.to_path_buf(),
        ),
        router,
    )
    .await
    .expect("engine starts");
    let app = engine::AppName::parse("bench").expect("name");
    let actor = engine::Actor::new("bench");
    engine.create_app(&app, &actor).await.expect("app");
    let start = Instant::now();
    for i in 0..RELEASES {
        let change = engine::EnvChange::set_from_args([format!("COUNTER={i}")]).expect("change");
        engine
            .change_env(&app, &change, None, None, &actor)
            .await
            .expect("env change");
    }
    let took = start.elapsed();
    let wide = engine::AppName::parse("wide").expect("name");
    engine.create_app(&wide, &actor).await.expect("app");
    let vars = (0..WIDE_VARS).map(|i| format!("SETTING_{i:03}=value-{i}-of-a-typical-config-var"));
    let change = engine::EnvChange::set_from_args(vars).expect("change");
    engine
        .change_env(&wide, &change, None, None, &actor)
        .await
        .expect("env change");
    for i in 1..RELEASES {
        let change =
            engine::EnvChange::set_from_args([format!("SETTING_{:03}=round-{i}", i % WIDE_VARS)])
                .expect("change");
        engine
            .change_env(&wide, &change, None, None, &actor)
            .await
            .expect("env change");
    }
    engine.shutdown().await;
    took
}

/// The real server on the seeded data dir, with a signed-in API token.
struct Served {
    addr: std::net::SocketAddr,
    token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), server::Error>>,
}

/// Serves the seeded data dir with the given page cache.
async fn serve(data_dir: &std::path::Path, page_cache_ms: u64) -> Served {
    let mut config = server::Config::on_loopback(data_dir.to_path_buf(), ADMIN_PASSWORD);
    config.page_cache_ms = page_cache_ms;
    let listener = TcpListener::bind(config.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        server::serve(&config, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    // Every request is signed in (an API token), as a real user's are.
    let client = reqwest::Client::new();
    let mut token = String::new();
    for _ in 0..100 {
        let res = client
            .post(format!("http://{addr}/api/v1/login"))
            .json(&serde_json::json!({ "user": "admin", "password": ADMIN_PASSWORD }))
            .send()
            .await;
        if let Ok(res) = res {
            let body: serde_json::Value = res.json().await.expect("JSON");
            token = body["token"].as_str().expect("token").to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Served {
        addr,
        token,
        stop,
        server,
    }
}

impl Served {
    /// `GET path` once (the answer, which must contain `expect`), then under wrk's load.
    async fn load(&self, path: &str, expect: &str) -> (Load, String) {
        let url = format!("http://{}{path}", self.addr);
        let body = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert!(body.contains(expect), "{path} did not answer {expect:?}");
        // wrk blocks: run it off the runtime so the server keeps running.
        let token = self.token.clone();
        let load = tokio::task::spawn_blocking(move || wrk(&url, &token))
            .await
            .expect("wrk");
        (load, body)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server).await;
    }
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let seeded_in = seed(&data_dir).await;

    let served = serve(&data_dir, 0).await;
    let (uncached, page) = served.load(PAGE, "data-release=").await;
    let (wide_page, wide_html) = served.load(WIDE_PAGE, "data-release=").await;
    let (wide_api, wide_json) = served.load(WIDE_API, "\"releases\"").await;
    served.stop().await;
    let served = serve(&data_dir, 1000).await;
    let (cached, _) = served.load(PAGE, "data-release=").await;
    served.stop().await;

    // A bare axum handler answering a page of the same size.
    let same_size = "x".repeat(page.len());
    let bare = axum::Router::new().route(
        PAGE,
        axum::routing::get(move || {
            let body = same_size.clone();
            async move { axum::response::Html(body) }
        }),
    );
    let bare_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bare_addr = bare_listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(bare_listener, bare).await });
    let bare_url = format!("http://{bare_addr}{PAGE}");
    let bare = tokio::task::spawn_blocking(move || wrk(&bare_url, "none"))
        .await
        .expect("wrk");
    assert!(
        [&uncached, &cached, &bare, &wide_page, &wide_api]
            .iter()
            .all(|l| !l.non_2xx),
        "non-2xx answers during the load"
    );

    let ratio = |l: &Load| l.requests_per_sec / bare.requests_per_sec;
    println!("## Console SSR: Releases page with {RELEASES} releases\n");
    println!("Command: `make bench` → `cargo bench -p server --bench console`: `wrk {} -H 'Authorization: Bearer …'` against each, one after the other in one run; page size {} bytes (first 50 releases); seeding took {:.1} s.\n", WRK_ARGS.join(" "), page.len(), seeded_in.as_secs_f64());
    println!("| server | requests/s | p50 | p99 | ratio to bare |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, l) in [
        (
            "Slipway, `GET /apps/bench/releases`, rendered every time (`--page-cache-ms 0`)",
            &uncached,
        ),
        (
            "Slipway, same, default page cache (`--page-cache-ms 1000`)",
            &cached,
        ),
        ("bare axum, static page of the same size", &bare),
    ] {
        println!(
            "| {name} | {:.0} | {} | {} | {:.2} |",
            l.requests_per_sec,
            l.p50,
            l.p99,
            ratio(l)
        );
    }
    println!(
        "\nRatio (default configuration) / bare: {:.2} (goal ≥ 0.5) {}",
        ratio(&cached),
        if ratio(&cached) >= 0.5 { "✅" } else { "❌" }
    );
    println!("\n## Lists with {RELEASES} releases of {WIDE_VARS} variables\n");
    println!("Command: same run; `wide` has {RELEASES} releases whose environment has {WIDE_VARS} variables; each list is its newest 50, rendered every time (`--page-cache-ms 0`).\n");
    println!("| list | bytes | requests/s | p50 | p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, bytes, l) in [
        (format!("`GET {WIDE_API}`"), wide_json.len(), &wide_api),
        (
            format!("`GET {WIDE_PAGE}` (Console)"),
            wide_html.len(),
            &wide_page,
        ),
    ] {
        println!(
            "| {name} | {bytes} | {:.0} | {} | {} |",
            l.requests_per_sec, l.p50, l.p99
        );
    }
}

//! Starts the real application on port 0 and talks HTTP to it.

use leptos::server_fn::ServerFn;
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

struct TestApp {
    addr: SocketAddr,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::Error>>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    async fn spawn() -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let config = server::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            router_listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: data_dir.path().join("data"),
            database_url: None,
        };
        let listener = TcpListener::bind(config.listen).await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(&config, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        TestApp {
            addr,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task,
            _data_dir: data_dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// Stops the server and waits (bounded) for it to finish.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10s")
            .expect("server task did not panic");
        result.expect("server ended without error");
    }
}

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
    assert!(body.contains("No apps yet."), "{body}");
    // SsrMode::Async: the server fn's result is in the first response, no JS needed
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
    assert!(body.contains("/pkg/slipway.css"), "{body}");
    assert!(body.contains("/pkg/slipway.js"), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn releases_page_names_the_app() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/apps/nope/releases").await;
    assert_eq!(status, 200);
    assert!(body.contains("<code>nope</code>"), "{body}");
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
    assert!(app._data_dir.path().join("data").is_dir());
    app.shutdown().await;
}

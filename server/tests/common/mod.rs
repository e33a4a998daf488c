//! Shared by the HTTP tests: the real application started on port 0 with a fresh data dir.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

/// The first admin's password in every test server.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub struct TestApp {
    pub addr: SocketAddr,
    /// Signed in as `admin` (an API token in every request).
    pub client: reqwest::Client,
    /// The admin's API token.
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), server::Error>>,
    pub data_dir: tempfile::TempDir,
}

/// The test servers' configuration, on port 0, with `data_dir`.
pub fn config(data_dir: &std::path::Path) -> server::Config {
    let mut config = server::Config::on_loopback(data_dir.to_path_buf(), ADMIN_PASSWORD);
    config.auth = engine::AuthConfig::for_tests();
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with the config changed by `tweak` (auth settings, a manual clock, ...).
    pub async fn spawn_with(tweak: impl FnOnce(&mut server::Config)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(&data_dir.path().join("data"));
        tweak(&mut config);
        let listener = TcpListener::bind(config.listen).await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(&config, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        let token = api_token(addr, "admin", ADMIN_PASSWORD).await;
        TestApp {
            addr,
            client: client_with_token(&token),
            token,
            stop: Some(stop),
            task,
            data_dir,
        }
    }

    /// `GET path` as the admin, answered with JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// A client signed in as `user` (with an API token).
    pub async fn client_for(&self, user: &str, password: &str) -> reqwest::Client {
        client_with_token(&api_token(self.addr, user, password).await)
    }

    /// Creates a user with `role` (as the admin) and returns a client signed in as them.
    pub async fn user(&self, name: &str, role: &str) -> reqwest::Client {
        let password = format!("{name}-password");
        let res = self
            .client
            .post(self.url("/api/v1/users"))
            .json(&serde_json::json!({ "name": name, "password": password, "role": role }))
            .send()
            .await
            .expect("create user");
        assert_eq!(
            res.status().as_u16(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
        self.client_for(name, &password).await
    }

    /// "Deploy the example app" as the admin, like the Console's button (a server function);
    /// the rollout goes on in the background.
    pub async fn deploy_example(&self) {
        let res = self
            .client
            .post(self.url("/api/deploy_example"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("")
            .send()
            .await
            .expect("deploy");
        assert_eq!(res.status(), 200);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self.client.get(self.url(path)).send().await.expect("GET");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn shutdown(mut self) {
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

/// Signs in through the API and returns the new token.
pub async fn api_token(addr: SocketAddr, user: &str, password: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/login"))
        .json(&serde_json::json!({ "user": user, "password": password }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status().as_u16(), 201, "login as {user}");
    let body: serde_json::Value = res.json().await.expect("JSON");
    body["token"].as_str().expect("token").to_string()
}

/// A client that sends `token` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

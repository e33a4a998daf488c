//! Shared set-up for the engine's integration tests: a real engine on a fresh SQLite file
//! and data dir, its router on port 0, and the example app copied into a temporary directory.
#![allow(dead_code)]

use engine::*;
use std::path::Path;
use std::time::Duration;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct TestEngine {
    pub engine: Engine,
    pub data: tempfile::TempDir,
    pub app: AppName,
    pub actor: Actor,
}

pub fn config(data: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(
        format!("sqlite://{}", data.join("slipway.db").display()),
        data.to_path_buf(),
    );
    config.stop_grace = Duration::from_secs(3);
    config.drain_timeout = Duration::from_secs(10);
    config
}

pub async fn start_engine(data: &Path) -> Engine {
    let router = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Engine::start(config(data), router).await.unwrap()
}

impl TestEngine {
    pub async fn new() -> TestEngine {
        let data = tempfile::tempdir().unwrap();
        let engine = start_engine(data.path()).await;
        let app = AppName::parse("hello").unwrap();
        let actor = Actor::new("tester");
        engine.create_app(&app, &actor).await.unwrap();
        TestEngine {
            engine,
            data,
            app,
            actor,
        }
    }

    /// Builds the example app (its manifest edited by `tweak`) and returns its release.
    pub async fn build(&self, tweak: impl Fn(String) -> String) -> Release {
        let src = example_copy(tweak);
        let (_, release) = self
            .engine
            .create_build(
                &self.app,
                BuildSource::Directory(src.path().into()),
                Some("example"),
                None,
                &self.actor,
            )
            .await
            .unwrap();
        release
    }

    /// Builds `dir` with no description of its own.
    pub async fn build_dir(&self, dir: &Path) -> engine::Result<(Build, Release)> {
        self.engine
            .create_build(
                &self.app,
                BuildSource::Directory(dir.into()),
                None,
                None,
                &self.actor,
            )
            .await
    }

    /// Builds the example app and promotes it; the release is active when this returns.
    pub async fn deploy(&self, tweak: impl Fn(String) -> String) -> Release {
        let release = self.build(tweak).await;
        let p = self.promote_and_wait(&release.id, None).await;
        assert_eq!(p.state, PromotionState::Active, "{p:?}");
        release
    }

    pub async fn set_env(&self, pairs: &[&str]) -> Release {
        let change = EnvChange::set_from_args(pairs.iter().copied()).unwrap();
        self.engine
            .change_env(&self.app, &change, None, None, &self.actor)
            .await
            .unwrap()
    }

    pub async fn promote(&self, release: &ReleaseId, deadline: Option<Duration>) -> Promotion {
        self.engine
            .promote(
                &self.app,
                release,
                &PromoteOptions { deadline },
                &self.actor,
            )
            .await
            .unwrap()
    }

    /// Promotes and waits (bounded) for the promotion to end.
    pub async fn promote_and_wait(
        &self,
        release: &ReleaseId,
        deadline: Option<Duration>,
    ) -> Promotion {
        let p = self.promote(release, deadline).await;
        self.wait(&p.id).await
    }

    pub async fn wait(&self, id: &PromotionId) -> Promotion {
        let p = self.engine.wait_for_promotion(id, WAIT).await.unwrap();
        assert!(
            p.state.is_finished(),
            "promotion {id} did not finish within {WAIT:?}"
        );
        p
    }

    /// The promotion's steps, as data.
    pub async fn events(&self, id: &PromotionId) -> Vec<Step> {
        let detail = self.engine.promotion(id).await.unwrap();
        detail.events.into_iter().map(|e| e.step).collect()
    }

    pub fn client(&self) -> reqwest::Client {
        client_for(&self.engine)
    }

    pub fn url(&self, path: &str) -> String {
        url_for(&self.engine, path)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = self.client().get(self.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    }
}

/// A client that reaches `web.hello.localhost` at the engine's router.
pub fn client_for(engine: &Engine) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve("web.hello.localhost", engine.router_addr())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn url_for(engine: &Engine, path: &str) -> String {
    format!(
        "http://web.hello.localhost:{}{path}",
        engine.router_addr().port()
    )
}

pub use engine::testing::example_copy;

pub fn unchanged(s: String) -> String {
    s
}

/// The example's manifest with a short health grace, so that failing health is seen sooner.
pub fn short_grace(s: String) -> String {
    s.replace("grace: 10", "grace: 2")
}

/// Pids in `/proc` that are alive (not zombies).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The pid of a process that started, from its step.
pub fn pid_in(step: &Step) -> Option<u32> {
    match step {
        Step::Started { pid, .. } => *pid,
        _ => None,
    }
}

/// Whether `step` is a started process.
pub fn is_started(step: &Step) -> bool {
    matches!(step, Step::Started { .. })
}

/// Kills a child process (a server run as this test binary) if the test ends early.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rest of the first line of the child's stdout after `READY `, waited for (bounded by
/// `wait`).
pub fn ready_line(child: &mut KillOnDrop, wait: Duration) -> String {
    use std::io::{BufRead, BufReader};
    let stdout = child.0.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness may have printed the test's name on the same line.
            if let Some((_, rest)) = line.split_once("READY ") {
                let _ = tx.send(rest.to_owned());
                return;
            }
        }
    });
    rx.recv_timeout(wait).expect("the child never got ready")
}

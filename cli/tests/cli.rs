//! The `slipway` binary against a real server (port 0, fresh SQLite file), as a user runs it.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

struct Server {
    host: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::Error>>,
    _data: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let config = server::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            router_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().join("data"),
            database_url: None,
            examples_dir: engine::testing::example_dir()
                .parent()
                .unwrap()
                .to_path_buf(),
        };
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let host = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(&config, listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Server {
            host,
            stop: Some(stop),
            task,
            _data: data,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops")
            .expect("no panic")
            .expect("clean stop");
    }

    /// Runs `slipway --host HOST ARGS` with `stdin` (or none), bounded.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.arg("--host")
            .arg(&self.host)
            .args(args)
            .env_remove("SLIPWAY_APP")
            .env_remove("SLIPWAY_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("slipway finished within 120 s")
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert_eq!(out.code, 0, "slipway {args:?} failed: {out:?}");
        out.stdout
    }
}

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A copy of the example app (its manifest with a short health grace).
fn example_copy() -> tempfile::TempDir {
    engine::testing::example_copy(|s| s.replace("grace: 10", "grace: 2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_releases_promote_and_rollback() {
    let s = Server::start().await;
    assert!(s
        .ok(&["apps", "create", "hello"])
        .await
        .contains("created app hello"));
    let src = example_copy();
    let dir = src.path().to_str().unwrap();
    let r1 = s
        .ok(&["-a", "hello", "build", dir, "-d", "first build"])
        .await
        .trim()
        .to_owned();
    assert!(r1.starts_with('R') && r1.len() == 11, "{r1}");

    let table = s.ok(&["-a", "hello", "releases"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    // The shape of `convox releases`: aligned columns, two spaces apart.
    assert_eq!(
        lines[0],
        "ID           STATUS  BUILD        CREATED   DESCRIPTION"
    );
    assert!(lines[1].starts_with(&format!("{r1}          B")), "{table}");
    assert!(lines[1].ends_with("just now  first build"), "{table}");

    // Promote with no ID promotes the newest release and waits until it is active.
    let out = s.run(&["-a", "hello", "releases", "promote"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("started process web.1"), "{out:?}");
    assert!(out.stdout.contains(&format!("✓ {r1} is active")), "{out:?}");
    let table = s.ok(&["-a", "hello", "releases"]).await;
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&format!("{r1}  active")),
        "{table}"
    );

    // Rollback makes a new release from the old one.
    let r2 = s
        .ok(&["-a", "hello", "build", dir, "-d", "second"])
        .await
        .trim()
        .to_owned();
    s.ok(&["-a", "hello", "releases", "promote", &r2]).await;
    let out = s.ok(&["-a", "hello", "releases", "rollback", &r1]).await;
    assert!(out.contains(&format!("(rollback to {r1})")), "{out}");
    let info = s
        .ok(&["-a", "hello", "releases", "--json", "--limit", "1"])
        .await;
    let newest: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(newest[0]["description"], format!("rollback to {r1}"));
    assert_eq!(newest[0]["status"], "active");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_from_arguments_and_stdin_and_a_failed_promote() {
    let s = Server::start().await;
    s.ok(&["apps", "create", "hello"]).await;
    let src = example_copy();
    s.ok(&[
        "-a",
        "hello",
        "deploy",
        src.path().to_str().unwrap(),
        "-d",
        "base",
    ])
    .await;

    let out = s
        .run(
            &["-a", "hello", "env", "set", "C=3"],
            Some("# settings\nA=1\nB=two words\n"),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.ends_with("env add:A add:B add:C\n"), "{out:?}");
    assert_eq!(
        s.ok(&["-a", "hello", "env"]).await,
        "A=****\nB=****\nC=****\n"
    );
    assert_eq!(
        s.ok(&["-a", "hello", "env", "--reveal"]).await,
        "A=1\nB=two words\nC=3\n"
    );
    assert_eq!(
        s.ok(&["-a", "hello", "env", "get", "B"]).await,
        "two words\n"
    );
    let out = s.run(&["-a", "hello", "env", "unset", "A"], None).await;
    assert!(out.stdout.ends_with("env remove:A\n"), "{out:?}");

    // Bad input: a message naming the line and a non-zero exit, nothing written.
    let out = s
        .run(&["-a", "hello", "env", "set"], Some("OK=1\nnot a pair\n"))
        .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("line 2: expected KEY=VALUE"), "{out:?}");
    let out = s.run(&["-a", "hello", "env", "set", "1BAD=x"], None).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("must start with a letter or underscore"),
        "{out:?}"
    );

    // A promote that rolls back fails with the reason and the process's output.
    let out = s
        .run(
            &[
                "-a",
                "hello",
                "env",
                "set",
                "EXAMPLE_EXIT_AT_START=1",
                "--promote",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("rollback: web.")
            && out
                .stderr
                .contains("exited with exit status 3 before it was healthy"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("exiting with an error on purpose"),
        "{out:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_description_from_a_clean_git_work_tree() {
    let s = Server::start().await;
    s.ok(&["apps", "create", "hello"]).await;
    let src = example_copy();
    let sha = engine::testing::git_commit_all(src.path(), "Say hello");
    s.ok(&["-a", "hello", "build", src.path().to_str().unwrap()])
        .await;
    let out = s.ok(&["-a", "hello", "releases", "--json"]).await;
    let releases: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        releases[0]["description"],
        format!("build {} Say hello", &sha[..10])
    );
    let builds = s.ok(&["-a", "hello", "builds"]).await;
    assert!(builds.starts_with("ID "), "{builds}");
    assert!(
        builds.contains(&format!("build {} Say hello", &sha[..10])),
        "{builds}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors() {
    let s = Server::start().await;
    let out = s.run(&["-a", "nope", "releases"], None).await;
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "error: app nope not found");
    let out = s.run(&["releases"], None).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("which app? give --app NAME"), "{out:?}");
    let out = s.run(&["apps", "create", "Bad_Name"], None).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("app name"), "{out:?}");
    let out = s.run(&["nonsense"], None).await;
    assert_eq!(out.code, 2, "clap's usage error");
    s.stop().await;
    // The server is gone now: the CLI says where it looked.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["--host", "http://127.0.0.1:9", "apps"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach the Slipway server at http://127.0.0.1:9"));
}

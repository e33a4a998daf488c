//! The `slipway` binary against a real server (port 0, fresh SQLite file), as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// The password of the server's `admin` user.
const ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Server {
    host: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), server::Error>>,
    /// The CLI's config file (`SLIPWAY_CONFIG` of every command run), in `_home`.
    config: PathBuf,
    _data: tempfile::TempDir,
    _home: tempfile::TempDir,
}

impl Server {
    /// A server, and the CLI signed in to it as `admin`.
    async fn start() -> Server {
        let s = Server::start_signed_out().await;
        let out = s
            .run(
                &["login", "--user", "admin", "--password-stdin"],
                Some(&format!("{ADMIN_PASSWORD}\n")),
            )
            .await;
        assert_eq!(out.code, 0, "login: {out:?}");
        s
    }

    async fn start_signed_out() -> Server {
        let data = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let mut config = server::Config::on_loopback(data.path().join("data"), ADMIN_PASSWORD);
        config.auth = engine::AuthConfig::for_tests();
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
            config: home.path().join("slipway").join("config.json"),
            _data: data,
            _home: home,
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
        self.exec(true, args, stdin, &[]).await
    }

    /// Runs `slipway --host HOST ARGS` with `SLIPWAY_TOKEN=token`.
    async fn run_with_token(&self, token: &str, args: &[&str]) -> Output {
        self.exec(true, args, None, &[("SLIPWAY_TOKEN", token)])
            .await
    }

    /// Runs `slipway [--host HOST] ARGS` with the config file of this server's tests, `env`
    /// added, `stdin` (or none), bounded.
    async fn exec(
        &self,
        with_host: bool,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
        if with_host {
            cmd.arg("--host").arg(&self.host);
        }
        cmd.args(args)
            .env_remove("SLIPWAY_APP")
            .env_remove("SLIPWAY_TOKEN")
            .env_remove("SLIPWAY_HOST")
            .env("SLIPWAY_CONFIG", &self.config)
            .envs(env.iter().copied())
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

    /// The CLI's config file as JSON.
    fn stored(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.config).unwrap();
        serde_json::from_str(&text).unwrap()
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
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["--host", "http://127.0.0.1:9", "apps"])
        .env("SLIPWAY_CONFIG", home.path().join("config.json"))
        .env_remove("SLIPWAY_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach the Slipway server at http://127.0.0.1:9"));
}

/// The file's permission bits.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const NOT_SIGNED_IN: &str =
    "not signed in (or the token was revoked or expired): run slipway login";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_whoami_and_logout() {
    let s = Server::start_signed_out().await;

    // Without credentials every command says what to do.
    for args in [&["apps"][..], &["whoami"], &["-a", "hello", "releases"]] {
        let out = s.run(args, None).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(out.stderr.contains(NOT_SIGNED_IN), "{args:?}: {out:?}");
    }

    // A wrong password: a clear message, exit 1, nothing written.
    let out = s
        .run(
            &["login", "--user", "admin", "--password-stdin"],
            Some("not the password\n"),
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "error: sign-in failed: wrong user name or password"
    );
    assert!(!s.config.exists());
    assert!(!s.config.parent().unwrap().exists());

    // Without a terminal and without --password-stdin it says how to script it.
    let out = s.run(&["login", "--user", "admin"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("--password-stdin"), "{out:?}");
    assert!(!s.config.exists());

    // Signing in: the config holds the host, a token and the user, privately; never the
    // password.
    let out = s
        .run(
            &["login", "--user", "admin", "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\r\n")),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("Signed in to {} as admin (admin).\n", s.host)
    );
    assert_eq!(mode(&s.config), 0o600);
    assert_eq!(mode(s.config.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    let stored = s.stored();
    assert_eq!(stored["host"], s.host.as_str());
    assert_eq!(stored["user"], "admin");
    let token = stored["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("slw_"), "{stored}");

    // The stored host is the default: no --host needed any more.
    let out = s.exec(false, &["whoami"], None, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("admin (admin) on {} with token T", s.host)),
        "{out:?}"
    );
    let me: serde_json::Value =
        serde_json::from_str(&s.exec(false, &["whoami", "--json"], None, &[]).await.stdout)
            .unwrap();
    assert_eq!(me["role"], "admin");
    let login_token_id = me["via"]["token"].as_str().unwrap().to_owned();

    // The token is named after this machine.
    let tokens = s.ok(&["tokens"]).await;
    let header = tokens.lines().next().unwrap();
    for column in [
        "ID",
        "NAME",
        "ROLE",
        "PREFIX",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ] {
        assert!(header.contains(column), "{tokens}");
    }
    assert!(
        tokens.lines().any(|l| l.starts_with(&login_token_id)
            && l.contains("cli@")
            && l.contains(&token[..8])),
        "{tokens}"
    );

    // Signing out revokes the token and removes it from the config (host and user stay).
    let out = s.run(&["logout"], None).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, format!("Signed out of {}.\n", s.host));
    let stored = s.stored();
    assert!(stored.get("token").is_none(), "{stored}");
    assert_eq!(stored["user"], "admin");
    assert_eq!(mode(&s.config), 0o600);
    let out = s.run_with_token(&token, &["apps"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(NOT_SIGNED_IN), "{out:?}");
    assert!(out.stderr.contains("SLIPWAY_TOKEN"), "{out:?}");
    let out = s.run(&["apps"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(NOT_SIGNED_IN), "{out:?}");
    // Signing out again is harmless.
    assert_eq!(s.ok(&["logout"]).await, "Not signed in.\n");

    // The stored user is the default of the next sign-in; a token stored for another host
    // is not sent elsewhere.
    let out = s
        .exec(
            false,
            &["login", "--password-stdin"],
            Some(ADMIN_PASSWORD),
            &[],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("as admin (admin)"), "{out:?}");
    let out = s
        .exec(
            false,
            &["--host", "http://127.0.0.1:9", "whoami"],
            None,
            &[],
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("cannot reach"), "{out:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_revocation_and_the_audit_log() {
    let s = Server::start().await;
    s.ok(&["apps", "create", "hello"]).await;

    // A token is printed alone on stdout, with a note on stderr.
    let out = s
        .run(
            &["tokens", "create", "--role", "viewer", "--name", "ci"],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let viewer = out.stdout.trim().to_owned();
    assert_eq!(out.stdout, format!("{viewer}\n"));
    assert!(viewer.starts_with("slw_"), "{out:?}");
    assert!(out.stderr.contains("shown this once"), "{out:?}");

    // SLIPWAY_TOKEN wins over the stored (admin) token.
    let out = s.run_with_token(&viewer, &["whoami"]).await;
    assert!(
        out.stdout.starts_with("admin (viewer)") && out.stdout.contains("from SLIPWAY_TOKEN"),
        "{out:?}"
    );
    let out = s.run_with_token(&viewer, &["apps"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("hello"), "{out:?}");
    let out = s
        .run_with_token(
            &viewer,
            &["-a", "hello", "releases", "promote", "RABCDEFGHIJ"],
        )
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr.trim(),
        "error: not allowed: this needs the deployer role"
    );

    // Listed, then revoked: refused from then on.
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["tokens", "--json"]).await).unwrap();
    let ci = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap();
    assert_eq!(ci["role"], "viewer");
    let id = ci["id"].as_str().unwrap().to_owned();
    let table = s.ok(&["tokens", "--all"]).await;
    assert!(table.starts_with("ID           OWNER  NAME"), "{table}");
    assert_eq!(
        s.ok(&["tokens", "revoke", &id]).await,
        format!("Revoked {id}.\n")
    );
    let out = s.run_with_token(&viewer, &["apps"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(NOT_SIGNED_IN), "{out:?}");
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["tokens", "--json"]).await).unwrap();
    let ci = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert!(ci["revoked_at"].is_i64(), "{ci}");
    let out = s.run(&["tokens", "revoke", "nope"], None).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not a token ID"), "{out:?}");

    // The audit log has all of it, the refusal included.
    let audit = s.ok(&["audit"]).await;
    assert!(audit.starts_with("SEQ  WHEN      ACTOR "), "{audit}");
    for action in ["login", "app", "token.create", "token.revoke"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    let refused = s
        .ok(&["audit", "-a", "hello", "--action", "release."])
        .await;
    let lines: Vec<&str> = refused.lines().collect();
    assert_eq!(lines.len(), 2, "{refused}");
    assert!(
        lines[1].contains("release.promote")
            && lines[1].contains("RABCDEFGHIJ")
            && lines[1].ends_with("denied"),
        "{refused}"
    );
    let entries: serde_json::Value = serde_json::from_str(
        &s.ok(&["audit", "--json", "--actor", "admin", "--limit", "2"])
            .await,
    )
    .unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2, "{entries}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_failed_sign_ins_say_when_to_retry() {
    let s = Server::start_signed_out().await;
    let login = ["login", "--user", "admin", "--password-stdin"];
    let mut last = None;
    for _ in 0..6 {
        last = Some(s.run(&login, Some("wrong password\n")).await);
    }
    let out = last.unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("too many failed sign-in attempts: try again in "),
        "{out:?}"
    );
    assert!(!s.config.exists());
    s.stop().await;
}

/// A token never makes a token that may do more than itself: a leaked viewer token must not
/// become an admin token (the server checks the calling token's role, not only its owner's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_make_a_stronger_token() {
    let s = Server::start().await;
    let viewer = s.ok(&["tokens", "create", "--role", "viewer"]).await;
    let out = s
        .run_with_token(viewer.trim(), &["tokens", "create", "--role", "admin"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not allowed"), "{out:?}");
    s.stop().await;
}

/// `--expires-in` gives a token a lifetime, shown in the list; a bad one is refused before
/// anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_may_expire() {
    let s = Server::start().await;
    let out = s
        .run(
            &[
                "tokens",
                "create",
                "--role",
                "viewer",
                "--name",
                "month",
                "--expires-in",
                "30d",
            ],
            None,
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(", expires 20"), "{out:?}");
    let table = s.ok(&["tokens"]).await;
    assert!(table.lines().next().unwrap().contains("EXPIRES"), "{table}");
    let month = table.lines().find(|l| l.contains("month")).unwrap();
    // A moment less than 30 days are left.
    assert!(month.contains("in 4 weeks"), "{table}");
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["tokens", "--json"]).await).unwrap();
    let made = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "month")
        .unwrap();
    let days =
        (made["expires_at"].as_i64().unwrap() - made["created_at"].as_i64().unwrap()) / 86_400_000;
    assert_eq!(days, 30, "{made}");

    for bad in ["0", "367d", "soon"] {
        let out = s
            .run(
                &["tokens", "create", "--role", "viewer", "--expires-in", bad],
                None,
            )
            .await;
        assert_ne!(out.code, 0, "{bad}: {out:?}");
        assert!(out.stderr.contains("--expires-in"), "{bad}: {out:?}");
        assert!(out.stderr.contains("1 to 366"), "{bad}: {out:?}");
    }
    s.stop().await;
}

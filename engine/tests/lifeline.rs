//! Nothing that the local runtime or a build started outlives a server killed with SIGKILL:
//! not a compound command's children, not what an exec'd command forked, not a build's
//! background processes (see the lifeline in `runtime/local.rs`).
//!
//! The "server" is this test binary run again as a child process (`LIFELINE_CHILD` set), so
//! that it can really be killed.

mod common;

use common::{ready_line, KillOnDrop};
use engine::artifacts::Artifacts;
use engine::runtime::local::LocalRuntime;
use engine::runtime::{Process, ProcessRuntime, ProcessSpec};
use engine::sandbox::{IsolationChoice, Sandbox, Tenant, DEFAULT_UID_BASE};
use engine::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(30);
/// Set in the child: what it runs, and its data dir.
const CHILD_ENV: &str = "LIFELINE_CHILD";
const DATA_ENV: &str = "LIFELINE_DATA";
const REPORT_ENV: &str = "LIFELINE_REPORT";

/// This test binary, running only `test` with `role` in its environment.
fn spawn_child(test: &str, role: &str, data: &Path, report: Option<&Path>) -> KillOnDrop {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(DATA_ENV, data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(r) = report {
        cmd.env(REPORT_ENV, r);
    }
    KillOnDrop(cmd.spawn().unwrap())
}

/// A process: its pid and start time (so that a reused pid is not taken for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

/// `(state, process group, start time)` of a process, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some((
        fields.first()?.to_string(),
        fields.get(2)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
    ))
}

fn living(state: &str) -> bool {
    state != "Z" && state != "X"
}

/// The living (not zombie) members of the process group `pgid`.
fn group(pgid: u32) -> Vec<Proc> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((state, pg, start)) = stat(pid) {
            if pg == pgid && living(&state) {
                found.push(Proc { pid, start });
            }
        }
    }
    found
}

fn alive(p: Proc) -> bool {
    stat(p.pid).is_some_and(|(state, _, start)| start == p.start && living(&state))
}

fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

fn uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits (bounded) until the group `pgid` has `n` living members, and returns them.
fn wait_for_group(pgid: u32, n: usize) -> Vec<Proc> {
    let deadline = Instant::now() + WAIT;
    loop {
        let members = group(pgid);
        if members.len() >= n {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "group {pgid} never had {n} members: {members:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until none of `procs` and no member of the groups `pgids` lives.
fn wait_all_gone(procs: &[Proc], pgids: &[u32]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut left: Vec<Proc> = procs
            .iter()
            .copied()
            .chain(pgids.iter().flat_map(|g| group(*g)))
            .filter(|p| alive(*p))
            .collect();
        left.sort_by_key(|p| p.pid);
        left.dedup();
        let left: Vec<(Proc, String)> = left.into_iter().map(|p| (p, cmdline(p.pid))).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived their server: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each group has one watcher (the lifeline), running as the server's user; when the server
/// runs as root, the rest runs as the app's own user.
fn check_watcher(members: &[Proc]) {
    let watchers: Vec<&Proc> = members
        .iter()
        .filter(|p| cmdline(p.pid).contains("kill -9 0"))
        .collect();
    assert_eq!(watchers.len(), 1, "{members:?}");
    let me = uid(std::process::id());
    assert_eq!(uid(watchers[0].pid), me);
    if me == Some(0) {
        for p in members.iter().filter(|p| p.pid != watchers[0].pid) {
            assert!(uid(p.pid).is_some_and(|u| u > DEFAULT_UID_BASE), "{p:?}");
        }
    }
}

async fn sandbox(data: &Path) -> Arc<Sandbox> {
    Arc::new(
        Sandbox::new(data, IsolationChoice::Auto, DEFAULT_UID_BASE)
            .await
            .unwrap(),
    )
}

fn tenant() -> Tenant {
    Tenant {
        app: AppName::parse("t").unwrap(),
        number: 1,
    }
}

/// A directory every app user can write to (the data dir is hidden from them).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn data_dir() -> PathBuf {
    PathBuf::from(std::env::var(DATA_ENV).unwrap())
}

/// The child: starts a compound command and an exec'd one that forks, reports their groups,
/// and waits to be killed.
async fn processes_child() {
    let data = data_dir();
    let cwd = data.join("sources/t/abc");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(
        cwd.join("forker.sh"),
        "sleep 1000 &\necho child $!\nexec sleep 1000\n",
    )
    .unwrap();
    let runtime = LocalRuntime::new(sandbox(&data).await);
    let spec = |index: u32, command: &str, http: bool| ProcessSpec {
        app: AppName::parse("t").unwrap(),
        app_number: 1,
        release: ReleaseId::generate(),
        service: ServiceName::parse("web").unwrap(),
        index,
        command: command.into(),
        cwd: cwd.clone(),
        env: Vec::new(),
        http,
    };
    let compound = runtime
        .start(spec(
            1,
            "sleep 1000 & echo child $!; sleep 1000; wait",
            false,
        ))
        .await
        .unwrap();
    // A simple command: exec'd, so the script is the group's leader, and it forks.
    let forking = runtime.start(spec(2, "sh forker.sh", true)).await.unwrap();
    for p in [&compound, &forking] {
        tokio::time::timeout(WAIT, async {
            while !p.output_tail(10).contains("child ") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} never forked: {:?}", p.name(), p.exit_status()));
    }
    let pgid = |p: &Arc<dyn Process>| p.os_identity().unwrap().0;
    println!("READY {} {}", pgid(&compound), pgid(&forking));
    // Killed here by the parent.
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn processes_die_with_their_server() {
    if std::env::var(CHILD_ENV).is_ok() {
        return processes_child().await;
    }
    let data = tempfile::tempdir().unwrap();
    let mut server = spawn_child(
        "processes_die_with_their_server",
        "processes",
        data.path(),
        None,
    );
    let report = ready_line(&mut server, WAIT);
    let pgids: Vec<u32> = report
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pgids.len(), 2, "{report}");
    // The compound one: its shell, two sleeps, the watcher. The exec'd one: the leader (now
    // `sleep`), the child it forked, the watcher.
    let compound = wait_for_group(pgids[0], 4);
    let forking = wait_for_group(pgids[1], 3);
    check_watcher(&compound);
    check_watcher(&forking);

    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let all: Vec<Proc> = compound.into_iter().chain(forking).collect();
    wait_all_gone(&all, &pgids);
}

/// The child: builds a source whose build command leaves a process in the background and
/// never ends, and waits to be killed (the build reports its group itself).
async fn build_child() {
    let data = data_dir();
    let report = PathBuf::from(std::env::var(REPORT_ENV).unwrap());
    let artifacts = Artifacts::new(&data, ArchiveLimits::default(), sandbox(&data).await);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("slipway.yml"), build_manifest(&report)).unwrap();
    let result = artifacts
        .store(&tenant(), BuildSource::Directory(src.path().into()))
        .await;
    panic!("the build was to run until the server was killed: {result:?}");
}

/// A manifest whose build leaves a process in the background, writes its process group to
/// `report/pgid`, and runs until it is killed.
fn build_manifest(report: &Path) -> String {
    let r = report.display();
    format!(
        "build: sleep 1000 & echo $$ > {r}/pgid.tmp && mv {r}/pgid.tmp {r}/pgid; sleep 1000\n\
         services:\n  web:\n    command: x\n"
    )
}

/// Waits (bounded) for the build to report its process group.
fn reported_pgid(report: &Path) -> u32 {
    let file = report.join("pgid");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            return text.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the build never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn builds_die_with_their_server() {
    if std::env::var(CHILD_ENV).is_ok() {
        return build_child().await;
    }
    let data = tempfile::tempdir().unwrap();
    let report = shared_dir();
    let mut server = spawn_child(
        "builds_die_with_their_server",
        "build",
        data.path(),
        Some(report.path()),
    );
    let pgid = reported_pgid(report.path());
    // The build's shell, the two sleeps, the watcher.
    let members = wait_for_group(pgid, 4);
    check_watcher(&members);

    server.0.kill().unwrap();
    server.0.wait().unwrap();

    wait_all_gone(&members, &[pgid]);
}

#[tokio::test]
async fn a_build_over_its_time_leaves_nothing_behind() {
    let data = tempfile::tempdir().unwrap();
    let report = shared_dir();
    let artifacts = Artifacts::new(
        data.path(),
        ArchiveLimits::default(),
        sandbox(data.path()).await,
    )
    .with_build_timeout(Duration::from_secs(2));
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("slipway.yml"),
        build_manifest(report.path()),
    )
    .unwrap();
    let build = tokio::spawn(async move {
        artifacts
            .store(&tenant(), BuildSource::Directory(src.path().into()))
            .await
    });
    let pgid = tokio::task::spawn_blocking({
        let report = report.path().to_path_buf();
        move || reported_pgid(&report)
    })
    .await
    .unwrap();
    let members = tokio::task::spawn_blocking(move || wait_for_group(pgid, 4))
        .await
        .unwrap();
    let err = build.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("did not finish within 2 s"), "{err}");
    // The whole group is gone once the build has failed, the watcher included.
    tokio::task::spawn_blocking(move || wait_all_gone(&members, &[pgid]))
        .await
        .unwrap();
}

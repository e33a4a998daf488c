use super::output::{LineBuf, CUT_MARK, OUTPUT_BYTES, OUTPUT_LINES, OUTPUT_LINE_BYTES};
use super::*;
use crate::ids::ReleaseId;
use crate::names::{AppName, ServiceName};
use std::time::Instant;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// A runtime over a fresh data dir, and a source directory in it.
async fn runtime() -> (tempfile::TempDir, LocalRuntime, std::path::PathBuf) {
    runtime_with(None).await
}

async fn runtime_with(
    ports: Option<PortRange>,
) -> (tempfile::TempDir, LocalRuntime, std::path::PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let cwd = data.path().join("sources/t/abc");
    std::fs::create_dir_all(&cwd).unwrap();
    let sandbox = Arc::new(
        Sandbox::new(
            data.path(),
            crate::sandbox::IsolationChoice::Auto,
            crate::sandbox::DEFAULT_UID_BASE,
        )
        .await
        .unwrap(),
    );
    let runtime = match ports {
        Some(p) => LocalRuntime::with_ports(sandbox, p),
        None => LocalRuntime::new(sandbox),
    };
    (data, runtime, cwd)
}

fn spec(cwd: &std::path::Path, command: &str, http: bool) -> ProcessSpec {
    ProcessSpec {
        app: AppName::parse("t").unwrap(),
        app_number: 1,
        release: ReleaseId::generate(),
        service: ServiceName::parse("web").unwrap(),
        index: 1,
        command: command.into(),
        cwd: cwd.to_path_buf(),
        env: vec![("GREETING".into(), "hi there".into())],
        http,
    }
}

/// Waits (bounded) until `p`'s output has `text`.
async fn wait_for_output(p: &dyn Process, text: &str) {
    let found = tokio::time::timeout(WAIT, async {
        while !p.output_tail(OUTPUT_LINES).contains(text) {
            if p.exit_status().is_some() && !p.output_tail(OUTPUT_LINES).contains(text) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "{text:?} never showed ({:?}): {}",
        p.exit_status(),
        p.output_tail(5)
    );
}

#[test]
fn simple_commands_are_execed() {
    assert_eq!(shell_command("python3 -u app.py"), "exec python3 -u app.py");
    assert_eq!(
        shell_command("./server --port 80"),
        "exec ./server --port 80"
    );
    for compound in [
        "a && b",
        "a | b",
        "a; b",
        "echo $PORT",
        "FOO=1 app",
        "cd x",
        "a > log",
        "sleep 1 & wait",
    ] {
        assert_eq!(shell_command(compound), compound);
    }
}

#[tokio::test]
async fn runs_with_env_and_keeps_output() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(
            &cwd,
            "echo \"$GREETING $PORT $SLIPWAY_SERVICE\"; echo oops >&2; exit 3",
            true,
        ))
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), p.exited())
        .await
        .unwrap();
    assert_eq!(status, "exit status 3");
    let port = p.addr().unwrap().port();
    let range = runtime.ports();
    assert!(range.first() <= port && port <= range.last(), "{port}");
    let want = format!("hi there {port} web");
    let out = p.output_tail(10);
    assert!(out.contains(&want) && out.contains("oops"), "{out}");
}

#[tokio::test]
async fn stop_terminates_the_whole_group() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(&cwd, "sleep 1000 & sleep 1000; wait", false))
        .await
        .unwrap();
    let (pid, ticks) = p.os_identity().unwrap();
    assert!(ticks.is_some());
    p.stop(Duration::from_secs(5)).await;
    assert!(
        p.exit_status().unwrap().contains("signal 15"),
        "{:?}",
        p.exit_status()
    );
    // No living member of the group is left (zombies waiting for init do not count), the
    // lifeline's watcher included.
    assert_eq!(living_in_group(pid), Vec::<u32>::new());
}

/// The living (not zombie) processes of the process group `pgid`.
fn living_in_group(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // fields[0] is the state, fields[2] the process group.
        if fields.len() > 2 && fields[2] == pgid.to_string() && !["Z", "X"].contains(&fields[0]) {
            found.push(pid);
        }
    }
    found
}

/// Waits (bounded) until the group `pgid` has no living member.
async fn wait_group_gone(pgid: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let living = living_in_group(pgid);
        if living.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {pgid} lives on: {living:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn stop_kills_what_ignores_sigterm() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(
            &cwd,
            "trap '' TERM; echo ready; while true; do sleep 0.05; done",
            false,
        ))
        .await
        .unwrap();
    // SIGTERM must arrive after the trap is set: wait (bounded) for the process to say so.
    wait_for_output(p.as_ref(), "ready").await;
    p.stop(Duration::from_millis(200)).await;
    assert!(
        p.exit_status().unwrap().contains("signal 9"),
        "{:?}",
        p.exit_status()
    );
}

// Output.

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let mut line = LineBuf::default();
    let mut lines = Vec::new();
    line.feed(b"bad \xff\xfe bytes\r\nnext", |l| lines.push(l));
    line.feed(b" line\n\xe2\x82", |l| lines.push(l));
    assert_eq!(lines, ["bad \u{fffd}\u{fffd} bytes", "next line"]);
    // A stream that ends inside a line and a character.
    assert_eq!(line.finish().unwrap(), "\u{fffd}");
    assert_eq!(line.finish(), None);
}

#[test]
fn a_long_line_is_cut_while_it_is_read() {
    let mut line = LineBuf::default();
    let mut lines = Vec::new();
    // 10 MB in pipe-sized chunks, with no newline: what is held never grows.
    let chunk = vec![b'x'; 8192];
    for _ in 0..(10 * 1024 * 1024 / chunk.len()) {
        line.feed(&chunk, |l| lines.push(l));
        assert_eq!(line.held(), OUTPUT_LINE_BYTES);
    }
    line.feed(b"\nafter\n", |l| lines.push(l));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].len(), OUTPUT_LINE_BYTES + CUT_MARK.len());
    assert!(lines[0].ends_with(CUT_MARK));
    assert_eq!(lines[1], "after");
    // A cut through a character leaves the whole character out.
    let mut text = vec![b'a'; OUTPUT_LINE_BYTES - 1];
    text.extend_from_slice("é and more\n".as_bytes());
    line.feed(&text, |l| lines.push(l));
    assert_eq!(
        lines[2],
        format!("{}{CUT_MARK}", "a".repeat(OUTPUT_LINE_BYTES - 1))
    );
    // Invalid bytes grow when decoded: the line is cut to the limit all the same.
    let mut bad = vec![0xffu8; OUTPUT_LINE_BYTES];
    bad.push(b'\n');
    line.feed(&bad, |l| lines.push(l));
    assert!(lines[3].len() <= OUTPUT_LINE_BYTES + CUT_MARK.len());
    assert!(lines[3].starts_with('\u{fffd}'));
}

#[test]
fn kept_output_is_bounded_by_bytes_and_lines() {
    let mut out = Output::default();
    let long = "y".repeat(OUTPUT_LINE_BYTES);
    for _ in 0..OUTPUT_LINES {
        out.push(long.clone());
    }
    assert!(out.bytes() <= OUTPUT_BYTES, "{}", out.bytes());
    for i in 0..2 * OUTPUT_LINES {
        out.push(format!("line {i}"));
    }
    let all = out.tail(usize::MAX);
    assert_eq!(all.lines().count(), OUTPUT_LINES);
    assert!(all.ends_with(&format!("line {}", 2 * OUTPUT_LINES - 1)));
    assert_eq!(out.tail(2), "line 998\nline 999");
}

#[tokio::test]
async fn invalid_utf8_does_not_break_the_app() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(
            &cwd,
            "printf 'bad \\377\\376 bytes\\n'; printf 'err \\377\\n' >&2; i=0; \
             while true; do i=$((i+1)); echo \"tick $i\"; echo \"err $i\" >&2; sleep 0.01; done",
            false,
        ))
        .await
        .unwrap();
    // Well after the bad bytes, on both streams, it is still writing.
    wait_for_output(p.as_ref(), "tick 30\n").await;
    wait_for_output(p.as_ref(), "err 30\n").await;
    assert_eq!(p.exit_status(), None);
    let out = p.output_tail(OUTPUT_LINES);
    assert!(out.contains("bad \u{fffd}\u{fffd} bytes"), "{out}");
    assert!(out.contains("err \u{fffd}"), "{out}");
    p.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_endless_line_neither_grows_nor_blocks() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(
            &cwd,
            "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo written; exec sleep 1000",
            false,
        ))
        .await
        .unwrap();
    // All of it was read (the writer went on past it) and the process lives on.
    wait_for_output(p.as_ref(), "written").await;
    assert_eq!(p.exit_status(), None);
    let out = p.output_tail(OUTPUT_LINES);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{:?}", &out[..out.len().min(100)]);
    assert_eq!(lines[0].len(), OUTPUT_LINE_BYTES + CUT_MARK.len());
    assert!(lines[0].starts_with("xxxx") && lines[0].ends_with(CUT_MARK));
    assert_eq!(lines[1], "written");
    p.stop(Duration::from_secs(5)).await;
    assert!(p.exit_status().unwrap().contains("signal 15"));
}

// Ports. Each test has ports of its own (below the kernel's ephemeral range).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_starts_get_distinct_ports() {
    let (_data, runtime, cwd) = runtime_with(Some(PortRange::new(30200, 30263).unwrap())).await;
    let runtime = Arc::new(runtime);
    let starts: Vec<_> = (0..48)
        .map(|i| {
            let runtime = runtime.clone();
            let mut spec = spec(&cwd, "sleep 1000", true);
            spec.index = i + 1;
            tokio::spawn(async move { runtime.start(spec).await })
        })
        .collect();
    let mut processes = Vec::new();
    for s in starts {
        processes.push(s.await.unwrap().unwrap());
    }
    let mut ports: Vec<u16> = processes.iter().map(|p| p.addr().unwrap().port()).collect();
    assert!(
        ports.iter().all(|p| (30200..=30263).contains(p)),
        "{ports:?}"
    );
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), processes.len(), "a port was handed out twice");
    let stops: Vec<_> = processes
        .into_iter()
        .map(|p| tokio::spawn(async move { p.stop(Duration::from_secs(5)).await }))
        .collect();
    for s in stops {
        s.await.unwrap();
    }
}

#[tokio::test]
async fn a_port_is_held_until_its_process_ends() {
    let (_data, runtime, cwd) = runtime_with(Some(PortRange::new(30300, 30300).unwrap())).await;
    let first = runtime.start(spec(&cwd, "sleep 1000", true)).await.unwrap();
    assert_eq!(first.addr().unwrap().port(), 30300);
    // While it runs, its port is nobody else's.
    let err = runtime
        .start(spec(&cwd, "sleep 1000", true))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no free port")
            && err.contains("30300-30300")
            && err.contains("1 are held by running processes"),
        "{err}"
    );
    // A process without HTTP needs none.
    let other = runtime
        .start(spec(&cwd, "sleep 1000", false))
        .await
        .unwrap();
    assert_eq!(other.addr(), None);
    other.stop(Duration::from_secs(5)).await;
    first.stop(Duration::from_secs(5)).await;
    let again = runtime.start(spec(&cwd, "sleep 1000", true)).await.unwrap();
    assert_eq!(again.addr().unwrap().port(), 30300);
    again.stop(Duration::from_secs(5)).await;
}

// The lifeline.

/// The members of the group `pgid` that are the lifeline's watcher.
fn watchers_in_group(pgid: u32) -> Vec<u32> {
    living_in_group(pgid)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("kill -9 0"))
        })
        .collect()
}

/// Waits (bounded) until the group `pgid` has `n` living members.
async fn wait_group_size(pgid: u32, n: usize) {
    let deadline = Instant::now() + WAIT;
    while living_in_group(pgid).len() < n {
        assert!(Instant::now() < deadline, "{:?}", living_in_group(pgid));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn each_process_has_a_watcher_that_outlives_sigterm() {
    let (_data, runtime, cwd) = runtime().await;
    let p = runtime
        .start(spec(&cwd, "sleep 1000 & sleep 1000; wait", false))
        .await
        .unwrap();
    let (pid, _) = p.os_identity().unwrap();
    // The leader, its two children and the watcher.
    wait_group_size(pid, 4).await;
    let watchers = watchers_in_group(pid);
    assert_eq!(watchers.len(), 1, "{:?}", living_in_group(pid));
    // It ignores SIGTERM (so it stays through a stop's grace period), and runs as the server.
    let status = std::fs::read_to_string(format!("/proc/{}/status", watchers[0])).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    assert_ne!(ignored & (1 << (libc::SIGTERM - 1)), 0, "{status}");
    let uid = |pid: u32| {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(uid(watchers[0]), uid(std::process::id()));
    p.stop(Duration::from_secs(5)).await;
    assert!(p.exit_status().unwrap().contains("signal 15"));
    assert_eq!(living_in_group(pid), Vec::<u32>::new());
}

#[tokio::test]
async fn a_dropped_lifeline_kills_the_group() {
    // A group whose lifeline goes (as when the server dies), with no one else to stop it.
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("sleep 1000 & sleep 1000 & wait")
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let leader = child.id().unwrap();
    let lifeline = Lifeline::attach(leader).unwrap();
    wait_group_size(leader, 4).await;
    drop(lifeline);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    wait_group_gone(leader).await;
}

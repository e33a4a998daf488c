//! Real OS processes on this machine: `sh -c COMMAND` in the build's source directory, in a
//! process group of its own (so stopping it stops its children too), killed if the server
//! dies (`PR_SET_PDEATHSIG`), with its output kept in a bounded buffer.

use async_trait::async_trait;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use super::{Process, ProcessRuntime, ProcessSpec};
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;

/// Lines of output kept per process.
const OUTPUT_LINES: usize = 500;
/// Longest line kept; longer ones are cut.
const OUTPUT_LINE_BYTES: usize = 4096;

/// `exec COMMAND` for a simple command, so that the process itself (not a shell around it)
/// is the group leader, gets the signals and dies with the server; compound commands (pipes,
/// lists, redirections, substitutions) run in the shell as written.
fn shell_command(command: &str) -> String {
    let simple = !command.contains(|c: char| ";&|<>()$`\\\n\"'*?[]{}~#!".contains(c));
    let first = command.split_whitespace().next().unwrap_or("");
    let builtin = matches!(
        first,
        "cd" | "export" | "exec" | "set" | "ulimit" | "umask" | "." | "source" | "eval"
    );
    if simple && !builtin && !first.contains('=') {
        format!("exec {command}")
    } else {
        command.to_owned()
    }
}

/// Runs each process confined by the [`Sandbox`]: as its app's own user (or under Landlock),
/// with a cleared environment, seeing only its own source in the data dir.
#[derive(Debug)]
pub struct LocalRuntime {
    sandbox: Arc<Sandbox>,
}

impl LocalRuntime {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        LocalRuntime { sandbox }
    }
}

#[derive(Debug)]
struct LocalProcess {
    id: String,
    name: String,
    spec: ProcessSpec,
    addr: Option<SocketAddr>,
    pid: Option<u32>,
    start_ticks: Option<i64>,
    output: Arc<Mutex<VecDeque<String>>>,
    exit: watch::Receiver<Option<String>>,
}

fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("finding a free port"))?;
    let port = l
        .local_addr()
        .map_err(Error::io("finding a free port"))?
        .port();
    Ok(port)
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot. With the
/// pid it identifies a process even after pids wrap around.
pub(crate) fn start_ticks(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `signal` to the process group `pgid`.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    if pgid == 0 || pgid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pgid as i32), signal);
    }
}

fn keep_output(buf: &Mutex<VecDeque<String>>, line: String) {
    let mut line = line;
    if line.len() > OUTPUT_LINE_BYTES {
        let mut cut = OUTPUT_LINE_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    if let Ok(mut b) = buf.lock() {
        if b.len() == OUTPUT_LINES {
            b.pop_front();
        }
        b.push_back(line);
    }
}

fn read_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    buf: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            keep_output(&buf, line);
        }
    })
}

#[async_trait]
impl ProcessRuntime for LocalRuntime {
    async fn start(&self, spec: ProcessSpec) -> Result<Arc<dyn Process>> {
        let port = if spec.http { Some(free_port()?) } else { None };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(shell_command(&spec.command))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Its own user, its own view of the data dir, a cleared environment, `cwd` as working
        // directory (registered first: the death signal below must be set after the user
        // changes, which clears it).
        self.sandbox.confine(&mut cmd, &spec.tenant(), &spec.cwd)?;
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        cmd.env("SLIPWAY_APP", spec.app.as_str())
            .env("SLIPWAY_SERVICE", spec.service.as_str())
            .env("SLIPWAY_RELEASE", spec.release.as_str())
            .env("SLIPWAY_PROCESS", spec.name());
        if let Some(port) = port {
            cmd.env("PORT", port.to_string());
        }
        // SAFETY: prctl(2) is async-signal-safe; this only asks the kernel to kill the child
        // when the thread that spawned it (a long-lived runtime worker) goes away.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("{} could not be started: {e}", spec.name())))?;
        let pid = child.id();
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(read_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_lines(err, output.clone()));
        }
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    _ => s.to_string(),
                },
                Err(e) => format!("could not be waited for: {e}"),
            };
            // Whatever the leader left behind in its group goes with it.
            if let Some(pid) = pid {
                signal_group(pid, libc::SIGKILL);
            }
            // Once the process has ended its output is complete (bounded: a process that
            // escaped its group could hold the pipe open).
            for r in readers {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
            let _ = tx.send(Some(status));
        });
        let name = spec.name();
        Ok(Arc::new(LocalProcess {
            id: format!(
                "{}-{}-{}",
                spec.release,
                name,
                crate::ids::PromotionId::generate().as_str()[1..].to_lowercase()
            ),
            name,
            addr: port.map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p))),
            pid,
            start_ticks: pid.and_then(start_ticks),
            spec,
            output,
            exit: rx,
        }))
    }
}

#[async_trait]
impl Process for LocalProcess {
    fn id(&self) -> &str {
        &self.id
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    fn os_identity(&self) -> Option<(u32, Option<i64>)> {
        self.pid.map(|p| (p, self.start_ticks))
    }

    fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    async fn exited(&self) -> String {
        let mut rx = self.exit.clone();
        let status = match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.clone().unwrap_or_default(),
            Err(_) => "ended".into(),
        };
        status
    }

    async fn stop(&self, grace: Duration) {
        if self.exit_status().is_some() {
            return;
        }
        let Some(pid) = self.pid else { return };
        signal_group(pid, libc::SIGTERM);
        if tokio::time::timeout(grace, self.exited()).await.is_err() {
            signal_group(pid, libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), self.exited()).await;
        }
    }

    fn output_tail(&self, lines: usize) -> String {
        match self.output.lock() {
            Ok(b) => {
                let skip = b.len().saturating_sub(lines);
                b.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
            }
            Err(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ReleaseId;
    use crate::names::{AppName, ServiceName};

    /// A runtime over a fresh data dir, and a source directory in it.
    async fn runtime() -> (tempfile::TempDir, LocalRuntime, std::path::PathBuf) {
        let data = tempfile::tempdir().unwrap();
        let cwd = data.path().join("sources/t/abc");
        std::fs::create_dir_all(&cwd).unwrap();
        let sandbox = Sandbox::new(
            data.path(),
            crate::sandbox::IsolationChoice::Auto,
            crate::sandbox::DEFAULT_UID_BASE,
        )
        .await
        .unwrap();
        (data, LocalRuntime::new(Arc::new(sandbox)), cwd)
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
        // No living member of the group is left (zombies waiting for init do not count).
        assert_eq!(living_in_group(pid), Vec::<u32>::new());
    }

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
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                found.push(pid);
            }
        }
        found
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
        tokio::time::timeout(Duration::from_secs(10), async {
            while !p.output_tail(1).contains("ready") {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the process never became ready");
        p.stop(Duration::from_millis(200)).await;
        assert!(
            p.exit_status().unwrap().contains("signal 9"),
            "{:?}",
            p.exit_status()
        );
    }
}

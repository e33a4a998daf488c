//! Real OS processes on this machine: `sh -c COMMAND` in the build's source directory, in a
//! process group of its own (so stopping it stops its children too), with its output kept in
//! a bounded buffer (`output.rs`) and, for HTTP services, a port of its own (`ports.rs`).
//!
//! **The lifeline** (`lifeline.rs`): no process may outlive the server, even one killed with
//! SIGKILL (which no handler sees). `PR_SET_PDEATHSIG` only reaches the group's leader, and
//! a compound command (`a && b`) or a forking one leaves others in the group. So next to each
//! process (and each build command) the server starts a watcher in the same process group:
//! `sh` running a fixed script, as the server's user and unconfined (it only signals its own
//! group), whose stdin is the read end of a pipe. The write end is close-on-exec (no child
//! inherits it) and held by the server only, for as long as the process runs. When the server
//! dies, however it dies, the kernel closes that end: the watcher reads the end of its stdin
//! and kills its whole group (`kill -9 0`), itself included. The watcher ignores SIGTERM, so a
//! normal stop works as before (SIGTERM to the group, SIGKILL after the grace period, the
//! leader's exit status reported); once the leader has ended the server kills the group,
//! watcher included, and reaps the watcher. Since the watcher is the server's child and is
//! reaped last, the group's id cannot be reused while the server may still signal it.
//! What the lifeline cannot catch is a process that leaves its group (`setsid`).

mod lifeline;
mod output;
mod ports;
#[cfg(test)]
mod tests;

pub(crate) use lifeline::Lifeline;
pub use ports::{ephemeral_range, PortRange, DEFAULT_PORTS};

use async_trait::async_trait;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

use super::{Process, ProcessRuntime, ProcessSpec};
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use output::{read_output, Output};
use ports::PortAllocator;

/// How long the output of an ended process is still read (a process that escaped its group
/// could hold the pipes open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

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
    ports: PortAllocator,
}

impl LocalRuntime {
    /// With the ports of [`PortRange::default_here`].
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self::with_ports(sandbox, PortRange::default_here())
    }

    /// HTTP processes get their ports from `ports`.
    pub fn with_ports(sandbox: Arc<Sandbox>, ports: PortRange) -> Self {
        LocalRuntime {
            sandbox,
            ports: PortAllocator::new(ports),
        }
    }

    /// Where the ports of HTTP processes come from.
    pub fn ports(&self) -> PortRange {
        self.ports.range()
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
    output: Arc<Mutex<Output>>,
    exit: watch::Receiver<Option<String>>,
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

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

#[async_trait]
impl ProcessRuntime for LocalRuntime {
    async fn start(&self, spec: ProcessSpec) -> Result<Arc<dyn Process>> {
        // Reserved until the process has ended (the lease moves into its waiting task).
        let port = if spec.http {
            Some(self.ports.lease()?)
        } else {
            None
        };
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
        if let Some(port) = &port {
            cmd.env("PORT", port.port().to_string());
        }
        // SAFETY: prctl(2) is async-signal-safe; this only asks the kernel to kill the child
        // when the thread that spawned it (a long-lived runtime worker) goes away. (The
        // lifeline covers the rest of the group, and the leader too should this not fire.)
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Internal(format!("{} could not be started: {e}", spec.name())))?;
        let Some(pid) = child.id() else {
            return Err(Error::Internal(format!(
                "{} ended before it could be watched",
                spec.name()
            )));
        };
        // Before anything waits for the child: until it is reaped its group exists, even if
        // it has ended already.
        let lifeline = match Lifeline::attach(pid) {
            Ok(l) => l,
            Err(e) => {
                signal_group(pid, libc::SIGKILL);
                let _ = child.wait().await;
                return Err(e);
            }
        };
        let output = Arc::new(Mutex::new(Output::default()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(read_output(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_output(err, output.clone()));
        }
        let addr = port
            .as_ref()
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p.port())));
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = describe(child.wait().await);
            // Whatever the leader left behind in its group goes with it.
            signal_group(pid, libc::SIGKILL);
            lifeline.cut().await;
            // Once the process has ended its output is complete (bounded: a process that
            // escaped its group could hold the pipe open).
            for r in readers {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, r).await;
            }
            // Its port is free again.
            drop(port);
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
            addr,
            pid: Some(pid),
            start_ticks: start_ticks(pid),
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
        output::lock(&self.output).tail(lines)
    }
}

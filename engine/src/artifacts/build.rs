//! Running a manifest's `build:` command: in its own process group (killed as a whole when it
//! ends or times out, and by its lifeline when the server dies: see [`crate::runtime::local`]),
//! with a cleared environment, keeping only the tail of its output.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
use crate::runtime::local::{signal_group, Lifeline};
use crate::sandbox::Tenant;

/// How much of the build's output (stdout and stderr together) is kept for its error.
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;
/// Lines of that output shown when the build fails.
const SHOWN_LINES: usize = 20;

impl super::Artifacts {
    /// The build's process: `sh -c <command>` in the source directory, confined by the
    /// sandbox (the app's own user and view of the data dir, a cleared environment: `PATH`,
    /// locale, `HOME` = the source directory), in a process group of its own.
    pub(super) fn build_command(
        &self,
        tenant: &Tenant,
        dir: &Path,
        command: &str,
    ) -> Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        self.sandbox.confine(&mut cmd, tenant, dir)?;
        Ok(cmd)
    }
}

/// The last [`OUTPUT_TAIL_BYTES`] of what was written to it.
#[derive(Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(OUTPUT_TAIL_BYTES);
        self.0.drain(..excess);
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.0.make_contiguous()).into_owned()
    }
}

async fn drain(reader: Option<impl AsyncRead + Unpin>, tail: &Mutex<Tail>) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        match tail.lock() {
            Ok(mut t) => t.push(&buf[..n]),
            Err(p) => p.into_inner().push(&buf[..n]),
        }
    }
}

/// Kills the build's whole process group when dropped: what the build left running in the
/// background, or all of it when the build is abandoned.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// Runs `cmd` (shown as `shown` in errors) to its end, for at most `timeout`.
pub(super) async fn run(
    mut cmd: tokio::process::Command,
    shown: &str,
    timeout: Duration,
) -> Result<()> {
    let mut child = cmd
        .spawn()
        .map_err(Error::io("starting the build command"))?;
    let pgid = child
        .id()
        .ok_or_else(|| Error::Internal("the build command ended before it was watched".into()))?;
    // Before anything waits for the child (its group lives until then). Dropped after the
    // guard below (declared first), so that the group is killed while its id is still held.
    let lifeline = match Lifeline::attach(pgid) {
        Ok(l) => l,
        Err(e) => {
            signal_group(pgid, libc::SIGKILL);
            return Err(e);
        }
    };
    let group = GroupGuard(Some(pgid));
    let tail = Mutex::new(Tail::default());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let wait = async {
        let status = child.wait().await;
        // Whatever it started in the background goes with it, so that the pipes close.
        if let Some(pgid) = group.0 {
            signal_group(pgid, libc::SIGKILL);
        }
        status
    };
    let all = async { tokio::join!(wait, drain(stdout, &tail), drain(stderr, &tail)) };
    let outcome = tokio::time::timeout(timeout, all).await;
    drop(group);
    lifeline.cut().await;
    let output = || {
        let mut t = match tail.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        crate::runtime::tail_lines(&t.text(), SHOWN_LINES)
    };
    match outcome {
        Err(_) => Err(Error::BuildFailed(format!(
            "`{shown}` did not finish within {} s: {}",
            timeout.as_secs(),
            output()
        ))),
        Ok((status, (), ())) => {
            let status = status.map_err(Error::io("running the build command"))?;
            if status.success() {
                Ok(())
            } else {
                Err(Error::BuildFailed(format!(
                    "`{shown}` exited with {status}: {}",
                    output()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; OUTPUT_TAIL_BYTES]);
        t.push(b"end");
        let text = t.text();
        assert_eq!(text.len(), OUTPUT_TAIL_BYTES);
        assert!(text.ends_with("aend"));
    }
}

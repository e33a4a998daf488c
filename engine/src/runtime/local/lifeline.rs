//! A process group's lifeline to the server (see the documentation of [`super`]): a watcher
//! in the group that kills the whole group when the server's end of a pipe closes, which
//! the kernel does when the server dies, however it dies.

use std::io::PipeWriter;
use std::process::Stdio;
use std::time::Duration;

use crate::error::{Error, Result};

/// What the watcher runs: it ignores the signals a normal stop sends to the group (so that it
/// outlives the grace period), reads its stdin until the end, then kills its group.
/// Nothing in it comes from users.
const WATCHER: &str = "trap '' HUP INT QUIT TERM PIPE USR1 USR2 ALRM
while read -r line; do :; done
kill -9 0
";

/// Longest a watcher is waited for once its lifeline is cut (it is killed with the group
/// before that, or kills it itself at once).
const WATCHER_EXIT: Duration = Duration::from_secs(5);

/// Holds the server's end of the pipe of the watcher of one process group. Dropping it (or
/// [`Lifeline::cut`]) makes the watcher kill what is left of the group.
#[derive(Debug)]
pub(crate) struct Lifeline {
    write: Option<PipeWriter>,
    watcher: Option<tokio::process::Child>,
}

impl Lifeline {
    /// Starts the watcher of the process group `pgid` (that of a process just started, not
    /// yet waited for: even if it has ended already, its group lives on until it is reaped).
    pub(crate) fn attach(pgid: u32) -> Result<Lifeline> {
        let group = i32::try_from(pgid)
            .ok()
            .filter(|g| *g > 1)
            .ok_or_else(|| Error::Internal(format!("{pgid} is not a process group")))?;
        // Both ends are close-on-exec: no other child keeps the server's end open (the
        // watcher gets the other as its stdin).
        let (read, write) = std::io::pipe().map_err(Error::io("creating a lifeline pipe"))?;
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHER)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(group);
        // No parent-death signal: it must outlive the server long enough to read the end of
        // the pipe and kill the group.
        let watcher = cmd.spawn().map_err(Error::io(format!(
            "starting the lifeline of process group {pgid}"
        )))?;
        Ok(Lifeline {
            write: Some(write),
            watcher: Some(watcher),
        })
    }

    /// Once the process has ended and its group was killed: lets the watcher go (were any of
    /// the group left, the watcher kills it) and waits (bounded) until it is reaped. Until
    /// then the group, and so its id, stays taken: signals sent to it before this can only
    /// reach the process's own group.
    pub(crate) async fn cut(mut self) {
        self.write.take();
        if let Some(mut watcher) = self.watcher.take() {
            let _ = tokio::time::timeout(WATCHER_EXIT, watcher.wait()).await;
        }
    }
}

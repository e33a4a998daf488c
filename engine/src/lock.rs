//! One server per data dir: a second one would take the first one's processes for leftovers
//! of a crash and stop them. The lock is an `flock` on `<data dir>/slipway.lock`, held for the
//! life of the engine and released by the kernel however the server ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = "slipway.lock";

/// How long a lock held by someone else is waited for before giving up: a process forked
/// elsewhere in this program holds a copy of the descriptor until it execs, so a lock just
/// released by an engine of this process can look held for a moment.
const PATIENCE: Duration = Duration::from_secs(2);

/// Locks `dir` for this process; refused with a clear message when another server holds it.
pub async fn lock_data_dir(dir: &Path) -> Result<File> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let give_up = std::time::Instant::now() + PATIENCE;
        loop {
            match try_lock(&dir) {
                Err(Error::Conflict(_)) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("locking the data dir: {e}")))?
}

fn try_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(Error::io(format!("opening {}", path.display())))?;
    // SAFETY: flock(2) on a descriptor this function owns; it touches no memory.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::Io {
                context: format!("locking {}", path.display()),
                source: err,
            });
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() {
            "another Slipway server".to_owned()
        } else {
            format!("another Slipway server (pid {holder})")
        };
        return Err(Error::Conflict(format!(
            "{who} is already using the data dir {}: stop it first, or give this one another data dir",
            dir.display()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).await.unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process, as a second server would.
        let err = lock_data_dir(dir.path()).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("already using the data dir"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        drop(first);
        lock_data_dir(dir.path()).await.unwrap();
    }
}

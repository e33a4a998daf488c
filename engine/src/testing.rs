//! Helpers for tests of the engine and of what is built on it (the server's API tests, the
//! CLI's tests): the example app copied into a temporary directory, and git work trees.
//! A scripted runtime ([`FakeRuntime`]) for the rollout state machine's tests.
//! Test code only; nothing in the engine itself uses them.

use std::path::{Path, PathBuf};

mod fake;
pub use fake::{Behaviour, FakeRuntime, LiveInstance};

/// The entry types of [`ArchiveEntry::special`].
pub use tar::EntryType;

/// Keeps the calling test's runtime busy, so that tokio's paused clock never jumps ahead on
/// its own (it would whenever the test waits on SQLite's thread, firing timeouts that real
/// time would never reach): with `tokio::time::pause()`, time then moves only when the test
/// calls `tokio::time::advance`. Call it from a `#[tokio::test(start_paused = true)]`.
pub fn freeze_time() {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    });
}

/// `examples/hello` of this repository.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

/// A copy of the example app in a temporary directory, its `slipway.yml` passed through `tweak`.
///
/// # Panics
/// When the example cannot be read or copied (a broken checkout).
pub fn example_copy(tweak: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for name in ["app.py", "slipway.yml"] {
        let text = std::fs::read_to_string(example_dir().join(name)).expect("the example app");
        let text = if name == crate::manifest::FILE_NAME {
            tweak(text)
        } else {
            text
        };
        std::fs::write(dir.path().join(name), text).expect("a copy of the example app");
    }
    dir
}

/// Makes `dir` a git work tree with everything in it committed as `subject`; returns the sha.
///
/// # Panics
/// When git is missing or fails.
pub fn git_commit_all(dir: &Path, subject: &str) -> String {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=Slipway Tests",
                "-c",
                "user.email=tests@slipway.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", subject]);
    git(&["rev-parse", "HEAD"])
}

/// One entry of a hand-made source archive (see [`tar_gz`]): hostile ones too, since the name
/// and link target are written into the header as they are (the `tar` crate's own setters
/// refuse `..` and absolute paths).
pub struct ArchiveEntry<'a> {
    pub kind: tar::EntryType,
    pub path: &'a str,
    pub link: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

impl<'a> ArchiveEntry<'a> {
    fn new(kind: tar::EntryType, path: &'a str, link: &'a str, data: &'a [u8]) -> Self {
        ArchiveEntry {
            kind,
            path,
            link,
            data,
            mode: 0o644,
        }
    }

    pub fn file(path: &'a str, data: &'a [u8]) -> Self {
        Self::new(tar::EntryType::Regular, path, "", data)
    }

    pub fn dir(path: &'a str) -> Self {
        Self::new(tar::EntryType::Directory, path, "", b"")
    }

    pub fn symlink(path: &'a str, target: &'a str) -> Self {
        Self::new(tar::EntryType::Symlink, path, target, b"")
    }

    pub fn hard_link(path: &'a str, target: &'a str) -> Self {
        Self::new(tar::EntryType::Link, path, target, b"")
    }

    /// An entry of any other type (a fifo, a device, ...), without data.
    pub fn special(kind: tar::EntryType, path: &'a str) -> Self {
        Self::new(kind, path, "", b"")
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// A `.tar.gz` of `entries`, in order.
///
/// # Panics
/// When a name or link target is longer than 100 bytes.
pub fn tar_gz(entries: &[ArchiveEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(0);
        let gnu = h.as_gnu_mut().expect("a GNU header");
        gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        builder.append(&h, e.data).expect("an archive in memory");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("an archive in memory")
}

/// A sandbox over `data_dir` as the server would have it (per-app users as root), for tests
/// that run builds or processes without a whole engine.
pub async fn sandbox(data_dir: &Path) -> std::sync::Arc<crate::sandbox::Sandbox> {
    std::sync::Arc::new(
        crate::sandbox::Sandbox::new(
            data_dir,
            crate::sandbox::IsolationChoice::Auto,
            crate::sandbox::DEFAULT_UID_BASE,
        )
        .await
        .expect("sandbox"),
    )
}

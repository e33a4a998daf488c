//! Helpers for tests of the engine and of what is built on it (the server's API tests, the
//! CLI's tests): the example app copied into a temporary directory, and git work trees.
//! Test code only; nothing in the engine itself uses them.

use std::path::{Path, PathBuf};

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

//! The user's credentials file, where `slipway login` keeps the server and its API token:
//! `$SLIPWAY_CONFIG`, else `$XDG_CONFIG_HOME/slipway/config.json`, else
//! `~/.config/slipway/config.json`. It is JSON (`{"host": ..., "token": ..., "user": ...}`),
//! readable by its owner only (0600, in a 0700 directory when the CLI creates it), and
//! replaced as a whole (a temporary file renamed over it), so that it is never half written.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::client::CliError;

/// What the file holds. `token` is absent after `slipway logout`; `host` and `user` stay, as
/// the defaults of the next `slipway login`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The server signed in to, as given to `--host` (no trailing slash).
    pub host: String,
    /// The API token (`slw_…`) the CLI sends to `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Who signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("host", &self.host)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .finish()
    }
}

/// Where the file is (it may not exist yet).
pub fn path() -> Result<PathBuf, CliError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = var("SLIPWAY_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    if let Some(dir) = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return Ok(dir.join("slipway").join("config.json"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".config")
            .join("slipway")
            .join("config.json")),
        None => Err(CliError::Usage(
            "cannot tell where to keep the credentials: set SLIPWAY_CONFIG (or HOME)".into(),
        )),
    }
}

/// The file's contents, or `None` when there is no file.
pub fn load(path: &Path) -> Result<Option<Stored>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::Failed(format!("reading {}: {e}", path.display()))),
    };
    warn_if_readable_by_others(path);
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Failed(format!(
            "{} is not a valid Slipway config ({e}): run slipway login to write a new one",
            path.display()
        ))
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} holds an API token but others may read it (chmod 600 it)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes `stored` to `path`: the directory is created (0700) if missing, the file is
/// written to a temporary file (0600) beside it, synced, and renamed over the old one.
pub fn save(path: &Path, stored: &Stored) -> Result<(), CliError> {
    let fail =
        |what: &str, e: std::io::Error| CliError::Failed(format!("{what} {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)
        .map_err(|e| CliError::Failed(format!("creating the directory {}: {e}", dir.display())))?;
    let mut text = serde_json::to_string_pretty(stored)
        .map_err(|e| CliError::Failed(format!("encoding the config: {e}")))?;
    text.push('\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates `path` anew (replacing a leftover), readable by its owner only, with `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_privately_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a").join("b").join("config.json");
        assert_eq!(load(&path).expect("no file is fine"), None);
        let stored = Stored {
            host: "http://127.0.0.1:3000".into(),
            token: Some("slw_secret".into()),
            user: Some("admin".into()),
        };
        save(&path, &stored).expect("saved");
        assert_eq!(load(&path).expect("read"), Some(stored.clone()));
        assert!(!format!("{stored:?}").contains("slw_secret"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
        // Replaced whole; no temporary file left behind.
        let signed_out = Stored {
            token: None,
            ..stored
        };
        save(&path, &signed_out).expect("saved again");
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(!text.contains("token"), "{text}");
        let files: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn a_broken_file_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").expect("write");
        let e = load(&path).expect_err("broken");
        assert!(e.to_string().contains("run slipway login"), "{e}");
    }
}

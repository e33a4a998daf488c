//! Build sources: a directory or a `.tar.gz`, stored content-addressed under the data dir and
//! unpacked once per app, where the build command runs and the processes start:
//!
//! - `uploads/`: archives being received (temporary files, renamed into `artifacts/`);
//! - `artifacts/<sha256>.tar.gz`: every stored source;
//! - `sources/<app>/<sha256>/`: the source unpacked for one app (apps never share files);
//! - `sources/<app>/<sha256>.built`: written by the server once the build succeeded, outside
//!   the tree the build can write.
//!
//! Unpacking refuses whatever could reach outside the tree (see [`unpack`]) and is bounded by
//! [`ArchiveLimits`]; one source of one app is unpacked and built by one caller at a time.

mod build;
#[cfg(test)]
mod security_tests;
mod unpack;
mod upload;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, FILE_NAME};
use crate::names::AppName;
use crate::sandbox::{Sandbox, Tenant};

pub use build::OUTPUT_TAIL_BYTES;
pub use upload::{Upload, UploadedArchive};

/// Largest source archive (compressed) accepted by default.
pub const MAX_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;
/// Most bytes a source archive may unpack to by default.
pub const MAX_UNPACKED_BYTES: u64 = 1024 * 1024 * 1024;
/// Most entries (files, directories, links) a source archive may have by default.
pub const MAX_ARCHIVE_ENTRIES: u64 = 20_000;
/// Longest a manifest's build command may run by default.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest `slipway.yml` read.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Caps on a source archive (the server's `--max-archive-bytes`, `--max-unpacked-bytes` and
/// `--max-archive-entries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest archive, compressed, in bytes.
    pub max_archive_bytes: u64,
    /// Most bytes written when unpacking (the files' contents, as really written).
    pub max_unpacked_bytes: u64,
    /// Most entries.
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_archive_bytes: MAX_ARCHIVE_BYTES as u64,
            max_unpacked_bytes: MAX_UNPACKED_BYTES,
            max_entries: MAX_ARCHIVE_ENTRIES,
        }
    }
}

#[derive(Debug)]
pub enum BuildSource {
    /// A directory on the server's machine; `.gitignore`d files and `.git` are left out.
    Directory(PathBuf),
    /// The bytes of a `.tar.gz` (for callers that hold them already: tests, benches).
    Archive(Vec<u8>),
    /// A `.tar.gz` received into the data dir (see [`crate::Engine::begin_upload`]).
    File(UploadedArchive),
}

#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub sha256: String,
    pub source_dir: PathBuf,
    pub manifest_text: String,
    pub manifest: Manifest,
}

type LockMap = std::sync::Mutex<HashMap<(AppName, String), Arc<tokio::sync::Mutex<()>>>>;

#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
    /// Confines build commands: their app's own user, only their own source.
    sandbox: Arc<Sandbox>,
    limits: ArchiveLimits,
    build_timeout: Duration,
    /// One lock per (app, sha) being unpacked or built.
    locks: Arc<LockMap>,
}

/// Holds the lock of one app's source; forgets the lock when nobody else waits for it.
struct SourceGuard {
    locks: Arc<LockMap>,
    key: (AppName, String),
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = match self.locks.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        // Only the map and this guard hold it: clones are only taken under the map's lock.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.key);
        }
    }
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("{what} task failed: {e}")))?
}

fn check_sha(sha: &str) -> Result<()> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::Internal(format!("not an artifact id: {sha:?}")))
    }
}

/// Removes what is at `path` (a tree, a file or a link, never following it), if anything.
fn remove_any(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(Error::io(format!("removing {}", path.display())))
}

/// Reads and parses `dir/slipway.yml`, which must be a regular file (never a link).
pub(crate) fn read_manifest(dir: &Path) -> Result<(String, Manifest)> {
    let path = dir.join(FILE_NAME);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        // Not through a link; and a fifo must not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Manifest(format!(
                "the source has no {FILE_NAME} at its top level"
            )))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::Manifest(format!(
                "{FILE_NAME} must be a regular file (it is a symbolic link)"
            )))
        }
        Err(e) => return Err(Error::io(format!("reading {FILE_NAME}"))(e)),
    };
    let meta = file
        .metadata()
        .map_err(Error::io(format!("reading {FILE_NAME}")))?;
    if !meta.is_file() {
        return Err(Error::Manifest(format!(
            "{FILE_NAME} must be a regular file"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io(format!("reading {FILE_NAME}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::Manifest(format!(
            "{FILE_NAME} is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Manifest(format!("{FILE_NAME} is not UTF-8 text")))?;
    let manifest = Manifest::parse(&text)?;
    Ok((text, manifest))
}

/// Marks a source as built: a new empty file, created without following a link (one left
/// where the marker goes is removed first).
fn mark_built(marker: &Path) -> Result<()> {
    remove_any(marker)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(marker)
        .map_err(Error::io("marking the source as built"))?;
    Ok(())
}

impl Artifacts {
    pub fn new(data_dir: &Path, limits: ArchiveLimits, sandbox: Arc<Sandbox>) -> Self {
        Artifacts {
            root: data_dir.to_path_buf(),
            sandbox,
            limits,
            build_timeout: BUILD_TIMEOUT,
            locks: Arc::default(),
        }
    }

    /// How long a build command may run (instead of [`BUILD_TIMEOUT`]).
    pub fn with_build_timeout(mut self, timeout: Duration) -> Self {
        self.build_timeout = timeout;
        self
    }

    pub fn limits(&self) -> &ArchiveLimits {
        &self.limits
    }

    fn archive_path(&self, sha: &str) -> PathBuf {
        self.root.join("artifacts").join(format!("{sha}.tar.gz"))
    }

    fn app_dir(&self, app: &AppName) -> PathBuf {
        self.root.join("sources").join(app.as_str())
    }

    /// Where a build's source is unpacked (and built) for `app`.
    pub fn source_dir(&self, app: &AppName, sha: &str) -> PathBuf {
        self.app_dir(app).join(sha)
    }

    /// The marker of a successful build, next to (not in) the source tree.
    fn built_marker(&self, app: &AppName, sha: &str) -> PathBuf {
        self.app_dir(app).join(format!("{sha}.built"))
    }

    /// Starts receiving an archive; refused at once when `expected_len` (a Content-Length) is
    /// over the limit.
    pub async fn begin_upload(&self, expected_len: Option<u64>) -> Result<Upload> {
        let limit = self.limits.max_archive_bytes;
        if expected_len.is_some_and(|n| n > limit) {
            return Err(upload::too_large(limit));
        }
        Upload::create(self.root.join("uploads"), limit).await
    }

    /// The source as a complete archive in `uploads/`.
    async fn receive(&self, source: BuildSource) -> Result<UploadedArchive> {
        let dir = self.root.join("uploads");
        let limit = self.limits.max_archive_bytes;
        match source {
            BuildSource::File(file) => {
                if file.len() > limit {
                    return Err(upload::too_large(limit));
                }
                Ok(file)
            }
            BuildSource::Archive(bytes) => {
                blocking("upload", move || {
                    UploadedArchive::from_bytes(&dir, &bytes, limit)
                })
                .await
            }
            BuildSource::Directory(src) => {
                blocking("packing", move || {
                    UploadedArchive::from_bytes(&dir, &pack_dir(&src)?, limit)
                })
                .await
            }
        }
    }

    /// Waits for, then holds, the lock of `app`'s source `sha`.
    async fn lock(&self, app: &AppName, sha: &str) -> SourceGuard {
        let key = (app.clone(), sha.to_owned());
        let lock = {
            let mut map = match self.locks.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.entry(key.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        SourceGuard {
            locks: self.locks.clone(),
            key,
            lock,
            guard: Some(guard),
        }
    }

    /// Whether `app`'s source `sha` is unpacked and built (under its lock).
    async fn is_built(&self, app: &AppName, sha: &str) -> bool {
        let marker = tokio::fs::symlink_metadata(self.built_marker(app, sha)).await;
        let tree = tokio::fs::symlink_metadata(self.source_dir(app, sha)).await;
        marker.is_ok_and(|m| m.file_type().is_file()) && tree.is_ok_and(|m| m.file_type().is_dir())
    }

    /// Unpacks `archive` as `app`'s source `sha` (replacing what an earlier, unfinished
    /// attempt left) and reads its manifest. Unpacked into a temporary directory first, so
    /// that nothing half-unpacked is ever left.
    async fn unpack_fresh(
        &self,
        app: &AppName,
        sha: &str,
        archive: PathBuf,
    ) -> Result<(String, Manifest)> {
        let app_dir = self.app_dir(app);
        let target = self.source_dir(app, sha);
        let marker = self.built_marker(app, sha);
        let limits = self.limits;
        blocking("unpack", move || {
            std::fs::create_dir_all(&app_dir)
                .map_err(Error::io(format!("creating {}", app_dir.display())))?;
            let tmp = tempfile::Builder::new()
                .prefix(".unpack-")
                .tempdir_in(&app_dir)
                .map_err(Error::io("creating a temporary directory"))?;
            unpack::unpack(&archive, tmp.path(), &limits)?;
            let manifest = read_manifest(tmp.path())?;
            remove_any(&marker)?;
            remove_any(&target)?;
            let tmp_path = tmp.keep();
            if let Err(e) = std::fs::rename(&tmp_path, &target) {
                let _ = std::fs::remove_dir_all(&tmp_path);
                return Err(Error::io(format!("storing {}", target.display()))(e));
            }
            Ok(manifest)
        })
        .await
    }

    /// Runs the manifest's build command in the unpacked source and marks it built; a failed
    /// build's tree is removed.
    async fn build(&self, tenant: &Tenant, sha: &str, manifest: &Manifest) -> Result<()> {
        let app = &tenant.app;
        let dir = self.source_dir(app, sha);
        if let Some(command) = &manifest.build {
            let cmd = self.build_command(tenant, &dir, command)?;
            if let Err(e) = build::run(cmd, command, self.build_timeout).await {
                let removed = blocking("cleanup", move || remove_any(&dir)).await;
                if let Err(r) = removed {
                    tracing::warn!(error = %r, "could not remove a failed build's source");
                }
                return Err(e);
            }
        }
        let marker = self.built_marker(app, sha);
        blocking("build", move || mark_built(&marker)).await
    }

    /// Stores the source, unpacks it for the tenant's app, parses its manifest and runs its
    /// build command (confined, as the app), once per app and distinct content.
    pub async fn store(&self, tenant: &Tenant, source: BuildSource) -> Result<StoredArtifact> {
        let app = &tenant.app;
        let upload = self.receive(source).await?;
        let sha = upload.sha256().to_owned();
        let _guard = self.lock(app, &sha).await;
        let source_dir = self.source_dir(app, &sha);
        let (manifest_text, manifest) = if self.is_built(app, &sha).await {
            let dir = source_dir.clone();
            blocking("manifest", move || read_manifest(&dir)).await?
        } else {
            let found = self
                .unpack_fresh(app, &sha, upload.path().to_path_buf())
                .await?;
            self.build(tenant, &sha, &found.1).await?;
            found
        };
        // Kept only once it proved to be a source that builds.
        let archive = self.archive_path(&sha);
        blocking("storing", move || {
            if archive.exists() {
                return Ok(());
            }
            if let Some(dir) = archive.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
            }
            upload.persist(&archive)
        })
        .await?;
        Ok(StoredArtifact {
            sha256: sha,
            source_dir,
            manifest_text,
            manifest,
        })
    }

    /// Makes sure `app`'s source `sha` is unpacked and built (after a data dir was moved or a
    /// crash during a build) and returns its directory.
    pub async fn ensure_source(
        &self,
        tenant: &Tenant,
        sha: &str,
        manifest: &Manifest,
    ) -> Result<PathBuf> {
        let app = &tenant.app;
        check_sha(sha)?;
        let _guard = self.lock(app, sha).await;
        let dir = self.source_dir(app, sha);
        if self.is_built(app, sha).await {
            return Ok(dir);
        }
        self.unpack_fresh(app, sha, self.archive_path(sha)).await?;
        self.build(tenant, sha, manifest).await?;
        Ok(dir)
    }
}

/// Packs a directory as a reproducible `.tar.gz` (see [`types::pack::pack_dir`]).
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>> {
    Ok(types::pack::pack_dir(dir)?)
}

/// `build <10-char sha> <subject>` when `dir` is a clean git work tree, else `None` (see
/// [`types::pack::git_description`], run on a blocking thread).
pub async fn git_description(dir: &Path) -> Option<(String, String)> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || types::pack::git_description(&dir))
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Artifacts over `data` with the default limits and the server's sandbox.
    async fn artifacts_in(data: &Path) -> Artifacts {
        Artifacts::new(
            data,
            ArchiveLimits::default(),
            crate::testing::sandbox(data).await,
        )
    }

    fn app(name: &str) -> Tenant {
        Tenant {
            app: AppName::parse(name).unwrap(),
            number: name.len() as i64,
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[tokio::test]
    async fn store_unpacks_builds_and_dedups() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(
            src.path(),
            "slipway.yml",
            "build: echo built > out.txt\nservices:\n  web:\n    command: x\n",
        );
        let artifacts = artifacts_in(data.path()).await;
        let a = artifacts
            .store(&app("a"), BuildSource::Directory(src.path().into()))
            .await
            .unwrap();
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(
            std::fs::read_to_string(a.source_dir.join("out.txt")).unwrap(),
            "built\n"
        );
        let bytes = pack_dir(src.path()).unwrap();
        let b = artifacts
            .store(&app("a"), BuildSource::Archive(bytes))
            .await
            .unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert!(data
            .path()
            .join("artifacts")
            .join(format!("{}.tar.gz", a.sha256))
            .exists());
    }

    #[tokio::test]
    async fn bad_sources_are_clear_errors() {
        let data = tempfile::tempdir().unwrap();
        let artifacts = artifacts_in(data.path()).await;
        let err = artifacts
            .store(&app("a"), BuildSource::Archive(b"not gzip".to_vec()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a valid .tar.gz"), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Unprocessable, "{err}");

        let src = tempfile::tempdir().unwrap();
        write(src.path(), "readme", "no manifest");
        let err = artifacts
            .store(&app("a"), BuildSource::Directory(src.path().into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no slipway.yml"), "{err}");

        let src = tempfile::tempdir().unwrap();
        write(
            src.path(),
            "slipway.yml",
            "build: echo oops; exit 3\nservices:\n  web:\n    command: x\n",
        );
        let err = artifacts
            .store(&app("a"), BuildSource::Directory(src.path().into()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BuildFailed(_)), "{err}");
        assert!(err.to_string().contains("oops"), "{err}");
    }

    #[tokio::test]
    async fn each_app_has_its_own_tree_and_marker() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(
            src.path(),
            "slipway.yml",
            "build: echo built > out.txt\nservices:\n  web:\n    command: x\n",
        );
        let artifacts = artifacts_in(data.path()).await;
        let a = artifacts
            .store(&app("one"), BuildSource::Directory(src.path().into()))
            .await
            .unwrap();
        let b = artifacts
            .store(&app("two"), BuildSource::Directory(src.path().into()))
            .await
            .unwrap();
        assert_eq!(a.sha256, b.sha256);
        let sources = data.path().join("sources");
        assert_eq!(a.source_dir, sources.join("one").join(&a.sha256));
        assert_eq!(b.source_dir, sources.join("two").join(&a.sha256));
        for name in ["one", "two"] {
            let dir = sources.join(name);
            assert!(dir.join(&a.sha256).join("out.txt").is_file());
            assert!(dir.join(format!("{}.built", a.sha256)).is_file());
            assert!(!dir.join(&a.sha256).join(".slipway-built").exists());
        }
        // Gone (a moved data dir): unpacked and built again from the stored archive.
        std::fs::remove_dir_all(&a.source_dir).unwrap();
        let dir = artifacts
            .ensure_source(&app("one"), &a.sha256, &a.manifest)
            .await
            .unwrap();
        assert!(dir.join("out.txt").is_file());
        // Nothing left in uploads/.
        assert_eq!(
            std::fs::read_dir(data.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn uploads_are_streamed_to_a_file_and_capped() {
        let src = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        write(
            src.path(),
            "slipway.yml",
            "services:\n  web:\n    command: x\n",
        );
        let bytes = pack_dir(src.path()).unwrap();
        let limits = ArchiveLimits {
            max_archive_bytes: bytes.len() as u64,
            ..ArchiveLimits::default()
        };
        let artifacts = Artifacts::new(
            data.path(),
            limits,
            crate::testing::sandbox(data.path()).await,
        );
        let mut upload = artifacts.begin_upload(None).await.unwrap();
        for chunk in bytes.chunks(100) {
            upload.write(chunk).await.unwrap();
        }
        let file = upload.finish().await.unwrap();
        let stored = artifacts
            .store(&app("a"), BuildSource::File(file))
            .await
            .unwrap();
        let archive = data
            .path()
            .join("artifacts")
            .join(format!("{}.tar.gz", stored.sha256));
        assert_eq!(std::fs::read(archive).unwrap(), bytes);

        let err = artifacts
            .begin_upload(Some(bytes.len() as u64 + 1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::TooLarge);
        assert!(err.to_string().contains("--max-archive-bytes"), "{err}");
        let mut upload = artifacts.begin_upload(None).await.unwrap();
        upload.write(&bytes).await.unwrap();
        let err = upload.write(b"x").await.unwrap_err();
        assert!(err.to_string().contains("--max-archive-bytes"), "{err}");
        drop(upload);
        let err = artifacts
            .store(&app("a"), BuildSource::Archive(vec![0; bytes.len() + 1]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::TooLarge, "{err}");
        assert_eq!(
            std::fs::read_dir(data.path().join("uploads"))
                .unwrap()
                .count(),
            0
        );
    }
}

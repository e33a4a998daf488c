//! Build sources: a directory or a `.tar.gz`, stored content-addressed under the data dir
//! (`artifacts/<sha256>.tar.gz`) and unpacked once (`sources/<sha256>/`), where the build
//! command runs and the processes start.

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, FILE_NAME};

/// Largest source archive accepted.
pub const MAX_ARCHIVE_BYTES: usize = 256 * 1024 * 1024;
/// Longest a manifest's build command may run.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub enum BuildSource {
    /// A directory on the server's machine; `.gitignore`d files and `.git` are left out.
    Directory(PathBuf),
    /// The bytes of a `.tar.gz` of a source directory.
    Archive(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub sha256: String,
    pub source_dir: PathBuf,
    pub manifest_text: String,
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
}

impl Artifacts {
    pub fn new(data_dir: &Path) -> Self {
        Artifacts {
            root: data_dir.to_path_buf(),
        }
    }

    fn archive_path(&self, sha: &str) -> PathBuf {
        self.root.join("artifacts").join(format!("{sha}.tar.gz"))
    }

    /// Where a build's source is unpacked (and built).
    pub fn source_dir(&self, sha: &str) -> PathBuf {
        self.root.join("sources").join(sha)
    }

    /// Stores the source, unpacks it, parses its manifest and runs its build command, once per
    /// distinct content.
    pub async fn store(&self, source: BuildSource) -> Result<StoredArtifact> {
        let this = self.clone();
        let (sha, manifest_text, manifest) = tokio::task::spawn_blocking(move || -> Result<_> {
            let bytes = match source {
                BuildSource::Directory(dir) => pack_dir(&dir)?,
                BuildSource::Archive(bytes) => bytes,
            };
            if bytes.len() > MAX_ARCHIVE_BYTES {
                return Err(Error::TooLarge {
                    what: "the source archive".into(),
                    limit: MAX_ARCHIVE_BYTES,
                });
            }
            let sha = hex::encode(Sha256::digest(&bytes));
            this.write_archive(&sha, &bytes)?;
            let (text, manifest) = this.unpack(&sha, &bytes)?;
            Ok((sha, text, manifest))
        })
        .await
        .map_err(|e| Error::Internal(format!("build task failed: {e}")))??;
        let source_dir = self.source_dir(&sha);
        if !source_dir.join(".slipway-built").exists() {
            self.run_build(&sha, &manifest).await?;
        }
        Ok(StoredArtifact {
            sha256: sha,
            source_dir,
            manifest_text,
            manifest,
        })
    }

    /// Makes sure the source of `sha` is unpacked and built (after a data dir was moved or a
    /// crash during a build) and returns its directory.
    pub async fn ensure_source(&self, sha: &str, manifest: &Manifest) -> Result<PathBuf> {
        let dir = self.source_dir(sha);
        if dir.join(".slipway-built").exists() {
            return Ok(dir);
        }
        let this = self.clone();
        let sha_owned = sha.to_owned();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let path = this.archive_path(&sha_owned);
            let bytes =
                std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
            this.unpack(&sha_owned, &bytes)?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack task failed: {e}")))??;
        self.run_build(sha, manifest).await?;
        Ok(dir)
    }

    fn write_archive(&self, sha: &str, bytes: &[u8]) -> Result<()> {
        let path = self.archive_path(sha);
        if path.exists() {
            return Ok(());
        }
        let dir = self.root.join("artifacts");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(Error::io("creating a temporary file"))?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(Error::io("writing the archive"))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("storing {}", path.display()))(e.error))?;
        Ok(())
    }

    /// Unpacks into `sources/<sha>` (through a temporary directory, so a half-unpacked source
    /// is never seen) and parses the manifest.
    fn unpack(&self, sha: &str, bytes: &[u8]) -> Result<(String, Manifest)> {
        let target = self.source_dir(sha);
        if !target.exists() {
            let parent = self.root.join("sources");
            std::fs::create_dir_all(&parent)
                .map_err(Error::io(format!("creating {}", parent.display())))?;
            let tmp = tempfile::Builder::new()
                .prefix(".unpack-")
                .tempdir_in(&parent)
                .map_err(Error::io("creating a temporary directory"))?;
            let mut archive = tar::Archive::new(GzDecoder::new(bytes));
            archive.set_preserve_permissions(true);
            // `unpack` refuses entries that would land outside the directory.
            archive
                .unpack(tmp.path())
                .map_err(|e| Error::invalid("source", format!("not a valid .tar.gz: {e}")))?;
            let tmp_path = tmp.keep();
            if let Err(e) = std::fs::rename(&tmp_path, &target) {
                let _ = std::fs::remove_dir_all(&tmp_path);
                if !target.exists() {
                    return Err(Error::io(format!("storing {}", target.display()))(e));
                }
            }
        }
        let manifest_path = target.join(FILE_NAME);
        let text = match std::fs::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Manifest(format!(
                    "the source has no {FILE_NAME} at its top level"
                )))
            }
            Err(e) => return Err(Error::io(format!("reading {FILE_NAME}"))(e)),
        };
        let manifest = Manifest::parse(&text)?;
        Ok((text, manifest))
    }

    async fn run_build(&self, sha: &str, manifest: &Manifest) -> Result<()> {
        let dir = self.source_dir(sha);
        if let Some(cmd) = &manifest.build {
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&dir)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = match tokio::time::timeout(BUILD_TIMEOUT, child).await {
                Ok(r) => r.map_err(Error::io("running the build command"))?,
                Err(_) => {
                    return Err(Error::BuildFailed(format!(
                        "`{cmd}` did not finish within {} s",
                        BUILD_TIMEOUT.as_secs()
                    )))
                }
            };
            if !out.status.success() {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                return Err(Error::BuildFailed(format!(
                    "`{cmd}` exited with {}: {}",
                    out.status,
                    crate::runtime::tail_lines(&text, 20)
                )));
            }
        }
        std::fs::write(dir.join(".slipway-built"), b"")
            .map_err(Error::io("marking the source as built"))?;
        Ok(())
    }
}

/// Packs a directory as a reproducible `.tar.gz` (sorted, mtime 0), leaving out `.git` and
/// what `.gitignore` files exclude.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>> {
    if !dir.is_dir() {
        return Err(Error::invalid(
            "source",
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| Error::Internal(format!("walking the source: {e}")))?;
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .map_err(|e| Error::Internal(format!("packing {}: {e}", path.display())))?;
        let meta =
            std::fs::metadata(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(meta.len());
        header.set_mtime(0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            header.set_mode(meta.permissions().mode() & 0o777);
        }
        header.set_entry_type(tar::EntryType::Regular);
        let mut file =
            std::fs::File::open(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        let mut contents = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut contents)
            .map_err(Error::io(format!("reading {}", path.display())))?;
        builder
            .append_data(&mut header, rel, contents.as_slice())
            .map_err(Error::io(format!("packing {}", path.display())))?;
    }
    let gz = builder
        .into_inner()
        .map_err(Error::io("packing the source"))?;
    gz.finish().map_err(Error::io("compressing the source"))
}

/// `build <10-char sha> <subject>` when `dir` is a clean git work tree, else `None`.
pub async fn git_description(dir: &Path) -> Option<(String, String)> {
    let git = |args: &[&str]| {
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
    };
    let status = git(&["status", "--porcelain"]).await.ok()?;
    if !status.status.success() || !status.stdout.is_empty() {
        return None;
    }
    let log = git(&["log", "-1", "--format=%H%n%s"]).await.ok()?;
    if !log.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&log.stdout);
    let mut lines = text.lines();
    let sha = lines.next()?.trim().to_owned();
    let subject = lines.next().unwrap_or("").trim().to_owned();
    if sha.len() < 10 {
        return None;
    }
    let description = format!("build {} {}", &sha[..10], subject)
        .trim_end()
        .to_owned();
    Some((sha, description))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn pack_is_reproducible_and_respects_gitignore() {
        let src = tempfile::tempdir().unwrap();
        write(
            src.path(),
            "slipway.yml",
            "services:\n  web:\n    command: x\n",
        );
        write(src.path(), "a/b.txt", "b");
        write(src.path(), ".gitignore", "secret.txt\n");
        write(src.path(), "secret.txt", "nope");
        write(src.path(), ".git/config", "nope");
        let one = pack_dir(src.path()).unwrap();
        let two = pack_dir(src.path()).unwrap();
        assert_eq!(one, two);
        let mut names: Vec<String> = tar::Archive::new(GzDecoder::new(one.as_slice()))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".gitignore", "a/b.txt", "slipway.yml"]);
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
        let artifacts = Artifacts::new(data.path());
        let a = artifacts
            .store(BuildSource::Directory(src.path().into()))
            .await
            .unwrap();
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(
            std::fs::read_to_string(a.source_dir.join("out.txt")).unwrap(),
            "built\n"
        );
        let bytes = pack_dir(src.path()).unwrap();
        let b = artifacts.store(BuildSource::Archive(bytes)).await.unwrap();
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
        let artifacts = Artifacts::new(data.path());
        let err = artifacts
            .store(BuildSource::Archive(b"not gzip".to_vec()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a valid .tar.gz"), "{err}");

        let src = tempfile::tempdir().unwrap();
        write(src.path(), "readme", "no manifest");
        let err = artifacts
            .store(BuildSource::Directory(src.path().into()))
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
            .store(BuildSource::Directory(src.path().into()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BuildFailed(_)), "{err}");
        assert!(err.to_string().contains("oops"), "{err}");
    }
}

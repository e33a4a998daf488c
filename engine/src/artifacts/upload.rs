//! Receiving a source archive into the data dir: a temporary file in `uploads/`, hashed as it
//! is written and refused once it is over the size limit. It becomes the stored artifact by a
//! rename; dropped, it is removed.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// The error for an archive over `limit` bytes.
pub(super) fn too_large(limit: u64) -> Error {
    Error::ArchiveLimit(format!(
        "the source archive is larger than {limit} bytes (the server's --max-archive-bytes, \
         or SLIPWAY_MAX_ARCHIVE_BYTES)"
    ))
}

/// An archive being received: write its bytes in order, then [`finish`](Upload::finish).
#[derive(Debug)]
pub struct Upload {
    file: tokio::fs::File,
    path: tempfile::TempPath,
    hasher: Sha256,
    len: u64,
    limit: u64,
}

impl Upload {
    pub(super) async fn create(dir: PathBuf, limit: u64) -> Result<Upload> {
        let (file, path) = tokio::task::spawn_blocking(move || -> Result<_> {
            let tmp = temp_file(&dir)?;
            Ok(tmp.into_parts())
        })
        .await
        .map_err(|e| Error::Internal(format!("upload task failed: {e}")))??;
        Ok(Upload {
            file: tokio::fs::File::from_std(file),
            path,
            hasher: Sha256::new(),
            len: 0,
            limit,
        })
    }

    /// Appends `chunk`; fails (and the upload should be dropped) once over the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.len = self.len.saturating_add(chunk.len() as u64);
        if self.len > self.limit {
            return Err(too_large(self.limit));
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(Error::io("writing the upload"))
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole archive, ready to be stored ([`BuildSource::File`](super::BuildSource::File)).
    pub async fn finish(mut self) -> Result<UploadedArchive> {
        self.file
            .flush()
            .await
            .map_err(Error::io("writing the upload"))?;
        Ok(UploadedArchive {
            path: self.path,
            sha256: hex::encode(self.hasher.finalize()),
            len: self.len,
        })
    }
}

/// A complete archive in the data dir, with its SHA-256; removed when dropped unless stored.
#[derive(Debug)]
pub struct UploadedArchive {
    path: tempfile::TempPath,
    sha256: String,
    len: u64,
}

impl UploadedArchive {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `to` (a rename: `to` is in the same data dir).
    pub(super) fn persist(self, to: &Path) -> Result<()> {
        self.path
            .persist(to)
            .map_err(|e| Error::io(format!("storing {}", to.display()))(e.error))
    }

    /// Writes `bytes` (an archive already in memory) into `dir` the same way.
    pub(super) fn from_bytes(dir: &Path, bytes: &[u8], limit: u64) -> Result<UploadedArchive> {
        if bytes.len() as u64 > limit {
            return Err(too_large(limit));
        }
        let mut tmp = temp_file(dir)?;
        tmp.write_all(bytes)
            .map_err(Error::io("writing the archive"))?;
        Ok(UploadedArchive {
            path: tmp.into_temp_path(),
            sha256: hex::encode(Sha256::digest(bytes)),
            len: bytes.len() as u64,
        })
    }
}

fn temp_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    tempfile::Builder::new()
        .prefix(".upload-")
        .suffix(".tar.gz")
        .tempfile_in(dir)
        .map_err(Error::io("creating a temporary file for the upload"))
}

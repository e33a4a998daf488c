//! Unpacking a source archive entry by entry, refusing whatever could reach outside the
//! directory it is unpacked into: paths with `..` or a leading `/`, links out of the tree,
//! hard links, devices and fifos. Nothing is ever followed while unpacking: files are created
//! new with `O_NOFOLLOW`, and every parent must be a real directory. Modes lose
//! setuid/setgid/sticky and group/other write. The entries and the bytes written are counted
//! against [`ArchiveLimits`].

use flate2::read::GzDecoder;
use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use tar::EntryType;

use super::ArchiveLimits;
use crate::error::{Error, Result};

/// What the archive may hold besides the files' data (headers, padding, long names, pax
/// records), on top of 1 KiB per entry: bounds what the tar reader reads (and keeps in memory)
/// on its own.
const METADATA_BYTES: u64 = 16 * 1024 * 1024;
/// Longest entry name quoted in an error.
const MAX_NAME_CHARS: usize = 200;

pub(super) fn unpacked_too_large(limit: u64) -> Error {
    Error::ArchiveLimit(format!(
        "the source archive unpacks to more than {limit} bytes (the server's \
         --max-unpacked-bytes, or SLIPWAY_MAX_UNPACKED_BYTES)"
    ))
}

fn too_many_entries(limit: u64) -> Error {
    Error::ArchiveLimit(format!(
        "the source archive has more than {limit} entries (the server's \
         --max-archive-entries, or SLIPWAY_MAX_ARCHIVE_ENTRIES)"
    ))
}

fn not_valid(e: std::io::Error) -> Error {
    Error::NotAnArchive(e.to_string())
}

/// How many decompressed bytes the tar reader may read so far.
#[derive(Default)]
struct Budget {
    read: Cell<u64>,
    allowed: Cell<u64>,
    over: Cell<bool>,
}

impl Budget {
    fn allow(&self, bytes: u64) {
        self.allowed.set(self.allowed.get().saturating_add(bytes));
    }
}

/// The decompressed stream, cut off once over its [`Budget`].
struct Metered<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = self.budget.read.get().saturating_add(n as u64);
        self.budget.read.set(read);
        if read > METADATA_BYTES.saturating_add(self.budget.allowed.get()) {
            self.budget.over.set(true);
            return Err(std::io::Error::other("the archive is larger than allowed"));
        }
        Ok(n)
    }
}

/// The entry's name as shown in errors: quoted, escaped, shortened.
pub(super) fn display_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut short: String = text.chars().take(MAX_NAME_CHARS).collect();
    if text.chars().count() > MAX_NAME_CHARS {
        short.push('…');
    }
    format!("{short:?}")
}

fn refuse(name: &str, why: &str) -> Error {
    Error::UnsafeArchive(format!("entry {name} {why}"))
}

/// The entry's path as plain components, or `None` for the top directory itself (`./`).
fn relative_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.is_empty() {
        return Err("has an empty path");
    }
    let mut rel = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("has `..` in its path"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Checks that a symbolic link at `rel` pointing to `target` stays inside the tree. Only
/// leading `..` are allowed (as many as `rel` has parent directories): after a plain name
/// (which may itself be a link) a `..` could lead anywhere.
fn check_link_target(rel: &Path, target: &[u8]) -> std::result::Result<(), &'static str> {
    if target.is_empty() {
        return Err("is a symbolic link without a target");
    }
    let depth = rel.components().count().saturating_sub(1);
    let mut ups = 0;
    let mut down = false;
    for c in Path::new(OsStr::from_bytes(target)).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("is a symbolic link to an absolute path, outside the archive")
            }
            Component::CurDir => {}
            Component::ParentDir if down => {
                return Err("is a symbolic link whose target has `..` after a name")
            }
            Component::ParentDir => {
                ups += 1;
                if ups > depth {
                    return Err("is a symbolic link that points outside the archive");
                }
            }
            Component::Normal(_) => down = true,
        }
    }
    Ok(())
}

/// Creates the directories of `rel` under `root` (mode 0755), refusing any that exists as
/// something other than a real directory (a symbolic link is never followed).
fn make_dirs(root: &Path, rel: &Path, name: &str) -> Result<()> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(refuse(
                    name,
                    "is inside a path that is not a directory (a file or a symbolic link)",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(Error::io(format!("creating {}", dir.display())))?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()))(e)),
        }
    }
    Ok(())
}

fn make_parent(root: &Path, rel: &Path, name: &str) -> Result<()> {
    match rel.parent() {
        Some(parent) => make_dirs(root, parent, name),
        None => Ok(()),
    }
}

/// A file's mode as unpacked: no setuid/setgid/sticky, no group/other write, at least user
/// read and write.
pub(super) fn file_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o600
}

/// Unpacks the `.tar.gz` at `archive` into the empty directory `dest`. On error `dest` is
/// left as it is: the caller removes it.
pub(super) fn unpack(archive: &Path, dest: &Path, limits: &ArchiveLimits) -> Result<()> {
    let file = File::open(archive).map_err(Error::io(format!("reading {}", archive.display())))?;
    let budget = Rc::new(Budget::default());
    let reader = Metered {
        inner: GzDecoder::new(BufReader::new(file)),
        budget: budget.clone(),
    };
    let mut tar = tar::Archive::new(reader);
    let over = |e: std::io::Error| {
        if budget.over.get() {
            unpacked_too_large(limits.max_unpacked_bytes)
        } else {
            not_valid(e)
        }
    };
    let entries = tar.entries().map_err(not_valid)?;
    let mut count: u64 = 0;
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in entries {
        let mut entry = entry.map_err(over)?;
        count += 1;
        if count > limits.max_entries {
            return Err(too_many_entries(limits.max_entries));
        }
        // The next entry's header and this one's padding.
        budget.allow(1024);
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Archive-wide pax records (`git archive` writes the commit id): nothing to unpack.
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let name = display_name(&raw);
        let rel = relative_path(&raw).map_err(|why| refuse(&name, why))?;
        match kind {
            EntryType::Directory => {
                if let Some(rel) = rel {
                    make_dirs(dest, &rel, &name)?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let rel = rel.ok_or_else(|| refuse(&name, "is a file without a name"))?;
                make_parent(dest, &rel, &name)?;
                let mode = file_mode(entry.header().mode().unwrap_or(0o644));
                let path = dest.join(&rel);
                let mut out = match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(refuse(&name, "appears twice in the archive"))
                    }
                    Err(e) => return Err(Error::io(format!("creating {}", path.display()))(e)),
                };
                // The umask may have taken bits away; set exactly these (on the open file).
                out.set_permissions(Permissions::from_mode(mode))
                    .map_err(Error::io(format!("setting the mode of {}", path.display())))?;
                let remaining = limits.max_unpacked_bytes.saturating_sub(written);
                budget.allow(entry.size().min(remaining.saturating_add(1)));
                loop {
                    let n = entry.read(&mut buf).map_err(over)?;
                    if n == 0 {
                        break;
                    }
                    written = written.saturating_add(n as u64);
                    if written > limits.max_unpacked_bytes {
                        return Err(unpacked_too_large(limits.max_unpacked_bytes));
                    }
                    out.write_all(&buf[..n])
                        .map_err(Error::io(format!("writing {}", path.display())))?;
                }
            }
            EntryType::Symlink => {
                let rel = rel.ok_or_else(|| refuse(&name, "is a link without a name"))?;
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                check_link_target(&rel, &target).map_err(|why| refuse(&name, why))?;
                make_parent(dest, &rel, &name)?;
                let path = dest.join(&rel);
                match std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(refuse(&name, "appears twice in the archive"))
                    }
                    Err(e) => return Err(Error::io(format!("creating {}", path.display()))(e)),
                }
            }
            EntryType::Link => return Err(refuse(&name, "is a hard link")),
            EntryType::Char | EntryType::Block => return Err(refuse(&name, "is a device")),
            EntryType::Fifo => return Err(refuse(&name, "is a fifo (named pipe)")),
            _ => {
                return Err(refuse(
                    &name,
                    "has an unsupported type (only files, directories and symbolic links)",
                ))
            }
        }
    }
    if budget.over.get() {
        return Err(unpacked_too_large(limits.max_unpacked_bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(relative_path(b"a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(
            relative_path(b"./a//b/").unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(relative_path(b"./").unwrap(), None);
        assert!(relative_path(b"").is_err());
        assert!(relative_path(b"../x").is_err());
        assert!(relative_path(b"a/../../x").is_err());
        assert!(relative_path(b"/etc/passwd").is_err());
    }

    #[test]
    fn link_targets() {
        let ok = |rel: &str, t: &str| check_link_target(Path::new(rel), t.as_bytes()).is_ok();
        assert!(ok("a", "b"));
        assert!(ok("a", "./b/c"));
        assert!(ok("d/a", "../b"));
        assert!(ok("d/e/a", "../../b"));
        assert!(!ok("a", "../b"));
        assert!(!ok("d/a", "../../b"));
        assert!(!ok("a", "/etc/passwd"));
        assert!(!ok("a", "b/../../c"));
        assert!(!ok("a", "b/.."));
        assert!(!ok("a", ""));
    }

    #[test]
    fn modes() {
        assert_eq!(file_mode(0o4755), 0o755);
        assert_eq!(file_mode(0o2777), 0o755);
        assert_eq!(file_mode(0o1666), 0o644);
        assert_eq!(file_mode(0o000), 0o600);
        assert_eq!(file_mode(0o444), 0o644);
    }
}

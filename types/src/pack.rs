//! A source directory as the server receives it: packed into a reproducible `.tar.gz`, and
//! described by its git commit when it is a clean work tree. One implementation for the
//! engine (building from a directory) and the CLI (`slipway deploy DIR`). Blocking: async
//! callers run these on a blocking thread.

use flate2::write::GzEncoder;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

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
        let entry = entry.map_err(|e| Error::io("walking the source")(std::io::Error::other(e)))?;
        if entry.file_type().is_some_and(|t| t.is_file()) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for path in files {
        let packing = || format!("packing {}", path.display());
        let reading = || format!("reading {}", path.display());
        let rel = path
            .strip_prefix(dir)
            .map_err(|e| Error::io(packing())(std::io::Error::other(e)))?;
        let meta = std::fs::metadata(&path).map_err(Error::io(reading()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(meta.len());
        header.set_mtime(0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            header.set_mode(meta.permissions().mode() & 0o777);
        }
        header.set_entry_type(tar::EntryType::Regular);
        let mut file = std::fs::File::open(&path).map_err(Error::io(reading()))?;
        let mut contents = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut contents)
            .map_err(Error::io(reading()))?;
        builder
            .append_data(&mut header, rel, contents.as_slice())
            .map_err(Error::io(packing()))?;
    }
    let gz = builder
        .into_inner()
        .map_err(Error::io("packing the source"))?;
    gz.finish().map_err(Error::io("compressing the source"))
}

/// The full commit SHA and `build <10-char sha> <subject>` when `dir` is a clean git work
/// tree, else `None` (not a work tree, uncommitted changes, no git).
pub fn git_description(dir: &Path) -> Option<(String, String)> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())
    };
    let status = git(&["status", "--porcelain"])?;
    if !status.stdout.is_empty() {
        return None;
    }
    let log = git(&["log", "-1", "--format=%H%n%s"])?;
    let text = String::from_utf8_lossy(&log.stdout);
    let mut lines = text.lines();
    let sha = lines.next()?.trim().to_owned();
    let subject = lines.next().unwrap_or("").trim().to_owned();
    if sha.len() < 10 || !sha.is_ascii() {
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
    use flate2::read::GzDecoder;

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

    #[test]
    fn not_a_directory_is_invalid() {
        let err = pack_dir(Path::new("/nonexistent/slipway")).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }

    #[test]
    fn a_plain_directory_has_no_git_description() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_description(dir.path()), None);
    }
}

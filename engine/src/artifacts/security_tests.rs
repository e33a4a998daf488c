//! Hostile source archives (security finding 3): every entry that could reach outside the
//! tree is refused by name, the caps hold, modes are masked, nothing is left behind, and the
//! build runs alone, in a cleared environment, and is killed as a whole.

use super::*;
use crate::testing::{tar_gz as archive, ArchiveEntry};
use crate::ErrorKind;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use tar::{EntryType, Header};

const MANIFEST: &[u8] = b"services:\n  web:\n    command: x\n";

fn file<'a>(path: &'a str, data: &'a [u8]) -> ArchiveEntry<'a> {
    ArchiveEntry::file(path, data)
}

fn special<'a>(kind: EntryType, path: &'a str, link: &'a str) -> ArchiveEntry<'a> {
    ArchiveEntry {
        link,
        ..ArchiveEntry::special(kind, path)
    }
}

fn app() -> crate::sandbox::Tenant {
    crate::sandbox::Tenant {
        app: AppName::parse("victim").unwrap(),
        number: 7,
    }
}

/// A directory outside the data dir that a build (running as its app's own user) may write
/// to, for tests that watch what a build does.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

struct Setup {
    data: tempfile::TempDir,
    artifacts: Artifacts,
}

async fn setup(limits: ArchiveLimits) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let artifacts = Artifacts::new(
        data.path(),
        limits,
        crate::testing::sandbox(data.path()).await,
    );
    Setup { data, artifacts }
}

impl Setup {
    async fn store(&self, entries: &[ArchiveEntry<'_>]) -> Result<StoredArtifact> {
        self.artifacts
            .store(&app(), BuildSource::Archive(archive(entries)))
            .await
    }

    /// Nothing unpacked, uploaded or stored is left after a refusal.
    fn assert_nothing_left(&self) {
        for dir in ["uploads", "artifacts", "sources/victim"] {
            let path = self.data.path().join(dir);
            let left: Vec<_> = std::fs::read_dir(&path)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {dir}: {left:?}");
        }
    }
}

/// Stores `entries` and expects a refusal (422) naming `name`.
async fn refused(entries: &[ArchiveEntry<'_>], name: &str) -> String {
    let s = setup(ArchiveLimits::default()).await;
    let err = s.store(entries).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unprocessable, "{text}");
    assert!(text.contains(&format!("{name:?}")), "{text}");
    assert!(!text.contains("root:"), "{text}");
    s.assert_nothing_left();
    text
}

#[tokio::test]
async fn symlink_out_of_the_tree_is_refused() {
    let text = refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Symlink, "passwd", "/etc/passwd"),
        ],
        "passwd",
    )
    .await;
    assert!(text.contains("absolute path"), "{text}");
    refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Directory, "a/", ""),
            special(EntryType::Symlink, "a/up", "../../etc/passwd"),
        ],
        "a/up",
    )
    .await;
    refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Symlink, "sneaky", "a/../../etc/passwd"),
        ],
        "sneaky",
    )
    .await;
}

#[tokio::test]
async fn manifest_that_is_a_symlink_is_refused_and_never_read() {
    let text = refused(
        &[special(EntryType::Symlink, "slipway.yml", "/etc/passwd")],
        "slipway.yml",
    )
    .await;
    assert!(!text.contains("root:"), "{text}");
    // A link that stays inside the tree is unpacked, but the manifest must be a file.
    let s = setup(ArchiveLimits::default()).await;
    let err = s
        .store(&[
            file("real.yml", MANIFEST),
            special(EntryType::Symlink, "slipway.yml", "real.yml"),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unprocessable);
    assert!(
        err.to_string()
            .contains("slipway.yml must be a regular file"),
        "{err}"
    );
    s.assert_nothing_left();
}

#[tokio::test]
async fn links_inside_the_tree_are_kept_as_links() {
    let s = setup(ArchiveLimits::default()).await;
    let stored = s
        .store(&[
            file("slipway.yml", MANIFEST),
            file("lib/real.txt", b"real"),
            special(EntryType::Symlink, "lib/alias.txt", "real.txt"),
            special(EntryType::Symlink, "bin/tool", "../lib/real.txt"),
        ])
        .await
        .unwrap();
    let alias = stored.source_dir.join("lib/alias.txt");
    assert!(std::fs::symlink_metadata(&alias)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&alias).unwrap(), "real");
    assert_eq!(
        std::fs::read_to_string(stored.source_dir.join("bin/tool")).unwrap(),
        "real"
    );
}

#[tokio::test]
async fn writing_through_a_link_is_refused() {
    // A link to a directory inside the tree, then a file "in" it: never followed.
    refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Directory, "sub/", ""),
            special(EntryType::Symlink, "d", "sub"),
            file("d/x", b"x"),
        ],
        "d/x",
    )
    .await;
    // A link, then a file of the same name.
    refused(
        &[
            file("real.yml", MANIFEST),
            special(EntryType::Symlink, "slipway.yml", "real.yml"),
            file("slipway.yml", MANIFEST),
        ],
        "slipway.yml",
    )
    .await;
}

#[tokio::test]
async fn paths_leaving_the_tree_are_refused() {
    let text = refused(&[file("slipway.yml", MANIFEST), file("../x", b"x")], "../x").await;
    assert!(text.contains(".."), "{text}");
    let text = refused(
        &[file("slipway.yml", MANIFEST), file("/tmp/slipway-x", b"x")],
        "/tmp/slipway-x",
    )
    .await;
    assert!(text.contains("absolute"), "{text}");
    refused(
        &[file("slipway.yml", MANIFEST), file("a/../../x", b"x")],
        "a/../../x",
    )
    .await;
}

#[tokio::test]
async fn hard_links_devices_and_fifos_are_refused() {
    let text = refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Link, "h", "slipway.yml"),
        ],
        "h",
    )
    .await;
    assert!(text.contains("hard link"), "{text}");
    let text = refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Fifo, "pipe", ""),
        ],
        "pipe",
    )
    .await;
    assert!(text.contains("fifo"), "{text}");
    for kind in [EntryType::Char, EntryType::Block] {
        let text = refused(
            &[file("slipway.yml", MANIFEST), special(kind, "dev", "")],
            "dev",
        )
        .await;
        assert!(text.contains("device"), "{text}");
    }
    refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::new(b'Z'), "odd", ""),
        ],
        "odd",
    )
    .await;
}

#[tokio::test]
async fn modes_are_masked() {
    let s = setup(ArchiveLimits::default()).await;
    let mut setuid = file("tool", b"#!/bin/sh\n");
    setuid.mode = 0o6777;
    let mut sticky = file("open", b"x");
    sticky.mode = 0o1666;
    let mut unreadable = file("locked", b"x");
    unreadable.mode = 0o000;
    let mut dir = special(EntryType::Directory, "shared/", "");
    dir.mode = 0o3777;
    let stored = s
        .store(&[
            file("slipway.yml", MANIFEST),
            setuid,
            sticky,
            unreadable,
            dir,
        ])
        .await
        .unwrap();
    let mode = |name: &str| {
        std::fs::symlink_metadata(stored.source_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tool"), 0o755);
    assert_eq!(mode("open"), 0o644);
    assert_eq!(mode("locked"), 0o600);
    assert_eq!(mode("shared") & 0o7022, 0);
}

#[tokio::test]
async fn the_built_marker_is_never_written_through_a_link() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    let victim_str = victim.to_str().unwrap().to_owned();
    // In the archive: refused (it points outside).
    refused(
        &[
            file("slipway.yml", MANIFEST),
            special(EntryType::Symlink, ".slipway-built", &victim_str),
        ],
        ".slipway-built",
    )
    .await;
    // Made by the build: the marker is not in the tree any more.
    let s = setup(ArchiveLimits::default()).await;
    let manifest = format!(
        "build: ln -s {victim_str} .slipway-built && ln -s {victim_str} marker\nservices:\n  web:\n    command: x\n"
    );
    let stored = s
        .store(&[file("slipway.yml", manifest.as_bytes())])
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    let marker = s
        .data
        .path()
        .join("sources/victim")
        .join(format!("{}.built", stored.sha256));
    assert!(std::fs::symlink_metadata(&marker)
        .unwrap()
        .file_type()
        .is_file());
    // A link where the marker goes (left by anyone) is replaced, not followed.
    std::fs::remove_file(&marker).unwrap();
    std::os::unix::fs::symlink(&victim, &marker).unwrap();
    s.artifacts
        .ensure_source(&app(), &stored.sha256, &stored.manifest)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert!(std::fs::symlink_metadata(&marker)
        .unwrap()
        .file_type()
        .is_file());
}

#[tokio::test]
async fn too_many_entries_are_refused() {
    let s = setup(ArchiveLimits {
        max_entries: 5,
        ..ArchiveLimits::default()
    })
    .await;
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let mut entries = vec![file("slipway.yml", MANIFEST)];
    entries.extend(names.iter().map(|n| file(n, b"x")));
    let err = s.store(&entries).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("more than 5 entries") && text.contains("--max-archive-entries"),
        "{text}"
    );
    s.assert_nothing_left();
    // At the limit: fine.
    s.store(&entries[..5]).await.unwrap();
}

#[tokio::test]
async fn a_small_gzip_that_expands_too_far_is_refused() {
    let s = setup(ArchiveLimits {
        max_unpacked_bytes: 1024 * 1024,
        ..ArchiveLimits::default()
    })
    .await;
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bytes = archive(&[file("slipway.yml", MANIFEST), file("big", &zeros)]);
    assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
    let err = s
        .artifacts
        .store(&app(), BuildSource::Archive(bytes))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("1048576 bytes") && text.contains("--max-unpacked-bytes"),
        "{text}"
    );
    s.assert_nothing_left();
    // Many files, each under the cap, together over it.
    let chunk = vec![0u8; 300 * 1024];
    let err = s
        .store(&[
            file("slipway.yml", MANIFEST),
            file("a", &chunk),
            file("b", &chunk),
            file("c", &chunk),
            file("d", &chunk),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    s.assert_nothing_left();
}

#[tokio::test]
async fn huge_metadata_is_refused_without_reading_it_all() {
    // A GNU long name of 64 MiB: over the metadata allowance long before it is read whole.
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::GNULongName);
    let name = vec![b'a'; 64 * 1024 * 1024];
    h.set_size(name.len() as u64);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    builder.append(&h, name.as_slice()).unwrap();
    builder
        .append_data(&mut Header::new_gnu(), "x", &b"x"[..])
        .unwrap();
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    let s = setup(ArchiveLimits::default()).await;
    let err = s
        .artifacts
        .store(&app(), BuildSource::Archive(bytes))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
    s.assert_nothing_left();
}

#[tokio::test]
async fn the_same_source_is_built_once_at_a_time() {
    let s = setup(ArchiveLimits::default()).await;
    let log = shared_dir();
    let count = log.path().join("builds");
    // Two builds in one directory at once would fail the `mkdir`.
    let manifest = format!(
        "build: mkdir busy && echo built >> {} && sleep 0.3 && rmdir busy\nservices:\n  web:\n    command: x\n",
        count.display()
    );
    let bytes = archive(&[file("slipway.yml", manifest.as_bytes())]);
    let app = app();
    let (a, b) = tokio::join!(
        s.artifacts.store(&app, BuildSource::Archive(bytes.clone())),
        s.artifacts.store(&app, BuildSource::Archive(bytes)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "built\n");
    let locks = s.artifacts.locks.lock().unwrap();
    assert!(locks.is_empty(), "locks are forgotten once released");
}

#[tokio::test]
async fn the_build_gets_a_cleared_environment() {
    let s = setup(ArchiveLimits::default()).await;
    let stored = s
        .store(&[file(
            "slipway.yml",
            b"build: env > env.txt\nservices:\n  web:\n    command: x\n",
        )])
        .await
        .unwrap();
    let env = std::fs::read_to_string(stored.source_dir.join("env.txt")).unwrap();
    let keys: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for key in &keys {
        assert!(
            ["PATH", "LANG", "LC_ALL", "TZ", "HOME", "PWD", "OLDPWD", "SHLVL", "_"].contains(key),
            "{key} leaked into the build: {keys:?}"
        );
    }
    let home = format!("HOME={}", stored.source_dir.display());
    assert!(env.lines().any(|l| l == home), "{env}");
}

#[tokio::test]
async fn a_build_over_its_time_is_killed_with_its_children() {
    let data = tempfile::tempdir().unwrap();
    let artifacts = Artifacts::new(
        data.path(),
        ArchiveLimits::default(),
        crate::testing::sandbox(data.path()).await,
    )
    .with_build_timeout(Duration::from_secs(1));
    let outside = shared_dir();
    let pid_file = outside.path().join("pid");
    let manifest = format!(
        "build: echo started; sleep 60 & echo $! > {}; sleep 60\nservices:\n  web:\n    command: x\n",
        pid_file.display()
    );
    let err = artifacts
        .store(
            &app(),
            BuildSource::Archive(archive(&[file("slipway.yml", manifest.as_bytes())])),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("did not finish within 1 s"), "{text}");
    assert!(text.contains("started"), "{text}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting to be reaped.
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s) if s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')) => break,
            Ok(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build's background process survived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The failed build's tree is gone.
    let left = std::fs::read_dir(data.path().join("sources/victim"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn only_the_tail_of_the_build_output_is_kept() {
    let s = setup(ArchiveLimits::default()).await;
    let err = s
        .store(&[file(
            "slipway.yml",
            b"build: head -c 5000000 /dev/zero | tr '\\0' y; echo; echo the-end; exit 2\nservices:\n  web:\n    command: x\n",
        )])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("the-end"), "{}", &text[..200.min(text.len())]);
    assert!(text.len() <= OUTPUT_TAIL_BYTES + 200, "{}", text.len());
}

#[test]
fn errors_name_entries_without_control_characters() {
    let mut out = Vec::new();
    writeln!(out, "{}", unpack_name_for_tests(b"evil\nname\x1b[31m")).unwrap();
    let shown = String::from_utf8(out).unwrap();
    assert!(
        !shown.trim_end().contains('\n') && !shown.contains('\x1b'),
        "{shown}"
    );
}

fn unpack_name_for_tests(raw: &[u8]) -> String {
    super::unpack::display_name(raw)
}

//! What builds and app processes may reach. Slipway runs other people's code and holds every
//! app's secrets, so that code never runs with the server's identity, environment or files:
//!
//! - **Per-app users** (the server runs as root): each app's builds and processes run under
//!   a uid/gid of their own (`uid_base + the app's number`), with no supplementary groups and
//!   `no_new_privs`, in a mount namespace of their own where the data dir (or the first of its
//!   ancestors that other users cannot search) is an empty tmpfs holding nothing but the
//!   process's own source, bind-mounted at its usual path. They cannot read the database,
//!   another app's source, or (another uid, and a non-dumpable server) `/proc/<server>/environ`.
//! - **Landlock** (not root, kernel with Landlock): builds and processes run as the server's
//!   user, but a Landlock domain lets them open nothing under the data dir except their own
//!   source; it also keeps them from tracing the server and (ABI 6) from signalling it.
//! - **Environment only** (neither): the cleared environment and the non-dumpable server are
//!   all there is; such builds and apps can read the data dir. Said at start and on the
//!   Console's server panel.
//!
//! In every mode the environment is cleared: a process gets [`Sandbox::base_env`], its
//! release's variables and Slipway's own (`PORT`, `SLIPWAY_*`), nothing of the server's.
//!
//! Everything a child runs between `fork` and `exec` is prepared in the parent (paths as
//! `CString`s, the Landlock ruleset, an `O_PATH` descriptor of the source), so the child only
//! makes system calls.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::names::AppName;

/// The first uid/gid of the apps' users (an app's is this plus its number).
pub const DEFAULT_UID_BASE: u32 = 2_000_000;

/// What the operator asked for (`--isolation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IsolationChoice {
    /// The strongest the server can have: per-app users as root, else Landlock, else only a
    /// cleared environment.
    #[default]
    Auto,
    /// Landlock even as root (tests of the unprivileged mode).
    Landlock,
    /// Only a cleared environment (development on a kernel without Landlock).
    EnvironmentOnly,
}

impl std::str::FromStr for IsolationChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "landlock" => Ok(Self::Landlock),
            "environment-only" | "none" => Ok(Self::EnvironmentOnly),
            other => Err(format!(
                "unknown isolation {other:?}: use auto, landlock or environment-only"
            )),
        }
    }
}

/// The isolation in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    AppUsers { uid_base: u32 },
    Landlock { abi: i32 },
    EnvironmentOnly,
}

impl Isolation {
    /// A short name: `app-users`, `landlock`, `environment-only`.
    pub fn name(&self) -> &'static str {
        match self {
            Isolation::AppUsers { .. } => "app-users",
            Isolation::Landlock { .. } => "landlock",
            Isolation::EnvironmentOnly => "environment-only",
        }
    }
}

impl Isolation {
    /// A few words for a panel: what the mode means for deployed code.
    pub fn summary(&self) -> &'static str {
        match self {
            Isolation::AppUsers { .. } => "each app runs as its own user",
            Isolation::Landlock { .. } => "the data dir is hidden from apps",
            Isolation::EnvironmentOnly => "apps can read the data dir",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Isolation::AppUsers { uid_base } => write!(
                f,
                "per-app users: each app's builds and processes run as a uid/gid of their own \
                 (from {uid_base}), see only their own source in the data dir, and get a \
                 cleared environment"
            ),
            Isolation::Landlock { abi } => write!(
                f,
                "Landlock (ABI {abi}): builds and processes run as the server's user but cannot \
                 open the data dir except their own source, nor trace or signal the server; \
                 cleared environment"
            ),
            Isolation::EnvironmentOnly => f.write_str(
                "environment only: builds and processes run as the server's user with a \
                 cleared environment, and CAN read the data dir (run as root, or on a kernel \
                 with Landlock, for real isolation)",
            ),
        }
    }
}

/// Whose code a build or process is: the app, and its number in the store (its uid is the
/// sandbox's base plus this).
#[derive(Clone, Debug)]
pub struct Tenant {
    pub app: AppName,
    pub number: i64,
}

/// Confines builds and processes (see the module's documentation).
#[derive(Debug)]
pub struct Sandbox {
    /// The data dir, canonical.
    data_dir: PathBuf,
    /// What the app-users mode covers with a tmpfs: the data dir, or its first ancestor that
    /// other users cannot search (they could not reach the source through it otherwise).
    hide: PathBuf,
    isolation: Isolation,
}

impl Sandbox {
    /// Works out the isolation for `choice`, checking that it really works here: the
    /// app-users mode is tried once with `/bin/true` (a kernel or container without mount
    /// namespaces falls back to Landlock, with a warning).
    pub async fn new(data_dir: &Path, choice: IsolationChoice, uid_base: u32) -> Result<Sandbox> {
        let data_dir = std::fs::canonicalize(data_dir)
            .map_err(Error::io(format!("resolving {}", data_dir.display())))?;
        let hide = hide_root(&data_dir)?;
        let landlock = landlock_abi();
        let unprivileged = match (choice, landlock) {
            (IsolationChoice::EnvironmentOnly, _) | (_, None) => Isolation::EnvironmentOnly,
            (_, Some(abi)) => Isolation::Landlock { abi },
        };
        let mut sandbox = Sandbox {
            data_dir,
            hide,
            isolation: unprivileged.clone(),
        };
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        if choice == IsolationChoice::Auto && root {
            sandbox.isolation = Isolation::AppUsers { uid_base };
            if let Err(e) = sandbox.probe().await {
                tracing::warn!(
                    error = %e,
                    "per-app users are not available here (no mount namespaces?); using {unprivileged}"
                );
                sandbox.isolation = unprivileged;
            }
        }
        Ok(sandbox)
    }

    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `true` confined in a scratch directory of the data dir.
    async fn probe(&self) -> Result<()> {
        let dir = self.data_dir.join("sandbox-probe");
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let tenant = Tenant {
            app: AppName::parse("sandbox-probe")?,
            number: 0,
        };
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c").arg("exit 0");
        self.confine(&mut cmd, &tenant, &dir)?;
        let status = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| Error::Internal(format!("starting a confined process failed: {e}")));
        // Nothing of the probe stays behind (best effort: it is empty).
        let _ = std::fs::remove_dir_all(&dir);
        let status = status?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "a confined process failed: {status}"
            )))
        }
    }

    /// The uid and gid of `tenant`'s processes in the app-users mode.
    pub fn ids(&self, tenant: &Tenant) -> Option<(u32, u32)> {
        match self.isolation {
            Isolation::AppUsers { uid_base } => {
                let id = u32::try_from(tenant.number)
                    .ok()
                    .and_then(|n| uid_base.checked_add(n))?;
                Some((id, id))
            }
            _ => None,
        }
    }

    /// The environment every build and process starts from (the server's own is never
    /// passed on): `PATH`, the locale and time zone, and `HOME` = its working directory.
    pub fn base_env(&self, workdir: &Path) -> Vec<(String, String)> {
        let mut env = vec![(
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        )];
        for key in ["LANG", "LC_ALL", "TZ"] {
            if let Ok(v) = std::env::var(key) {
                env.push((key.to_owned(), v));
            }
        }
        env.push(("HOME".to_owned(), workdir.display().to_string()));
        env
    }

    /// Makes `cmd` run as `tenant`, confined to `workdir` (a directory under the data dir:
    /// the tenant's source), with a cleared environment ([`Sandbox::base_env`]; the caller
    /// adds the release's variables after this) and `workdir` as its working directory.
    pub fn confine(
        &self,
        cmd: &mut tokio::process::Command,
        tenant: &Tenant,
        workdir: &Path,
    ) -> Result<()> {
        let workdir = std::fs::canonicalize(workdir)
            .map_err(Error::io(format!("resolving {}", workdir.display())))?;
        if !workdir.starts_with(&self.data_dir) || workdir == self.data_dir {
            return Err(Error::Internal(format!(
                "{} is not a source directory inside the data dir",
                workdir.display()
            )));
        }
        cmd.env_clear().current_dir(&workdir);
        for (k, v) in self.base_env(&workdir) {
            cmd.env(k, v);
        }
        match &self.isolation {
            Isolation::AppUsers { .. } => {
                let (uid, gid) = self.ids(tenant).ok_or_else(|| {
                    Error::Internal(format!("app {} has no valid uid", tenant.app))
                })?;
                hand_over(&workdir, uid, gid)?;
                let plan = MountPlan::new(&self.hide, &workdir)?;
                // SAFETY: the closure runs in the child between fork and exec and only makes
                // system calls on memory prepared here (no allocation, no locks).
                unsafe {
                    cmd.pre_exec(move || plan.enter(uid, gid));
                }
            }
            Isolation::Landlock { abi } => {
                let ruleset = landlock_ruleset(*abi, &self.data_dir, &workdir)?;
                // SAFETY: as above: two system calls on a descriptor made here.
                unsafe {
                    cmd.pre_exec(move || {
                        no_new_privs()?;
                        // SAFETY: landlock_restrict_self(2) with a ruleset descriptor.
                        let r = libc::syscall(
                            libc::SYS_landlock_restrict_self,
                            ruleset.as_raw_fd(),
                            0u32,
                        );
                        if r != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            Isolation::EnvironmentOnly => {}
        }
        Ok(())
    }
}

/// The first directory from `/` down to `data_dir` that other users cannot search (so an
/// app's user could not reach its source through it), else `data_dir` itself.
fn hide_root(data_dir: &Path) -> Result<PathBuf> {
    let mut path = PathBuf::from("/");
    for part in data_dir.components().skip(1) {
        path.push(part);
        let meta =
            std::fs::metadata(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Ok(path);
        }
    }
    Ok(data_dir.to_path_buf())
}

/// Gives `dir` and everything in it to `uid:gid` (never following links), unless it is
/// already theirs; the directory itself is made private to them.
fn hand_over(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    fn walk(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        let meta = std::fs::symlink_metadata(path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, uid, gid).map_err(Error::io(format!("handing {} to its app", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("making {} private", dir.display())))
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Internal(format!("{} has a NUL byte", path.display())))
}

/// What a child does in the app-users mode, prepared in the parent.
struct MountPlan {
    hide: CString,
    /// The directories from below `hide` down to the source, made again on the tmpfs.
    levels: Vec<CString>,
    source: CString,
}

impl MountPlan {
    fn new(hide: &Path, source: &Path) -> Result<MountPlan> {
        let rel = source.strip_prefix(hide).map_err(|_| {
            Error::Internal(format!(
                "{} is outside {}",
                source.display(),
                hide.display()
            ))
        })?;
        let mut levels = Vec::new();
        let mut path = hide.to_path_buf();
        for part in rel.components() {
            path.push(part);
            levels.push(cstring(&path)?);
        }
        Ok(MountPlan {
            hide: cstring(hide)?,
            levels,
            source: cstring(source)?,
        })
    }

    /// In the child: a private mount namespace where `hide` is an empty tmpfs with only the
    /// source bound back in; then the tenant's ids, no new privileges, the source as cwd.
    fn enter(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        fn check(r: libc::c_int) -> std::io::Result<()> {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
        let none = std::ptr::null();
        // SAFETY: system calls on NUL-terminated strings owned by `self`.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // The source as it is before the tmpfs covers it (opened in this namespace: a
            // bind mount cannot come from another one).
            let fd = libc::open(
                self.source.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd_path = FdPath::new(fd);
            check(libc::mount(
                c"tmpfs".as_ptr(),
                self.hide.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0755,size=64k".as_ptr().cast(),
            ))?;
            for level in &self.levels {
                if libc::mkdir(level.as_ptr(), 0o755) != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
            }
            check(libc::mount(
                fd_path.as_ptr(),
                self.source.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            libc::close(fd);
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))?;
            check(libc::chdir(self.source.as_ptr()))?;
        }
        no_new_privs()
    }
}

/// `/proc/self/fd/N`, written without allocating (it is made in a child before `exec`).
struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    fn new(fd: libc::c_int) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// `PR_SET_NO_NEW_PRIVS`: setuid programs (`su`, `sudo`) cannot raise privileges again.
fn no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl(2) with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the server non-dumpable: no core dumps with its secrets, and processes of the same
/// user can neither trace it nor read its `/proc/<pid>/environ` or memory.
pub fn make_server_non_dumpable() -> Result<()> {
    // SAFETY: prctl(2) with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(Error::io("making the server non-dumpable")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

// Landlock (see landlock(7)); the constants are the kernel's UAPI.
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: u32 = 1;
const ACCESS_FS_EXECUTE: u64 = 1 << 0;
const ACCESS_FS_WRITE_FILE: u64 = 1 << 1;
const ACCESS_FS_READ_FILE: u64 = 1 << 2;
const ACCESS_FS_TRUNCATE: u64 = 1 << 14;
const ACCESS_FS_IOCTL_DEV: u64 = 1 << 15;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The kernel's Landlock ABI version, if it has Landlock.
pub fn landlock_abi() -> Option<i32> {
    // SAFETY: landlock_create_ruleset(2) asking for the version: no memory is touched.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

/// Every file-system right the kernel of `abi` knows.
fn fs_rights(abi: i32) -> u64 {
    let mut rights = (1u64 << 13) - 1; // ABI 1: execute .. make_sym
    if abi >= 2 {
        rights |= 1 << 13; // refer
    }
    if abi >= 3 {
        rights |= ACCESS_FS_TRUNCATE;
    }
    if abi >= 5 {
        rights |= ACCESS_FS_IOCTL_DEV;
    }
    rights
}

/// A ruleset that allows everything on the file system except what lies under `data_dir`,
/// where only `workdir` is allowed: each directory on the way from `/` to `data_dir`
/// contributes its other entries.
fn landlock_ruleset(abi: i32, data_dir: &Path, workdir: &Path) -> Result<OwnedFd> {
    let all = fs_rights(abi);
    let file_rights = all
        & (ACCESS_FS_EXECUTE
            | ACCESS_FS_WRITE_FILE
            | ACCESS_FS_READ_FILE
            | ACCESS_FS_TRUNCATE
            | ACCESS_FS_IOCTL_DEV);
    let attr = RulesetAttr {
        handled_access_fs: all,
        handled_access_net: 0,
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // SAFETY: landlock_create_ruleset(2) reads `attr`, which lives across the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(Error::io("creating a Landlock ruleset")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor owned by nobody else.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let add = |path: &Path, rights: u64| -> Result<()> {
        let c = cstring(path)?;
        // SAFETY: open(2) on a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            // Vanished or unreadable: nothing to allow.
            return Ok(());
        }
        // SAFETY: just opened, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let rule = PathBeneathAttr {
            allowed_access: rights,
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: landlock_add_rule(2) reads `rule`, which lives across the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if r != 0 {
            return Err(Error::io(format!(
                "allowing {} in Landlock",
                path.display()
            ))(std::io::Error::last_os_error()));
        }
        Ok(())
    };
    let mut dir = PathBuf::from("/");
    for part in data_dir.components().skip(1) {
        let entries =
            std::fs::read_dir(&dir).map_err(Error::io(format!("reading {}", dir.display())))?;
        for entry in entries.flatten() {
            if entry.file_name() == part.as_os_str() {
                continue;
            }
            let path = entry.path();
            // What a link leads to decides what the rule is about; one that leads into the
            // data dir is left out.
            let Ok(real) = std::fs::canonicalize(&path) else {
                continue;
            };
            if real.starts_with(data_dir) {
                continue;
            }
            let rights = if real.is_dir() { all } else { file_rights };
            add(&path, rights)?;
        }
        dir.push(part);
    }
    add(workdir, all)?;
    Ok(ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sandbox(choice: IsolationChoice) -> (tempfile::TempDir, Sandbox, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("sources/one/abc")).unwrap();
        std::fs::create_dir_all(data.join("sources/two/def")).unwrap();
        std::fs::write(data.join("slipway.db"), "secret database").unwrap();
        std::fs::write(data.join("sources/two/def/app.txt"), "other app").unwrap();
        std::fs::write(data.join("sources/one/abc/mine.txt"), "mine").unwrap();
        let sandbox = Sandbox::new(&data, choice, DEFAULT_UID_BASE).await.unwrap();
        let work = std::fs::canonicalize(data.join("sources/one/abc")).unwrap();
        (tmp, sandbox, work)
    }

    async fn run(sandbox: &Sandbox, work: &Path, script: &str) -> (bool, String) {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(script);
        let tenant = Tenant {
            app: AppName::parse("one").unwrap(),
            number: 1,
        };
        sandbox.confine(&mut cmd, &tenant, work).unwrap();
        let out = cmd.output().await.unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    async fn escapes_fail(choice: IsolationChoice) {
        let (_tmp, sandbox, work) = sandbox(choice).await;
        if sandbox.isolation() == &Isolation::EnvironmentOnly {
            eprintln!("no isolation available on this machine; skipped");
            return;
        }
        let data = sandbox.data_dir().to_path_buf();
        let (ok, out) = run(
            &sandbox,
            &work,
            "cat mine.txt && echo more > new.txt && cat new.txt",
        )
        .await;
        assert!(ok, "{out}");
        assert_eq!(out, "minemore\n");
        for target in [
            data.join("slipway.db"),
            data.join("sources/two/def/app.txt"),
        ] {
            let (ok, out) = run(&sandbox, &work, &format!("cat {}", target.display())).await;
            assert!(!ok, "{} was readable: {out}", target.display());
            assert!(
                !out.contains("secret") && !out.contains("other app"),
                "{out}"
            );
        }
        let (ok, out) = run(&sandbox, &work, &format!("ls {}", data.display())).await;
        assert!(!out.contains("slipway.db"), "{ok} {out}");
        let (_, out) = run(&sandbox, &work, "env").await;
        assert!(
            !out.contains("CARGO"),
            "the server's environment leaked: {out}"
        );
        // The server makes itself non-dumpable; this test process stands in for it.
        let pid = std::process::id();
        let root = unsafe { libc::geteuid() } == 0;
        if matches!(sandbox.isolation(), Isolation::Landlock { .. }) && root {
            // Landlock as root (only ever forced, for this test) keeps root's capabilities,
            // which read any process's environment; as a real unprivileged server it is the
            // non-dumpable server and the different domain that refuse.
            return;
        }
        let (ok, out) = run(&sandbox, &work, &format!("cat /proc/{pid}/environ")).await;
        assert!(!ok && !out.contains("CARGO"), "{out}");
    }

    #[tokio::test]
    async fn confined_processes_reach_only_their_own_source() {
        let (_tmp, sandbox, _) = sandbox(IsolationChoice::Auto).await;
        // SAFETY: geteuid(2) touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(sandbox.isolation().name(), "app-users");
        }
        escapes_fail(IsolationChoice::Auto).await;
    }

    #[tokio::test]
    async fn landlock_hides_the_data_dir_too() {
        escapes_fail(IsolationChoice::Landlock).await;
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(IsolationChoice::Auto));
        assert_eq!("landlock".parse(), Ok(IsolationChoice::Landlock));
        assert!("chroot".parse::<IsolationChoice>().is_err());
    }
}

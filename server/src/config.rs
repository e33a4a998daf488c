//! Command-line flags, each with a `SLIPWAY_*` environment fallback (flags win).

use clap::Parser;
use std::{net::SocketAddr, path::PathBuf};

/// Name of the SQLite database file created in the data directory by default.
pub const DEFAULT_DATABASE_FILE: &str = "slipway.db";

/// slipway-server: Slipway's release Console and deploy engine.
///
/// Every flag can also be set through the environment variable shown next to it;
/// a flag given on the command line wins over the environment.
#[derive(Debug, Clone, Parser)]
#[command(name = "slipway-server", version, about, long_about)]
pub struct Config {
    /// Address the Console (web UI, server functions, /healthz) listens on.
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Address the router that forwards traffic to deployed apps listens on
    /// (port 0 picks a free port).
    #[arg(long, env = "SLIPWAY_ROUTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub router_listen: SocketAddr,

    /// Directory for Slipway's state: database, release artifacts, logs.
    /// Created if missing.
    #[arg(long, env = "SLIPWAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL [default: sqlite://<DATA_DIR>/slipway.db?mode=rwc]
    #[arg(long, env = "SLIPWAY_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the example apps are (the Console's "Deploy the example app" builds
    /// `<examples-dir>/hello`).
    #[arg(long, env = "SLIPWAY_EXAMPLES_DIR", default_value = "./examples")]
    pub examples_dir: PathBuf,

    /// Password of the `admin` user created at the first start (with an empty database).
    /// Without it a random one is generated and printed once to the log.
    #[arg(long, env = "SLIPWAY_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Mark the session cookie `Secure` (set this when the Console is served over https,
    /// e.g. behind a TLS proxy; `X-Forwarded-Proto: https` also does it per request).
    #[arg(long, env = "SLIPWAY_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// The URL people and the CLI reach the Console at (`https://console.example.com`).
    /// Requests naming any other Host are refused (DNS rebinding), except `localhost` and
    /// loopback addresses. Without it, the Console answers to the address it listens on
    /// (any IP address when it listens on all of them) and to loopback names only.
    #[arg(long, env = "SLIPWAY_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<url::Url>,

    /// How builds and app processes are confined: `auto` (as root, each app runs as a user
    /// of its own and sees only its own source; otherwise Landlock hides the data dir, when
    /// the kernel has it), `landlock`, or `environment-only` (no file-system isolation).
    #[arg(long, env = "SLIPWAY_ISOLATION", default_value = "auto")]
    pub isolation: engine::sandbox::IsolationChoice,

    /// First uid/gid of the apps' users when the server runs as root (an app's is this
    /// plus its number).
    #[arg(long, env = "SLIPWAY_APP_UID_BASE", default_value_t = engine::sandbox::DEFAULT_UID_BASE)]
    pub app_uid_base: u32,

    /// How long a rendered app page may be served again from memory while nothing changed
    /// (milliseconds; 0 turns the page cache off). Any change in the engine ends it at once.
    #[arg(long, env = "SLIPWAY_PAGE_CACHE_MS", default_value_t = 1000)]
    pub page_cache_ms: u64,

    /// Caps on uploaded build sources.
    #[command(flatten)]
    pub archive: ArchiveFlags,

    /// The apps' router's timeouts.
    #[command(flatten)]
    pub router: RouterFlags,

    /// Password hashing cost, session lifetimes and sign-in limits (not flags: tests make
    /// hashing fast and sessions short).
    #[arg(skip)]
    pub auth: engine::AuthConfig,

    /// The clock sessions and sign-in limits read (tests move it instead of sleeping).
    #[arg(skip)]
    pub clock: Option<AuthClock>,
}

/// `--public-url`: an http(s) URL with a host and nothing after it but `/`.
fn parse_public_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the public URL must start with http:// or https://".into());
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("the public URL must name a host (and no user)".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL must have no path, query or fragment".into());
    }
    Ok(url)
}

/// Caps on a build's source archive (see [`engine::ArchiveLimits`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveFlags {
    /// Largest build upload accepted (the compressed .tar.gz), in bytes.
    #[arg(long, env = "SLIPWAY_MAX_ARCHIVE_BYTES", default_value_t = ArchiveFlags::default().max_archive_bytes)]
    pub max_archive_bytes: u64,

    /// Most bytes a build's source may unpack to (default 1 GiB).
    #[arg(long, env = "SLIPWAY_MAX_UNPACKED_BYTES", default_value_t = ArchiveFlags::default().max_unpacked_bytes)]
    pub max_unpacked_bytes: u64,

    /// Most entries (files, directories, links) a build's source archive may have.
    #[arg(long, env = "SLIPWAY_MAX_ARCHIVE_ENTRIES", default_value_t = ArchiveFlags::default().max_archive_entries)]
    pub max_archive_entries: u64,
}

impl Default for ArchiveFlags {
    fn default() -> Self {
        let limits = engine::ArchiveLimits::default();
        ArchiveFlags {
            max_archive_bytes: limits.max_archive_bytes,
            max_unpacked_bytes: limits.max_unpacked_bytes,
            max_archive_entries: limits.max_entries,
        }
    }
}

impl ArchiveFlags {
    pub fn limits(&self) -> engine::ArchiveLimits {
        engine::ArchiveLimits {
            max_archive_bytes: self.max_archive_bytes,
            max_unpacked_bytes: self.max_unpacked_bytes,
            max_entries: self.max_archive_entries,
        }
    }
}

impl Config {
    /// A server of its own for tests and benchmarks: the Console and the router on free
    /// ports of the loopback address, its state in `data_dir`, the first admin's password
    /// given, everything else as `slipway-server` starts without flags.
    pub fn on_loopback(data_dir: PathBuf, admin_password: &str) -> Config {
        Config {
            listen: SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            router_listen: SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            data_dir,
            database_url: None,
            examples_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples")),
            admin_password: Some(admin_password.to_owned()),
            secure_cookies: false,
            public_url: None,
            isolation: engine::sandbox::IsolationChoice::Auto,
            app_uid_base: engine::sandbox::DEFAULT_UID_BASE,
            page_cache_ms: 1000,
            archive: ArchiveFlags::default(),
            router: RouterFlags::default(),
            auth: engine::AuthConfig::default(),
            clock: None,
        }
    }
}

/// Timeouts of the router that forwards traffic to deployed apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct RouterFlags {
    /// How long a client of the router has to send a complete request head (milliseconds);
    /// also how long an idle keep-alive connection stays open. The connection is closed when
    /// it runs out.
    #[arg(
        long = "router-header-timeout-ms",
        env = "SLIPWAY_ROUTER_HEADER_TIMEOUT_MS",
        default_value_t = RouterFlags::default().header_timeout_ms,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub header_timeout_ms: u64,

    /// How long an app has to start its response to a request the router forwarded
    /// (milliseconds); the client gets 504 Gateway Timeout when it runs out.
    #[arg(
        long = "router-backend-timeout-ms",
        env = "SLIPWAY_ROUTER_BACKEND_TIMEOUT_MS",
        default_value_t = RouterFlags::default().backend_timeout_ms,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub backend_timeout_ms: u64,
}

impl Default for RouterFlags {
    fn default() -> Self {
        let defaults = engine::router::RouterConfig::default();
        RouterFlags {
            header_timeout_ms: millis(defaults.header_read_timeout),
            backend_timeout_ms: millis(defaults.backend_timeout),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RouterFlags {
    /// The engine's router configuration: these timeouts, the engine's defaults otherwise.
    pub fn router_config(&self) -> engine::router::RouterConfig {
        engine::router::RouterConfig {
            header_read_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            backend_timeout: std::time::Duration::from_millis(self.backend_timeout_ms),
            ..engine::router::RouterConfig::default()
        }
    }
}

/// A replacement clock for [`engine::Auth`].
#[derive(Clone)]
pub struct AuthClock(pub engine::auth::Clock);

impl std::fmt::Debug for AuthClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthClock")
    }
}

impl Config {
    /// The database URL: the one given, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(DEFAULT_DATABASE_FILE).display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Config::command().debug_assert();
    }

    /// True when `var` is unset, so the default (not the caller's environment) is in effect.
    fn unset(var: &str) -> bool {
        std::env::var_os(var).is_none()
    }

    #[test]
    fn defaults() {
        // `try_parse_from` also reads SLIPWAY_*; only check what the environment leaves alone.
        let config = Config::try_parse_from(["slipway-server"]).expect("defaults parse");
        if unset("SLIPWAY_LISTEN") {
            assert_eq!(config.listen, "127.0.0.1:3000".parse().expect("addr"));
        }
        if unset("SLIPWAY_ROUTER_LISTEN") {
            assert_eq!(
                config.router_listen,
                "127.0.0.1:8080".parse().expect("addr")
            );
        }
        if unset("SLIPWAY_MAX_UNPACKED_BYTES") && unset("SLIPWAY_MAX_ARCHIVE_ENTRIES") {
            assert_eq!(config.archive.max_unpacked_bytes, 1024 * 1024 * 1024);
            assert_eq!(config.archive.max_archive_entries, 20_000);
        }
        if unset("SLIPWAY_MAX_ARCHIVE_BYTES") {
            assert_eq!(config.archive.max_archive_bytes, 256 * 1024 * 1024);
        }
        if unset("SLIPWAY_ROUTER_HEADER_TIMEOUT_MS") && unset("SLIPWAY_ROUTER_BACKEND_TIMEOUT_MS") {
            assert_eq!(config.router, RouterFlags::default());
            assert_eq!(
                config.router.router_config(),
                engine::router::RouterConfig::default()
            );
        }
        if unset("SLIPWAY_DATA_DIR") && unset("SLIPWAY_DATABASE_URL") {
            assert_eq!(config.data_dir, PathBuf::from("./data"));
            assert_eq!(config.database_url(), "sqlite://./data/slipway.db?mode=rwc");
        }
    }

    #[test]
    fn flags() {
        let config = Config::try_parse_from([
            "slipway-server",
            "--listen",
            "0.0.0.0:4000",
            "--router-listen",
            "127.0.0.1:0",
            "--data-dir",
            "/var/lib/slipway",
            "--database-url",
            "sqlite::memory:",
            "--max-archive-bytes",
            "1000",
            "--max-unpacked-bytes",
            "2000",
            "--max-archive-entries",
            "30",
        ])
        .expect("flags parse");
        assert_eq!(
            config.archive.limits(),
            engine::ArchiveLimits {
                max_archive_bytes: 1000,
                max_unpacked_bytes: 2000,
                max_entries: 30,
            }
        );
        assert_eq!(config.listen.port(), 4000);
        assert_eq!(config.router_listen.port(), 0);
        assert_eq!(config.database_url(), "sqlite::memory:");

        let config = Config::try_parse_from(["slipway-server", "--data-dir", "/srv/s"])
            .expect("flags parse");
        assert_eq!(config.database_url(), "sqlite:///srv/s/slipway.db?mode=rwc");
    }

    #[test]
    fn router_timeouts() {
        let config = Config::try_parse_from([
            "slipway-server",
            "--router-header-timeout-ms",
            "2500",
            "--router-backend-timeout-ms",
            "90000",
        ])
        .expect("flags parse");
        let router = config.router.router_config();
        assert_eq!(
            router.header_read_timeout,
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(router.backend_timeout, std::time::Duration::from_secs(90));
        assert_eq!(
            router.connect_timeout,
            engine::router::RouterConfig::default().connect_timeout
        );
        // Zero would close every connection at once; it is refused, not read as "no limit".
        assert!(
            Config::try_parse_from(["slipway-server", "--router-header-timeout-ms", "0"]).is_err()
        );
    }

    #[test]
    fn bad_address_is_rejected() {
        assert!(Config::try_parse_from(["slipway-server", "--listen", "nope"]).is_err());
    }
}

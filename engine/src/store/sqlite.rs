//! What is SQLite's own in the store, in one place: the types of the driver, opening the file
//! (pragmas, migrations, file permissions) and how a unit of work takes the write lock. A
//! PostgreSQL implementation replaces this module; the SQL of the aggregates is portable
//! (placeholders aside: `?` here, `$1` there).
//!
//! What PostgreSQL puts in place of each:
//! - [`Db`], [`DbRow`], [`Pool`], [`Conn`], [`Tx`]: `sqlx::Postgres`, `PgRow`, `PgPool`, ...
//! - [`open`]: connection options instead of WAL, `synchronous`, `foreign_keys`,
//!   `busy_timeout` and mode-0600 files (the server's own access control); its migrations.
//! - [`begin_write`]: a plain `BEGIN` (READ COMMITTED) instead of `BEGIN IMMEDIATE`, which
//!   takes SQLite's one database-wide write lock from the start.
//! - [`LOCK_APP`]: `FOR UPDATE OF a`, the app's row lock until commit, where SQLite needs
//!   nothing more than the write lock it holds already.
//!
//! Either way a unit of work that called [`super::UnitOfWork::lock_app`] is the only writer of
//! that app's releases and promotions until it ends, whatever the number of connections or
//! of Console instances: correctness never rests on the size of a pool.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The database the store is written for.
pub(crate) type Db = sqlx::Sqlite;
/// One row of a query's answer.
pub(crate) type DbRow = sqlx::sqlite::SqliteRow;
/// A pool of connections.
pub(crate) type Pool = sqlx::SqlitePool;
/// A connection (what a unit of work's transaction dereferences to).
pub(crate) type Conn = sqlx::SqliteConnection;
/// A write transaction, owning its connection until it ends.
pub(crate) type Tx = sqlx::Transaction<'static, Db>;

/// How long a write waits for another writer (another connection, another Console instance)
/// to finish before it fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reading connections. SQLite in WAL mode lets them read while a write goes on.
const READ_CONNECTIONS: u32 = 4;

/// Writing connections. SQLite has one writer at a time anyway: writes waiting for a
/// connection here queue in order, where several connections would poll SQLite's lock
/// ([`BUSY_TIMEOUT`]). This is for throughput only — units of work take the write lock
/// themselves ([`begin_write`]), which is what keeps two Console instances on one file right.
const WRITE_CONNECTIONS: u32 = 1;

/// The statement that begins a unit of work: SQLite's write lock is taken at once (waiting up
/// to [`BUSY_TIMEOUT`] for another writer), not at the first write, so that what the unit of
/// work reads is still true when it writes and it can never fail half-way as busy.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// What [`super::UnitOfWork::lock_app`]'s query ends with to lock the app's row: nothing here,
/// the transaction holds the database's write lock since [`BEGIN_WRITE`]. PostgreSQL:
/// `FOR UPDATE OF a`.
pub(crate) const LOCK_APP: &str = "";

/// Opens (creating if needed) the database at `url` (`sqlite://path` or a file path), applies
/// the embedded migrations — a failed migration is an error, never ignored — and makes the
/// files private. Returns the pools for reading and for writing.
pub(crate) async fn open(url: &str) -> Result<(Pool, Pool)> {
    let url = if url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    };
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let write = SqlitePoolOptions::new()
        .max_connections(WRITE_CONNECTIONS)
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations").run(&write).await?;
    make_private(options.get_filename())?;
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .connect_with(options.read_only(true))
        .await?;
    Ok((read, write))
}

/// Every app's values, users and sessions: readable by the server alone (SQLite gives its
/// -wal and -shm files the database file's mode).
fn make_private(file: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if file == std::path::Path::new(":memory:") {
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(Error::io(format!("making {} private", path.display())))?;
        }
    }
    Ok(())
}

/// Begins a unit of work's transaction on `write`, holding the write lock from the start.
pub(crate) async fn begin_write(write: &Pool) -> Result<Tx> {
    Ok(write.begin_with(BEGIN_WRITE).await?)
}

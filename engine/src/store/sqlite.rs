//! What is SQLite's own in the store, in one place: the types of the driver and opening the
//! file (pragmas, migrations, file permissions). A PostgreSQL implementation replaces this
//! module; the SQL of the aggregates is portable (placeholders aside: `?` here, `$1` there).

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
/// A write transaction.
pub(crate) type Tx = sqlx::Transaction<'static, Db>;

/// How long a write waits for another writer (another connection, another Console instance)
/// to finish before it fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reading connections. SQLite in WAL mode lets them read while a write goes on.
const READ_CONNECTIONS: u32 = 4;

/// Writing connections. SQLite has one writer at a time anyway: writes waiting for a
/// connection here queue in order, where several connections would poll SQLite's lock
/// ([`BUSY_TIMEOUT`]).
const WRITE_CONNECTIONS: u32 = 1;

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

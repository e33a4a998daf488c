//! Durable state in SQL: SQLite now, PostgreSQL next as a second implementation of the same
//! interface. [`Store`] is the entry point: it opens the database and answers the read
//! queries; its writes are by aggregate, each in its module — [`apps`], [`releases`] (with
//! builds), [`promotions`] (with their events), [`processes`] and [`audit`]. Writes that
//! belong together are one transaction. What is SQLite's own is in [`sqlite`], which is what
//! a PostgreSQL implementation replaces; the SQL elsewhere stays portable.

use crate::error::Result;

mod apps;
mod audit;
mod processes;
mod promotions;
mod releases;
mod sqlite;

pub(crate) use audit::write_audit;
pub(crate) use releases::{stale_base, NewBuild, ReleaseParts};
use sqlite::Pool;

#[derive(Clone, Debug)]
pub struct Store {
    read: Pool,
    write: Pool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a file path) and
    /// applies the embedded migrations. A failed migration is an error, never ignored.
    pub async fn open(url: &str) -> Result<Store> {
        let (read, write) = sqlite::open(url).await?;
        Ok(Store { read, write })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

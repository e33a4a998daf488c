//! Durable state in SQL: SQLite now, PostgreSQL next as a second implementation of the same
//! interface. [`Store`] is the entry point: it opens the database, answers the read queries
//! and begins units of work (`Store::begin`), through which the writes that belong together
//! go in one transaction — locking the app they change and checking what the change was based
//! on (`UnitOfWork::lock_app`, `Base`), so that correctness never rests on there being one
//! writer. Queries and writes are by aggregate, each in its module: `apps`, `releases`
//! (with builds), `promotions` (with their events), `processes` and `audit`; the unit of
//! work in `uow`. What is SQLite's own (the driver's types, pragmas, file permissions, how a
//! transaction takes the write lock) is in `sqlite`, which is what a PostgreSQL
//! implementation replaces; the SQL elsewhere stays portable.

use crate::error::Result;

mod apps;
mod audit;
mod processes;
mod promotions;
mod releases;
mod sqlite;
mod uow;

#[cfg(test)]
mod tests;

pub(crate) use releases::{NewBuild, NewRelease};
use sqlite::Pool;
pub(crate) use uow::{stale_base, Base, LockedApp, UnitOfWork};

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
        let store = Store { read, write };
        store.backfill_env_changes().await?;
        Ok(store)
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

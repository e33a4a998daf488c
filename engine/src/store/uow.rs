//! The unit of work: one write transaction through which the writes of a use case go,
//! aggregate by aggregate ([`UnitOfWork::insert_release`], [`UnitOfWork::start_promotion`],
//! [`UnitOfWork::audit`], ...), committed together by [`UnitOfWork::commit`]. Dropped without
//! a commit, it writes nothing.
//!
//! A change computed from an app's state is made under the app's write lock
//! ([`UnitOfWork::lock_app`]) and checked against what its caller based it on ([`Base`]), so
//! that of two writers — two connections, two Console instances on one database — basing a
//! change on the same newest release, one goes through and the other is refused
//! (`StaleBase`): no update is lost, whatever the number of connections.
//!
//! ```text
//! let mut uow = store.begin().await?;
//! let mut app = uow.lock_app(&name).await?;
//! uow.check(&app, &Base::Is(base)).await?;
//! let release = uow.insert_release(&mut app, &new_release).await?;
//! uow.audit(&entry).await?;
//! uow.commit().await?;
//! ```

use super::releases::fetch_release;
use super::sqlite::{self, Conn, Tx};
use super::Store;
use crate::env::Environment;
use crate::error::{Error, Result};
use crate::ids::ReleaseId;
use crate::model::{now_ms, Millis, Release};
use crate::names::AppName;

/// One write transaction (see the module's documentation).
pub(crate) struct UnitOfWork {
    tx: Tx,
    now: Millis,
}

/// An app whose write lock the unit of work holds until it ends: nobody else writes its
/// releases or promotions meanwhile, so what this says stays true until the commit.
#[derive(Clone, Debug)]
pub(crate) struct LockedApp {
    pub id: i64,
    pub name: AppName,
    /// The app's newest release (kept up to date by [`UnitOfWork::insert_release`]).
    pub newest: Option<Release>,
    /// The release that serves traffic.
    pub active: Option<ReleaseId>,
}

/// What a change was based on, checked by [`UnitOfWork::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// No check: the change applies to whatever the newest release is.
    Any,
    /// The app must have no release yet.
    Empty,
    /// This release must still be the app's newest.
    Is(ReleaseId),
}

impl Base {
    /// `Is(id)` when a base is given, else `Any` (the caller asked for no check).
    pub(crate) fn or_any(id: Option<&ReleaseId>) -> Base {
        id.map_or(Base::Any, |id| Base::Is(id.clone()))
    }

    /// `Is(id)` when a base is given, else `Empty` (the caller saw no release).
    pub(crate) fn or_empty(id: Option<&ReleaseId>) -> Base {
        id.map_or(Base::Empty, |id| Base::Is(id.clone()))
    }
}

impl Store {
    /// Begins a unit of work. It holds the database's write lock (SQLite; an app's row lock
    /// from [`UnitOfWork::lock_app`] on PostgreSQL) until it is committed or dropped, so it
    /// does nothing but read and write the database: no waiting on anything else meanwhile.
    pub(crate) async fn begin(&self) -> Result<UnitOfWork> {
        let tx = sqlite::begin_write(&self.write).await?;
        Ok(UnitOfWork { tx, now: now_ms() })
    }
}

impl UnitOfWork {
    /// The time of the unit of work: every row it writes is stamped with it.
    pub(crate) fn now(&self) -> Millis {
        self.now
    }

    /// The transaction's connection, for the aggregates' writes.
    pub(super) fn conn(&mut self) -> &mut Conn {
        &mut self.tx
    }

    /// Refuses the change unless the app's newest release is what it was based on: with
    /// `StaleBase`, saying what changed since (or `NotFound` for a base that is no release of
    /// the app).
    pub(crate) async fn check(&mut self, app: &LockedApp, base: &Base) -> Result<()> {
        match (base, &app.newest) {
            (Base::Any, _) | (Base::Empty, None) => Ok(()),
            (Base::Is(id), Some(newest)) if &newest.id == id => Ok(()),
            (Base::Is(id), None) => Err(Error::not_found("release", id)),
            (Base::Empty, Some(newest)) => Err(stale(None, newest)),
            (Base::Is(id), Some(newest)) => {
                let base = fetch_release(self.conn(), &app.name, id)
                    .await?
                    .ok_or_else(|| Error::not_found("release", id))?;
                Err(stale(Some(&base), newest))
            }
        }
    }

    /// Makes every write of the unit of work durable at once.
    pub(crate) async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

/// The refusal of a change based on `base` when `newest` has been made since: what changed in
/// the environment, or else which release came in between.
pub(crate) fn stale_base(base: &Release, newest: &Release) -> Error {
    stale(Some(base), newest)
}

/// [`stale_base`], for a base that is either a release or the app having none.
fn stale(base: Option<&Release>, newest: &Release) -> Error {
    let diff = match base {
        Some(base) => base.env.diff(&newest.env),
        None => Environment::new().diff(&newest.env),
    };
    Error::StaleBase {
        base: base.map(|b| b.id.to_string()).unwrap_or_default(),
        newest: newest.id.to_string(),
        changes: if diff.is_empty() {
            format!("{} ({})", newest.description, newest.id)
        } else {
            diff.description()
        },
    }
}

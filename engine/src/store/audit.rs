//! The audit log from the engine's side: its use cases write their entries in their own
//! transactions with authentication's one implementation ([`auth::audit`]), and
//! authentication works on the same database ([`auth::Db`] from a [`Store`]).

use super::sqlite::Conn;
use super::{Store, UnitOfWork};
use crate::auth::{AuditEntry, AuditRecord};
use crate::error::Result;
use crate::model::Millis;

/// Appends `e` to the audit log on `conn`, inside the transaction of the change it records
/// (see [`auth::audit::insert`]).
async fn write_audit(conn: &mut Conn, e: &AuditEntry, now: Millis) -> Result<AuditRecord> {
    Ok(auth::audit::insert(conn, e, now).await?)
}

impl UnitOfWork {
    /// Appends `e` to the audit log, with the change it records.
    pub(crate) async fn audit(&mut self, e: &AuditEntry) -> Result<AuditRecord> {
        let now = self.now();
        write_audit(self.conn(), e, now).await
    }
}

impl Store {
    /// Appends to the audit log on its own (an attempt that changed nothing, or a refusal).
    pub(crate) async fn insert_audit(&self, e: &AuditEntry, now: Millis) -> Result<AuditRecord> {
        let mut conn = self.write.acquire().await?;
        write_audit(&mut conn, e, now).await
    }

    /// Passes `result` through, after recording `audit` as failed when it is an error (see
    /// [`auth::audit::record_failure`]).
    pub(crate) async fn audit_failure<T>(
        &self,
        audit: &AuditEntry,
        result: Result<T>,
        now: Millis,
    ) -> Result<T> {
        auth::audit::record_failure(&self.write, audit, &result, now).await;
        result
    }
}

/// Authentication on the engine's database: `Auth::new(engine.store().clone(), config)`.
impl From<Store> for auth::Db {
    fn from(store: Store) -> auth::Db {
        auth::Db::new(store.read, store.write)
    }
}

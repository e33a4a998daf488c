//! Apps: their names, who made them and which release is active. An app's row is also its
//! write lock ([`UnitOfWork::lock_app`]).

use sqlx::Row;

use super::releases::{release_from_row, RELEASE_COLS};
use super::sqlite::{DbRow, LOCK_APP};
use super::{LockedApp, Store, UnitOfWork};
use crate::auth::AuditEntry;
use crate::error::{Error, Result};
use crate::ids::{PromotionId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use auth::sql::{parse_col, parse_opt, unique_violation};

impl UnitOfWork {
    /// Takes the write lock of the app `name` for the rest of the unit of work and returns it
    /// with its newest and active releases, in one query. `NotFound` when there is no such
    /// app. SQLite: the transaction holds the database's write lock already; PostgreSQL:
    /// `SELECT ... FROM apps a ... WHERE a.name = $1 FOR UPDATE OF a` (see
    /// [`super::sqlite::LOCK_APP`]).
    pub(crate) async fn lock_app(&mut self, name: &AppName) -> Result<LockedApp> {
        let row = sqlx::query(&format!(
            "SELECT a.id AS app_id, a.active_release_id, {RELEASE_COLS}
             FROM apps a
             LEFT JOIN releases r ON r.app_id = a.id
                  AND r.seq = (SELECT MAX(seq) FROM releases WHERE app_id = a.id)
             WHERE a.name = ? {LOCK_APP}"
        ))
        .bind(name.as_str())
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| Error::not_found("app", name))?;
        let newest = match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Some(release_from_row(&row)?),
            None => None,
        };
        Ok(LockedApp {
            id: row.try_get("app_id")?,
            name: name.clone(),
            newest,
            active: parse_opt(&row, "active_release_id", ReleaseId::parse)?,
        })
    }

    /// Inserts an app; `Conflict` when the name is taken.
    pub(crate) async fn create_app(&mut self, name: &AppName, actor: &Actor) -> Result<App> {
        let now = self.now();
        sqlx::query("INSERT INTO apps (name, created_at, created_by) VALUES (?, ?, ?)")
            .bind(name.as_str())
            .bind(now)
            .bind(actor.as_str())
            .execute(self.conn())
            .await
            .map_err(|e| match e {
                e if unique_violation(&e) => Error::Conflict(format!("app {name} already exists")),
                e => e.into(),
            })?;
        Ok(App {
            name: name.clone(),
            created_at: now,
            created_by: actor.to_string(),
            active_release: None,
        })
    }
}

impl Store {
    /// Inserts an app and its audit entry, in one transaction.
    pub(crate) async fn create_app(
        &self,
        name: &AppName,
        actor: &Actor,
        audit: &AuditEntry,
    ) -> Result<App> {
        let mut uow = self.begin().await?;
        let app = uow.create_app(name, actor).await?;
        uow.audit(audit).await?;
        uow.commit().await?;
        Ok(app)
    }

    pub(crate) async fn app_id(&self, name: &AppName) -> Result<i64> {
        sqlx::query_scalar("SELECT id FROM apps WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::not_found("app", name.to_string()))
    }

    pub async fn app(&self, name: &AppName) -> Result<App> {
        let row = sqlx::query(
            "SELECT name, created_at, created_by, active_release_id FROM apps WHERE name = ?",
        )
        .bind(name.as_str())
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| Error::not_found("app", name.to_string()))?;
        app_from_row(&row)
    }

    /// Every app with its newest release and rollout state, in one query.
    pub async fn list_apps(&self) -> Result<Vec<AppSummary>> {
        let rows = sqlx::query(
            "SELECT a.name, a.created_at, a.created_by, a.active_release_id,
                    (SELECT COUNT(*) FROM releases r WHERE r.app_id = a.id) AS release_count,
                    n.id AS newest_id, n.description AS newest_desc, n.created_at AS newest_at,
                    (SELECT p.id FROM promotions p WHERE p.app_id = a.id AND p.state = 'running') AS running_id,
                    (SELECT p.state FROM promotions p WHERE p.app_id = a.id ORDER BY p.started_at DESC LIMIT 1) AS last_state
             FROM apps a
             LEFT JOIN releases n ON n.app_id = a.id
                  AND n.seq = (SELECT MAX(seq) FROM releases WHERE app_id = a.id)
             ORDER BY a.name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AppSummary {
                    app: app_from_row(row)?,
                    release_count: row.try_get("release_count")?,
                    newest_release: parse_opt(row, "newest_id", ReleaseId::parse)?,
                    last_change: row.try_get("newest_desc")?,
                    last_change_at: row.try_get("newest_at")?,
                    running_promotion: parse_opt(row, "running_id", PromotionId::parse)?,
                    last_promotion_state: parse_opt(row, "last_state", |s| {
                        PromotionState::parse(s)
                            .ok_or_else(|| Error::Internal(format!("unknown state {s}")))
                    })?,
                })
            })
            .collect()
    }

    /// Apps that have an active release, with it.
    pub(crate) async fn active_releases(&self) -> Result<Vec<(AppName, ReleaseId)>> {
        let rows = sqlx::query(
            "SELECT name, active_release_id FROM apps WHERE active_release_id IS NOT NULL",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_col(row, "name", AppName::parse)?,
                    parse_col(row, "active_release_id", ReleaseId::parse)?,
                ))
            })
            .collect()
    }
}

fn app_from_row(row: &DbRow) -> Result<App> {
    Ok(App {
        name: parse_col(row, "name", AppName::parse)?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        active_release: parse_opt(row, "active_release_id", ReleaseId::parse)?,
    })
}

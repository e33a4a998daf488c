//! Apps: their names, who made them and which release is active.

use sqlx::Row;

use super::sqlite::DbRow;
use super::{write_audit, Store};
use crate::auth::AuditEntry;
use crate::error::{Error, Result};
use crate::ids::{PromotionId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use auth::sql::{parse_col, parse_opt, unique_violation};

impl Store {
    /// Inserts an app and its audit entry, in one transaction.
    pub(crate) async fn create_app(
        &self,
        name: &AppName,
        actor: &Actor,
        audit: &AuditEntry,
    ) -> Result<App> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let res = sqlx::query("INSERT INTO apps (name, created_at, created_by) VALUES (?, ?, ?)")
            .bind(name.as_str())
            .bind(now)
            .bind(actor.as_str())
            .execute(&mut *tx)
            .await;
        if res.is_ok() {
            write_audit(&mut tx, audit, now).await?;
            tx.commit().await?;
        }
        match res {
            Ok(_) => Ok(App {
                name: name.clone(),
                created_at: now,
                created_by: actor.to_string(),
                active_release: None,
            }),
            Err(e) if unique_violation(&e) => {
                Err(Error::Conflict(format!("app {name} already exists")))
            }
            Err(e) => Err(e.into()),
        }
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

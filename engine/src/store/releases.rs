//! Releases (immutable: a build and an environment) and the builds they are made from.

use sqlx::Row;

use super::promotions::promotion_from_row;
use super::sqlite::{Db, DbRow};
use super::{LockedApp, Store, UnitOfWork};
use crate::auth::AuditEntry;
use crate::env::{EnvDiff, Environment};
use crate::error::{Error, Result};
use crate::ids::{BuildId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use auth::sql::{parse_col, parse_opt};

/// A release to insert.
pub(crate) struct NewRelease<'a> {
    pub id: &'a ReleaseId,
    pub build: Option<&'a BuildId>,
    pub env: &'a Environment,
    pub description: &'a str,
    pub rollback_of: Option<&'a ReleaseId>,
    pub actor: &'a Actor,
}

/// A build to insert.
pub(crate) struct NewBuild<'a> {
    pub id: &'a BuildId,
    pub description: &'a str,
    pub artifact: &'a str,
    pub manifest: &'a str,
    pub git_sha: Option<&'a str>,
    pub actor: &'a Actor,
}

fn env_from_json(s: &str) -> Result<Environment> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("bad environment JSON: {e}")))
}

fn env_to_json(env: &Environment) -> Result<String> {
    serde_json::to_string(env).map_err(|e| Error::Internal(format!("environment to JSON: {e}")))
}

fn diff_to_json(diff: &EnvDiff) -> Result<String> {
    serde_json::to_string(diff).map_err(|e| Error::Internal(format!("env changes to JSON: {e}")))
}

fn diff_from_json(s: &str) -> Result<EnvDiff> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("bad env changes JSON: {e}")))
}

/// The columns of a release without its environment ([`summary_from_row`]).
const SUMMARY_COLS: &str = "r.id, r.seq, r.build_id, r.description, r.rollback_of, r.created_at, r.created_by, r.env_changes, a.name AS app_name";

fn summary_from_row(row: &DbRow) -> Result<ReleaseSummary> {
    Ok(ReleaseSummary {
        id: parse_col(row, "id", ReleaseId::parse)?,
        app: parse_col(row, "app_name", AppName::parse)?,
        build: parse_opt(row, "build_id", BuildId::parse)?,
        description: row.try_get("description")?,
        rollback_of: parse_opt(row, "rollback_of", ReleaseId::parse)?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        // Filled on insert, and for older rows when the store opens.
        env_changes: parse_opt(row, "env_changes", diff_from_json)?.unwrap_or_default(),
    })
}

pub(super) const RELEASE_COLS: &str = "r.id, r.seq, r.build_id, r.env, r.description, r.rollback_of, r.created_at, r.created_by, a.name AS app_name";

pub(super) fn release_from_row(row: &DbRow) -> Result<Release> {
    Ok(Release {
        id: parse_col(row, "id", ReleaseId::parse)?,
        app: parse_col(row, "app_name", AppName::parse)?,
        build: parse_opt(row, "build_id", BuildId::parse)?,
        env: parse_col(row, "env", env_from_json)?,
        description: row.try_get("description")?,
        rollback_of: parse_opt(row, "rollback_of", ReleaseId::parse)?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

const BUILD_SELECT: &str = "SELECT b.id, b.status, b.description, b.artifact, b.manifest, b.git_sha, b.created_at, b.created_by,
        a.name AS app_name,
        (SELECT r.id FROM releases r WHERE r.build_id = b.id ORDER BY r.seq LIMIT 1) AS release_id
     FROM builds b JOIN apps a ON a.id = b.app_id";

/// The release `id` of `app`, if there is one, on `conn` (a pool or a unit of work's
/// transaction).
pub(super) async fn fetch_release<'c>(
    conn: impl sqlx::Executor<'c, Database = Db>,
    app: &AppName,
    id: &ReleaseId,
) -> Result<Option<Release>> {
    sqlx::query(&format!(
        "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = ? AND a.name = ?"
    ))
    .bind(id.as_str())
    .bind(app.as_str())
    .fetch_optional(conn)
    .await?
    .map(|row| release_from_row(&row))
    .transpose()
}

impl UnitOfWork {
    /// Inserts a complete build of `app`, numbered after its last one.
    pub(crate) async fn insert_build(
        &mut self,
        app: &LockedApp,
        build: &NewBuild<'_>,
    ) -> Result<()> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO builds (id, app_id, seq, status, description, artifact, manifest, git_sha, created_at, created_by)
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM builds WHERE app_id = ?), 'complete', ?, ?, ?, ?, ?, ?)",
        )
        .bind(build.id.as_str())
        .bind(app.id)
        .bind(app.id)
        .bind(build.description)
        .bind(build.artifact)
        .bind(build.manifest)
        .bind(build.git_sha)
        .bind(now)
        .bind(build.actor.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Inserts a release of `app` as its newest (numbered after the last one; the app's lock
    /// keeps that number free until the commit) and returns it; `app.newest` becomes it.
    pub(crate) async fn insert_release(
        &mut self,
        app: &mut LockedApp,
        r: &NewRelease<'_>,
    ) -> Result<Release> {
        let now = self.now();
        let empty = Environment::default();
        let previous = app.newest.as_ref().map_or(&empty, |p| &p.env);
        let changes = previous.diff(r.env);
        sqlx::query(
            "INSERT INTO releases (id, app_id, seq, build_id, env, env_changes, description, rollback_of, created_at, created_by)
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM releases WHERE app_id = ?), ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.id.as_str())
        .bind(app.id)
        .bind(app.id)
        .bind(r.build.map(|b| b.as_str()))
        .bind(env_to_json(r.env)?)
        .bind(diff_to_json(&changes)?)
        .bind(r.description)
        .bind(r.rollback_of.map(|b| b.as_str()))
        .bind(now)
        .bind(r.actor.as_str())
        .execute(self.conn())
        .await?;
        let release = Release {
            id: r.id.clone(),
            app: app.name.clone(),
            build: r.build.cloned(),
            env: r.env.clone(),
            description: r.description.to_owned(),
            rollback_of: r.rollback_of.cloned(),
            created_at: now,
            created_by: r.actor.to_string(),
        };
        app.newest = Some(release.clone());
        Ok(release)
    }
}

impl Store {
    /// Inserts a build, the release it makes (its env copied from the app's newest release)
    /// and the audit entry that records them, in one transaction.
    pub(crate) async fn insert_build_with_release(
        &self,
        app: &AppName,
        build: NewBuild<'_>,
        release_id: &ReleaseId,
        audit: &AuditEntry,
    ) -> Result<Release> {
        let mut uow = self.begin().await?;
        let mut app = uow.lock_app(app).await?;
        uow.insert_build(&app, &build).await?;
        let env = app
            .newest
            .as_ref()
            .map(|r| r.env.clone())
            .unwrap_or_default();
        let release = uow
            .insert_release(
                &mut app,
                &NewRelease {
                    id: release_id,
                    build: Some(build.id),
                    env: &env,
                    description: build.description,
                    rollback_of: None,
                    actor: build.actor,
                },
            )
            .await?;
        uow.audit(audit).await?;
        uow.commit().await?;
        Ok(release)
    }

    pub async fn release(&self, app: &AppName, id: &ReleaseId) -> Result<Release> {
        fetch_release(&self.read, app, id)
            .await?
            .ok_or_else(|| Error::not_found("release", id))
    }

    /// The releases of `app` among `ids` (unknown ones are left out), in one query.
    pub async fn releases_among(&self, app: &AppName, ids: &[ReleaseId]) -> Result<Vec<Release>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::QueryBuilder::<Db>::new(format!(
            "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE a.name = "
        ));
        q.push_bind(app.as_str().to_owned()).push(" AND r.id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.as_str().to_owned());
        }
        q.push(")");
        let rows = q.build().fetch_all(&self.read).await?;
        rows.iter().map(release_from_row).collect()
    }

    pub async fn newest_release(&self, app: &AppName) -> Result<Option<Release>> {
        sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE a.name = ? ORDER BY r.seq DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .fetch_optional(&self.read)
        .await?
        .map(|row| release_from_row(&row))
        .transpose()
    }

    /// Releases newest first, `limit` of them, older than `before_seq` when given (keyset
    /// paging), as summaries: no environments are read. Their newest promotion comes without
    /// its failed output (the promotion itself has it).
    pub async fn list_releases(
        &self,
        app: &AppName,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ReleaseListItem>> {
        let app_id = self.app_id(app).await?;
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLS}, (a.active_release_id = r.id) AS is_active,
                    (act.env IS NOT NULL AND act.env = r.env) AS same_env,
                    lp.id AS lp_id, lp.release_id AS lp_release_id, lp.previous_release_id AS lp_previous_release_id,
                    lp.actor AS lp_actor, lp.state AS lp_state, lp.reason AS lp_reason, NULL AS lp_failed_output,
                    lp.deadline_ms AS lp_deadline_ms, lp.started_at AS lp_started_at, lp.finished_at AS lp_finished_at,
                    (SELECT p2.actor FROM promotions p2 WHERE p2.release_id = r.id AND p2.state = 'active'
                       ORDER BY p2.started_at DESC LIMIT 1) AS promoted_by
             FROM releases r
             JOIN apps a ON a.id = r.app_id
             LEFT JOIN releases act ON act.id = a.active_release_id
             LEFT JOIN promotions lp ON lp.id = (SELECT p.id FROM promotions p WHERE p.release_id = r.id
                                                 ORDER BY p.started_at DESC LIMIT 1)
             WHERE r.app_id = ? AND r.seq < ?
             ORDER BY r.seq DESC
             LIMIT ?"
        ))
        .bind(app_id)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let lp_id: Option<String> = row.try_get("lp_id")?;
                Ok(ReleaseListItem {
                    release: summary_from_row(row)?,
                    seq: row.try_get("seq")?,
                    active: row
                        .try_get::<Option<bool>, _>("is_active")?
                        .unwrap_or(false),
                    last_promotion: match lp_id {
                        Some(_) => Some(promotion_from_row(row, "lp_")?),
                        None => None,
                    },
                    promoted_by: row.try_get("promoted_by")?,
                    same_env_as_active: row
                        .try_get::<Option<bool>, _>("same_env")?
                        .unwrap_or(false),
                })
            })
            .collect()
    }

    /// Fills `env_changes` of the releases made before it was recorded (migration 0005):
    /// app by app, in order, each release's environment against the one before it, in one
    /// transaction per app. Once every row has it, one lookup in an empty partial index.
    pub(crate) async fn backfill_env_changes(&self) -> Result<()> {
        let apps: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT app_id FROM releases WHERE env_changes IS NULL")
                .fetch_all(&self.read)
                .await?;
        for app_id in apps {
            let mut uow = self.begin().await?;
            let mut previous = Environment::default();
            let mut after = 0i64;
            loop {
                let rows = sqlx::query(
                    "SELECT id, seq, env, env_changes FROM releases WHERE app_id = ? AND seq > ? ORDER BY seq LIMIT 500",
                )
                .bind(app_id)
                .bind(after)
                .fetch_all(&mut *uow.conn())
                .await?;
                let Some(last) = rows.last() else { break };
                after = last.try_get("seq")?;
                for row in &rows {
                    let env = parse_col(row, "env", env_from_json)?;
                    if row.try_get::<Option<String>, _>("env_changes")?.is_none() {
                        sqlx::query("UPDATE releases SET env_changes = ? WHERE id = ?")
                            .bind(diff_to_json(&previous.diff(&env))?)
                            .bind(row.try_get::<String, _>("id")?)
                            .execute(&mut *uow.conn())
                            .await?;
                    }
                    previous = env;
                }
            }
            uow.commit().await?;
        }
        Ok(())
    }

    pub async fn list_builds(&self, app: &AppName, limit: u32) -> Result<Vec<Build>> {
        let rows = sqlx::query(&format!(
            "{BUILD_SELECT} WHERE a.name = ? ORDER BY b.seq DESC LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(build_from_row).collect()
    }

    pub async fn build(&self, app: &AppName, id: &BuildId) -> Result<Build> {
        let row = sqlx::query(&format!("{BUILD_SELECT} WHERE b.id = ? AND a.name = ?"))
            .bind(id.as_str())
            .bind(app.as_str())
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| Error::not_found("build", id.to_string()))?;
        build_from_row(&row)
    }
}

fn build_from_row(row: &DbRow) -> Result<Build> {
    Ok(Build {
        id: parse_col(row, "id", BuildId::parse)?,
        app: parse_col(row, "app_name", AppName::parse)?,
        status: row.try_get("status")?,
        description: row.try_get("description")?,
        artifact: row.try_get("artifact")?,
        manifest: row.try_get("manifest")?,
        git_sha: row.try_get("git_sha")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        release: parse_opt(row, "release_id", ReleaseId::parse)?,
    })
}

//! Releases (immutable: a build and an environment) and the builds they are made from.

use sqlx::Row;
use std::time::Duration;

use super::promotions::{insert_promotion, promotion_from_row};
use super::sqlite::{Db, DbRow, Tx};
use super::{write_audit, Store};
use crate::auth::AuditEntry;
use crate::env::Environment;
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

/// What [`Store::insert_release_from_newest`]'s `make` decides from the newest release: the
/// new release, and the audit entry that records it (written in the same transaction).
pub(crate) struct ReleaseParts {
    pub build: Option<BuildId>,
    pub env: Environment,
    pub description: String,
    pub rollback_of: Option<ReleaseId>,
    pub actor: Actor,
    pub audit: AuditEntry,
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

const RELEASE_COLS: &str = "r.id, r.seq, r.build_id, r.env, r.description, r.rollback_of, r.created_at, r.created_by, a.name AS app_name";

fn release_from_row(row: &DbRow) -> Result<Release> {
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
        let app_id = self.app_id(app).await?;
        let mut tx = self.write.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO builds (id, app_id, seq, status, description, artifact, manifest, git_sha, created_at, created_by)
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM builds WHERE app_id = ?), 'complete', ?, ?, ?, ?, ?, ?)",
        )
        .bind(build.id.as_str())
        .bind(app_id)
        .bind(app_id)
        .bind(build.description)
        .bind(build.artifact)
        .bind(build.manifest)
        .bind(build.git_sha)
        .bind(now)
        .bind(build.actor.as_str())
        .execute(&mut *tx)
        .await?;
        let env: Option<String> = sqlx::query_scalar(
            "SELECT env FROM releases WHERE app_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&mut *tx)
        .await?;
        let env = match env {
            Some(s) => env_from_json(&s)?,
            None => Environment::new(),
        };
        insert_release(
            &mut tx,
            app_id,
            &NewRelease {
                id: release_id,
                build: Some(build.id),
                env: &env,
                description: build.description,
                rollback_of: None,
                actor: build.actor,
            },
            now,
        )
        .await?;
        write_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(Release {
            id: release_id.clone(),
            app: app.clone(),
            build: Some(build.id.clone()),
            env,
            description: build.description.to_owned(),
            rollback_of: None,
            created_at: now,
            created_by: build.actor.to_string(),
        })
    }

    /// Inserts a release. With `expected_newest`, the insert only happens when that release is
    /// still the app's newest (checked inside the transaction); otherwise it is a `StaleBase`.
    /// `make` computes the new release (whose ID it is given) from the newest one inside the
    /// same transaction, with the audit entry that records it. With `promote`, a running
    /// promotion of the new release is recorded in the same transaction: when another rollout
    /// runs, nothing is written (`RolloutInProgress`).
    pub(crate) async fn insert_release_from_newest<F>(
        &self,
        app: &AppName,
        expected_newest: Option<&ReleaseId>,
        promote: Option<(&Actor, Duration)>,
        make: F,
    ) -> Result<(Release, Option<Promotion>)>
    where
        F: FnOnce(Option<&Release>, &ReleaseId) -> Result<ReleaseParts>,
    {
        let app_id = self.app_id(app).await?;
        let mut tx = self.write.begin().await?;
        let newest = sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.app_id = ? ORDER BY r.seq DESC LIMIT 1"
        ))
        .bind(app_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| release_from_row(&row))
        .transpose()?;
        if let Some(expected) = expected_newest {
            match &newest {
                Some(n) if &n.id == expected => {}
                Some(n) => {
                    let base = sqlx::query(&format!(
                        "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = ? AND r.app_id = ?"
                    ))
                    .bind(expected.as_str())
                    .bind(app_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| release_from_row(&row))
                    .transpose()?
                    .ok_or_else(|| Error::not_found("release", expected.to_string()))?;
                    return Err(stale_base(&base, n));
                }
                None => return Err(Error::not_found("release", expected)),
            }
        }
        let id = ReleaseId::generate();
        let ReleaseParts {
            build,
            env,
            description,
            rollback_of,
            actor,
            audit,
        } = make(newest.as_ref(), &id)?;
        let now = now_ms();
        insert_release(
            &mut tx,
            app_id,
            &NewRelease {
                id: &id,
                build: build.as_ref(),
                env: &env,
                description: &description,
                rollback_of: rollback_of.as_ref(),
                actor: &actor,
            },
            now,
        )
        .await?;
        let promotion = match promote {
            Some((actor, deadline)) => {
                Some(insert_promotion(&mut tx, app, app_id, &id, actor, deadline).await?)
            }
            None => None,
        };
        write_audit(&mut tx, &audit, now).await?;
        tx.commit().await?;
        let release = Release {
            id,
            app: app.clone(),
            build,
            env,
            description,
            rollback_of,
            created_at: now,
            created_by: actor.to_string(),
        };
        Ok((release, promotion))
    }

    pub async fn release(&self, app: &AppName, id: &ReleaseId) -> Result<Release> {
        sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.id = ? AND a.name = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_optional(&self.read)
        .await?
        .map(|row| release_from_row(&row))
        .transpose()?
        .ok_or_else(|| Error::not_found("release", id.to_string()))
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

    /// Releases newest first, `limit` of them, older than `before_seq` when given (keyset paging).
    pub async fn list_releases(
        &self,
        app: &AppName,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ReleaseListItem>> {
        let app_id = self.app_id(app).await?;
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLS}, (a.active_release_id = r.id) AS is_active,
                    lp.id AS lp_id, lp.release_id AS lp_release_id, lp.previous_release_id AS lp_previous_release_id,
                    lp.actor AS lp_actor, lp.state AS lp_state, lp.reason AS lp_reason, lp.failed_output AS lp_failed_output,
                    lp.deadline_ms AS lp_deadline_ms, lp.started_at AS lp_started_at, lp.finished_at AS lp_finished_at,
                    (SELECT p2.actor FROM promotions p2 WHERE p2.release_id = r.id AND p2.state = 'active'
                       ORDER BY p2.started_at DESC LIMIT 1) AS promoted_by
             FROM releases r
             JOIN apps a ON a.id = r.app_id
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
                    release: release_from_row(row)?,
                    seq: row.try_get("seq")?,
                    active: row
                        .try_get::<Option<bool>, _>("is_active")?
                        .unwrap_or(false),
                    last_promotion: match lp_id {
                        Some(_) => Some(promotion_from_row(row, "lp_")?),
                        None => None,
                    },
                    promoted_by: row.try_get("promoted_by")?,
                })
            })
            .collect()
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

async fn insert_release(tx: &mut Tx, app_id: i64, r: &NewRelease<'_>, now: Millis) -> Result<()> {
    sqlx::query(
        "INSERT INTO releases (id, app_id, seq, build_id, env, description, rollback_of, created_at, created_by)
         VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM releases WHERE app_id = ?), ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.id.as_str())
    .bind(app_id)
    .bind(app_id)
    .bind(r.build.map(|b| b.as_str()))
    .bind(env_to_json(r.env)?)
    .bind(r.description)
    .bind(r.rollback_of.map(|b| b.as_str()))
    .bind(now)
    .bind(r.actor.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The refusal of a change based on `base` when `newest` has been made since: what changed in
/// the environment, or else which release came in between.
pub(crate) fn stale_base(base: &Release, newest: &Release) -> Error {
    let diff = base.env.diff(&newest.env);
    Error::StaleBase {
        base: base.id.to_string(),
        newest: newest.id.to_string(),
        changes: if diff.is_empty() {
            format!("{} ({})", newest.description, newest.id)
        } else {
            diff.description()
        },
    }
}

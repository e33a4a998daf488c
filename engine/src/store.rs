//! Durable state in SQL (SQLite now; the queries stay portable so that PostgreSQL can sit
//! beside it). Writes go through one connection so that SQLite never answers "busy" to a
//! write transaction; reads use a small pool. Writes that belong together are one transaction.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

use crate::auth::AuditEntry;
use crate::env::Environment;
use crate::error::{Error, Result};
use crate::ids::{BuildId, PromotionId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use crate::step::Step;

mod audit;

pub(crate) use audit::write_audit;
use auth::sql::{parse_col, parse_opt, unique_violation};

#[derive(Clone, Debug)]
pub struct Store {
    read: SqlitePool,
    write: SqlitePool,
}

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

pub(crate) struct ProcessRecord {
    pub id: String,
    pub pid: i64,
    pub start_ticks: Option<i64>,
}

fn state_col(row: &sqlx::sqlite::SqliteRow, col: &str) -> Result<PromotionState> {
    Ok(parse_col(row, col, |s| {
        PromotionState::parse(s).ok_or_else(|| format!("unknown state {s}"))
    })?)
}

fn env_from_json(s: &str) -> Result<Environment> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("bad environment JSON: {e}")))
}

fn env_to_json(env: &Environment) -> Result<String> {
    serde_json::to_string(env).map_err(|e| Error::Internal(format!("environment to JSON: {e}")))
}

const RELEASE_COLS: &str = "r.id, r.seq, r.build_id, r.env, r.description, r.rollback_of, r.created_at, r.created_by, a.name AS app_name";

fn release_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Release> {
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

const PROMOTION_COLS: &str = "p.id, p.release_id, p.previous_release_id, p.actor, p.state, p.reason, p.failed_output, p.deadline_ms, p.started_at, p.finished_at, a.name AS app_name";

fn promotion_from_row(row: &sqlx::sqlite::SqliteRow, prefix: &str) -> Result<Promotion> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(Promotion {
        id: parse_col(row, &c("id"), PromotionId::parse)?,
        app: parse_col(row, "app_name", AppName::parse)?,
        release: parse_col(row, &c("release_id"), ReleaseId::parse)?,
        previous_release: parse_opt(row, &c("previous_release_id"), ReleaseId::parse)?,
        actor: row.try_get(c("actor").as_str())?,
        state: state_col(row, &c("state"))?,
        reason: row.try_get(c("reason").as_str())?,
        failed_output: row.try_get(c("failed_output").as_str())?,
        deadline_ms: row.try_get(c("deadline_ms").as_str())?,
        started_at: row.try_get(c("started_at").as_str())?,
        finished_at: row.try_get(c("finished_at").as_str())?,
    })
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a file path) and
    /// applies the embedded migrations. A failed migration is an error, never ignored.
    pub async fn open(url: &str) -> Result<Store> {
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
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&write).await?;
        // Every app's values, users and sessions: readable by the server alone (SQLite gives
        // its -wal and -shm files the database file's mode).
        let file = options.get_filename();
        if file != std::path::Path::new(":memory:") {
            use std::os::unix::fs::PermissionsExt;
            for suffix in ["", "-wal", "-shm"] {
                let mut name = file.as_os_str().to_owned();
                name.push(suffix);
                let path = std::path::PathBuf::from(name);
                if path.exists() {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(Error::io(format!("making {} private", path.display())))?;
                }
            }
        }
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store { read, write })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    // ---- apps ----

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

    // ---- builds and releases ----

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
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
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

    // ---- promotions ----

    /// Records a new running promotion and its audit entry. The database refuses a second
    /// running one per app.
    pub(crate) async fn start_promotion(
        &self,
        app: &AppName,
        release: &ReleaseId,
        actor: &Actor,
        deadline: Duration,
        audit: &AuditEntry,
    ) -> Result<Promotion> {
        let app_id = self.app_id(app).await?;
        let mut tx = self.write.begin().await?;
        let promotion = insert_promotion(&mut tx, app, app_id, release, actor, deadline).await?;
        write_audit(&mut tx, audit, promotion.started_at).await?;
        tx.commit().await?;
        Ok(promotion)
    }

    /// The app's running promotion, if one is recorded as running.
    pub async fn running_promotion(&self, app: &AppName) -> Result<Option<PromotionId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT p.id FROM promotions p JOIN apps a ON a.id = p.app_id WHERE a.name = ? AND p.state = 'running'",
        )
        .bind(app.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(id.map(|s| PromotionId::parse(&s)).transpose()?)
    }

    pub(crate) async fn add_event(
        &self,
        promotion: &PromotionId,
        step: &Step,
    ) -> Result<PromotionEvent> {
        let at = now_ms();
        let message = step.to_string();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO promotion_events (promotion_id, seq, at, message, step)
             VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM promotion_events WHERE promotion_id = ?), ?, ?, ?)
             RETURNING seq",
        )
        .bind(promotion.as_str())
        .bind(promotion.as_str())
        .bind(at)
        .bind(&message)
        .bind(step_json(step))
        .fetch_one(&self.write)
        .await?;
        Ok(PromotionEvent {
            promotion: promotion.clone(),
            seq,
            at,
            message,
            step: step.clone(),
        })
    }

    /// Makes the promotion's release the app's active one and ends the promotion as `active`,
    /// in one transaction.
    pub(crate) async fn activate(&self, promotion: &PromotionId) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE apps SET active_release_id = (SELECT release_id FROM promotions WHERE id = ?)
             WHERE id = (SELECT app_id FROM promotions WHERE id = ?)",
        )
        .bind(promotion.as_str())
        .bind(promotion.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE promotions SET state = 'active', finished_at = ? WHERE id = ? AND state = 'running'")
            .bind(now_ms())
            .bind(promotion.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn finish_promotion(
        &self,
        promotion: &PromotionId,
        state: PromotionState,
        reason: &str,
        failed_output: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE promotions SET state = ?, reason = ?, failed_output = ?, finished_at = ?
             WHERE id = ? AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(failed_output)
        .bind(now_ms())
        .bind(promotion.as_str())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Ends every promotion still marked running (after a restart) with `reason`.
    pub(crate) async fn fail_running_promotions(&self, reason: &str) -> Result<Vec<PromotionId>> {
        let mut tx = self.write.begin().await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM promotions WHERE state = 'running'")
                .fetch_all(&mut *tx)
                .await?;
        let now = now_ms();
        for id in &ids {
            sqlx::query(
                "INSERT INTO promotion_events (promotion_id, seq, at, message, step)
                 VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM promotion_events WHERE promotion_id = ?), ?, ?, ?)",
            )
            .bind(id)
            .bind(id)
            .bind(now)
            .bind(reason)
            .bind(step_json(&Step::Interrupted))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE promotions SET state = 'failed', reason = ?, finished_at = ? WHERE state = 'running'")
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids
            .iter()
            .map(|s| PromotionId::parse(s))
            .collect::<Result<_, _>>()?)
    }

    pub async fn promotion(&self, id: &PromotionId) -> Result<Promotion> {
        sqlx::query(&format!(
            "SELECT {PROMOTION_COLS} FROM promotions p JOIN apps a ON a.id = p.app_id WHERE p.id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await?
        .map(|row| promotion_from_row(&row, ""))
        .transpose()?
        .ok_or_else(|| Error::not_found("promotion", id.to_string()))
    }

    pub async fn promotion_events(&self, id: &PromotionId) -> Result<Vec<PromotionEvent>> {
        let rows = sqlx::query(
            "SELECT seq, at, message, step FROM promotion_events WHERE promotion_id = ? ORDER BY seq",
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| event_from_row(row, id.clone()))
            .collect()
    }

    /// The event logs of every promotion of `release`, in one query, by promotion.
    pub async fn release_events(
        &self,
        release: &ReleaseId,
    ) -> Result<std::collections::HashMap<PromotionId, Vec<PromotionEvent>>> {
        let rows = sqlx::query(
            "SELECT e.promotion_id, e.seq, e.at, e.message, e.step FROM promotion_events e
             JOIN promotions p ON p.id = e.promotion_id
             WHERE p.release_id = ? ORDER BY e.promotion_id, e.seq",
        )
        .bind(release.as_str())
        .fetch_all(&self.read)
        .await?;
        let mut by_promotion: std::collections::HashMap<PromotionId, Vec<PromotionEvent>> =
            std::collections::HashMap::new();
        for row in &rows {
            let id = parse_col(row, "promotion_id", PromotionId::parse)?;
            by_promotion
                .entry(id.clone())
                .or_default()
                .push(event_from_row(row, id)?);
        }
        Ok(by_promotion)
    }

    /// Promotions of one release (or of the whole app), newest first.
    pub async fn list_promotions(
        &self,
        app: &AppName,
        release: Option<&ReleaseId>,
        limit: u32,
    ) -> Result<Vec<Promotion>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROMOTION_COLS} FROM promotions p JOIN apps a ON a.id = p.app_id
             WHERE a.name = ? AND (? IS NULL OR p.release_id = ?)
             ORDER BY p.started_at DESC LIMIT ?"
        ))
        .bind(app.as_str())
        .bind(release.map(|r| r.as_str()))
        .bind(release.map(|r| r.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| promotion_from_row(row, "")).collect()
    }

    // ---- processes ----

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_process(
        &self,
        id: &str,
        app: &AppName,
        release: &ReleaseId,
        service: &str,
        pid: i64,
        start_ticks: Option<i64>,
        port: Option<u16>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO processes (id, app_id, release_id, service, pid, start_ticks, port, started_at)
             VALUES (?, (SELECT id FROM apps WHERE name = ?), ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(app.as_str())
        .bind(release.as_str())
        .bind(service)
        .bind(pid)
        .bind(start_ticks)
        .bind(port.map(i64::from))
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn process_stopped(
        &self,
        id: &str,
        exit_status: &str,
        output_tail: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE processes SET stopped_at = ?, exit_status = ?, output_tail = ? WHERE id = ? AND stopped_at IS NULL",
        )
        .bind(now_ms())
        .bind(exit_status)
        .bind(output_tail)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn unstopped_processes(&self) -> Result<Vec<ProcessRecord>> {
        let rows =
            sqlx::query("SELECT id, pid, start_ticks FROM processes WHERE stopped_at IS NULL")
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(ProcessRecord {
                    id: row.try_get("id")?,
                    pid: row.try_get("pid")?,
                    start_ticks: row.try_get("start_ticks")?,
                })
            })
            .collect()
    }
}

fn step_json(step: &Step) -> String {
    serde_json::to_string(step).unwrap_or_else(|_| "null".into())
}

/// A promotion event; a step recorded before steps were typed is read as a note.
fn event_from_row(row: &sqlx::sqlite::SqliteRow, promotion: PromotionId) -> Result<PromotionEvent> {
    let message: String = row.try_get("message")?;
    let step: Option<String> = row.try_get("step")?;
    let step = step
        .and_then(|s| serde_json::from_str::<Step>(&s).ok())
        .unwrap_or_else(|| Step::Note {
            message: message.clone(),
        });
    Ok(PromotionEvent {
        promotion,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        message,
        step,
    })
}

fn app_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<App> {
    Ok(App {
        name: parse_col(row, "name", AppName::parse)?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        active_release: parse_opt(row, "active_release_id", ReleaseId::parse)?,
    })
}

fn build_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Build> {
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

async fn insert_release(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    app_id: i64,
    r: &NewRelease<'_>,
    now: Millis,
) -> Result<()> {
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

/// Records a running promotion of `release`, from the app's active release. A second running
/// promotion of the app violates the partial unique index: `RolloutInProgress`.
async fn insert_promotion(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    app: &AppName,
    app_id: i64,
    release: &ReleaseId,
    actor: &Actor,
    deadline: Duration,
) -> Result<Promotion> {
    let previous_release: Option<String> =
        sqlx::query_scalar("SELECT active_release_id FROM apps WHERE id = ?")
            .bind(app_id)
            .fetch_one(&mut **tx)
            .await?;
    let previous_release = previous_release.map(|s| ReleaseId::parse(&s)).transpose()?;
    let id = PromotionId::generate();
    let now = now_ms();
    let res = sqlx::query(
        "INSERT INTO promotions (id, app_id, release_id, previous_release_id, actor, state, deadline_ms, started_at)
         VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
    )
    .bind(id.as_str())
    .bind(app_id)
    .bind(release.as_str())
    .bind(previous_release.as_ref().map(|r| r.as_str()))
    .bind(actor.as_str())
    .bind(deadline.as_millis() as i64)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match res {
        Ok(_) => {}
        Err(e) if unique_violation(&e) => {
            let running: Option<String> = sqlx::query_scalar(
                "SELECT id FROM promotions WHERE app_id = ? AND state = 'running'",
            )
            .bind(app_id)
            .fetch_optional(&mut **tx)
            .await?;
            return Err(Error::RolloutInProgress {
                app: app.to_string(),
                promotion: running.unwrap_or_default(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Promotion {
        id,
        app: app.clone(),
        release: release.clone(),
        previous_release,
        actor: actor.to_string(),
        state: PromotionState::Running,
        reason: None,
        failed_output: None,
        deadline_ms: deadline.as_millis() as i64,
        started_at: now,
        finished_at: None,
    })
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

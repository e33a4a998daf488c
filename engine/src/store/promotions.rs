//! Promotions (rollouts of a release) and the steps each went through.

use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;

use super::sqlite::DbRow;
use super::{LockedApp, Store, UnitOfWork};
use crate::auth::AuditEntry;
use crate::error::{Error, Result};
use crate::ids::{PromotionId, ReleaseId};
use crate::model::*;
use crate::names::{Actor, AppName};
use crate::step::Step;
use auth::sql::{parse_col, parse_opt, unique_violation};

fn state_col(row: &DbRow, col: &str) -> Result<PromotionState> {
    Ok(parse_col(row, col, |s| {
        PromotionState::parse(s).ok_or_else(|| format!("unknown state {s}"))
    })?)
}

const PROMOTION_COLS: &str = "p.id, p.release_id, p.previous_release_id, p.actor, p.state, p.reason, p.failed_output, p.deadline_ms, p.started_at, p.finished_at, a.name AS app_name";

pub(super) fn promotion_from_row(row: &DbRow, prefix: &str) -> Result<Promotion> {
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

impl UnitOfWork {
    /// Records a running promotion of `release`, from the app's active release. While another
    /// rollout of the app runs nothing is written: `RolloutInProgress`. Under the app's lock
    /// the check and the insert are one step; the database's unique index on running
    /// promotions stands behind them.
    pub(crate) async fn start_promotion(
        &mut self,
        app: &LockedApp,
        release: &ReleaseId,
        actor: &Actor,
        deadline: Duration,
    ) -> Result<Promotion> {
        let promotion = Promotion {
            id: PromotionId::generate(),
            app: app.name.clone(),
            release: release.clone(),
            previous_release: app.active.clone(),
            actor: actor.to_string(),
            state: PromotionState::Running,
            reason: None,
            failed_output: None,
            deadline_ms: deadline.as_millis() as i64,
            started_at: self.now(),
            finished_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO promotions (id, app_id, release_id, previous_release_id, actor, state, deadline_ms, started_at)
             SELECT ?, ?, ?, ?, ?, 'running', ?, ?
             WHERE NOT EXISTS (SELECT 1 FROM promotions WHERE app_id = ? AND state = 'running')",
        )
        .bind(promotion.id.as_str())
        .bind(app.id)
        .bind(release.as_str())
        .bind(promotion.previous_release.as_ref().map(|r| r.as_str()))
        .bind(actor.as_str())
        .bind(promotion.deadline_ms)
        .bind(promotion.started_at)
        .bind(app.id)
        .execute(self.conn())
        .await;
        let running = match inserted {
            Ok(done) if done.rows_affected() == 1 => return Ok(promotion),
            Ok(_) => sqlx::query_scalar(
                "SELECT id FROM promotions WHERE app_id = ? AND state = 'running'",
            )
            .bind(app.id)
            .fetch_optional(self.conn())
            .await?
            .unwrap_or_default(),
            // Only a writer that skipped the app's lock gets here; on PostgreSQL the
            // transaction is over, so the running promotion is not looked up.
            Err(e) if unique_violation(&e) => "unknown".to_owned(),
            Err(e) => return Err(e.into()),
        };
        Err(Error::RolloutInProgress {
            app: app.name.to_string(),
            promotion: running,
        })
    }

    /// Makes the promotion's release the app's active one and ends the promotion as `active`.
    pub(crate) async fn activate(&mut self, promotion: &PromotionId) -> Result<()> {
        sqlx::query(
            "UPDATE apps SET active_release_id = (SELECT release_id FROM promotions WHERE id = ?)
             WHERE id = (SELECT app_id FROM promotions WHERE id = ? AND state = 'running')",
        )
        .bind(promotion.as_str())
        .bind(promotion.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Ends a running promotion as `state` (a promotion already ended is left as it is).
    pub(crate) async fn finish_promotion(
        &mut self,
        promotion: &PromotionId,
        state: PromotionState,
        reason: Option<&str>,
        failed_output: Option<&str>,
    ) -> Result<()> {
        let now = self.now();
        sqlx::query(
            "UPDATE promotions SET state = ?, reason = ?, failed_output = ?, finished_at = ?
             WHERE id = ? AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(failed_output)
        .bind(now)
        .bind(promotion.as_str())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Ends every promotion still marked running (after a restart): one that had switched
    /// traffic (its release is the app's active one) as `active`, the others as failed with
    /// `reason`; each with a step that says so, in four statements whatever their number.
    pub(crate) async fn fail_running_promotions(
        &mut self,
        reason: &str,
    ) -> Result<Vec<PromotionId>> {
        let now = self.now();
        const SWITCHED: &str =
            "p.release_id = (SELECT a.active_release_id FROM apps a WHERE a.id = p.app_id)";
        for (switched, step) in [
            (true, Step::InterruptedAfterSwitch),
            (false, Step::Interrupted),
        ] {
            sqlx::query(&format!(
                "INSERT INTO promotion_events (promotion_id, seq, at, message, step)
                 SELECT p.id, (SELECT COALESCE(MAX(e.seq), 0) + 1 FROM promotion_events e WHERE e.promotion_id = p.id), ?, ?, ?
                 FROM promotions p WHERE p.state = 'running' AND {} ({SWITCHED})",
                if switched { "" } else { "NOT" }
            ))
            .bind(now)
            .bind(step.to_string())
            .bind(step_json(&step))
            .execute(self.conn())
            .await?;
        }
        sqlx::query(&format!(
            "UPDATE promotions AS p SET state = 'active', finished_at = ? WHERE p.state = 'running' AND {SWITCHED}"
        ))
        .bind(now)
        .execute(self.conn())
        .await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE promotions SET state = 'failed', reason = ?, finished_at = ? WHERE state = 'running'
             RETURNING id",
        )
        .bind(reason)
        .bind(now)
        .fetch_all(self.conn())
        .await?;
        Ok(ids
            .iter()
            .map(|s| PromotionId::parse(s))
            .collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// Records a new running promotion of `release` and its audit entry, in one transaction;
    /// `RolloutInProgress` while another rollout of the app runs.
    pub(crate) async fn start_promotion(
        &self,
        app: &AppName,
        release: &ReleaseId,
        actor: &Actor,
        deadline: Duration,
        audit: &AuditEntry,
    ) -> Result<Promotion> {
        let mut uow = self.begin().await?;
        let app = uow.lock_app(app).await?;
        let promotion = uow.start_promotion(&app, release, actor, deadline).await?;
        uow.audit(audit).await?;
        uow.commit().await?;
        Ok(promotion)
    }

    /// [`UnitOfWork::activate`], in a transaction of its own.
    pub(crate) async fn activate(&self, promotion: &PromotionId) -> Result<()> {
        let mut uow = self.begin().await?;
        uow.activate(promotion).await?;
        uow.commit().await
    }

    /// [`UnitOfWork::finish_promotion`], in a transaction of its own.
    pub(crate) async fn finish_promotion(
        &self,
        promotion: &PromotionId,
        state: PromotionState,
        reason: Option<&str>,
        failed_output: Option<&str>,
    ) -> Result<()> {
        let mut uow = self.begin().await?;
        uow.finish_promotion(promotion, state, reason, failed_output)
            .await?;
        uow.commit().await
    }

    /// [`UnitOfWork::fail_running_promotions`], in a transaction of its own.
    pub(crate) async fn fail_running_promotions(&self, reason: &str) -> Result<Vec<PromotionId>> {
        let mut uow = self.begin().await?;
        let ids = uow.fail_running_promotions(reason).await?;
        uow.commit().await?;
        Ok(ids)
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

    /// Appends a step to the promotion's log (one statement: no unit of work needed).
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
    ) -> Result<HashMap<PromotionId, Vec<PromotionEvent>>> {
        let rows = sqlx::query(
            "SELECT e.promotion_id, e.seq, e.at, e.message, e.step FROM promotion_events e
             JOIN promotions p ON p.id = e.promotion_id
             WHERE p.release_id = ? ORDER BY e.promotion_id, e.seq",
        )
        .bind(release.as_str())
        .fetch_all(&self.read)
        .await?;
        let mut by_promotion: HashMap<PromotionId, Vec<PromotionEvent>> = HashMap::new();
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
}

fn step_json(step: &Step) -> String {
    serde_json::to_string(step).unwrap_or_else(|_| "null".into())
}

/// A promotion event; a step recorded before steps were typed is read as a note.
fn event_from_row(row: &DbRow, promotion: PromotionId) -> Result<PromotionEvent> {
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

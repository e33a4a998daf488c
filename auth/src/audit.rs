//! The audit log's SQL. Every use case writes its entry in the transaction of the change it
//! records — the engine's too: it calls [`insert`] on its own transaction — and a use case
//! that failed records its attempt with [`record_failure`]. Long fields are cut; nothing in an
//! entry is ever a secret.

use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};

use crate::error::{Error, Result};
use crate::sql::parse_opt;
use types::{AppName, AuditEntry, AuditFilter, AuditRecord, AuditResult, Millis, Refusal};

// Longest values kept in the audit log; longer ones are cut (on a character boundary).
const AUDIT_ACTION_MAX: usize = 100;
const AUDIT_TARGET_MAX: usize = 500;
const AUDIT_DETAIL_MAX: usize = 2000;

fn cut(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Appends `e` to the audit log on `conn`, stamped `now` — inside the transaction of the
/// change it records, when there is one (`audit::insert(&mut tx, &entry, now)`). Long fields
/// are cut; an empty action is `Error::Invalid`.
pub async fn insert(
    conn: &mut SqliteConnection,
    e: &AuditEntry,
    now: Millis,
) -> Result<AuditRecord> {
    let action = cut(e.action.trim(), AUDIT_ACTION_MAX);
    if action.is_empty() {
        return Err(Error::invalid("audit action", "must not be empty"));
    }
    let target = e.target.as_deref().map(|t| cut(t, AUDIT_TARGET_MAX));
    let result = match &e.result {
        AuditResult::Failed(d) => AuditResult::Failed(cut(d, AUDIT_DETAIL_MAX)),
        other => other.clone(),
    };
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO audit (at, actor, app, action, target, result, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(now)
    .bind(e.actor.as_str())
    .bind(e.app.as_ref().map(|a| a.as_str()))
    .bind(&action)
    .bind(target.as_deref())
    .bind(result.as_str())
    .bind(result.detail())
    .fetch_one(&mut *conn)
    .await?;
    Ok(AuditRecord {
        seq,
        at: now,
        actor: e.actor.to_string(),
        app: e.app.clone(),
        action,
        target,
        result,
    })
}

/// When `result` is an error, records `audit` with the error as its outcome (`denied` for a
/// refusal, else `failed` with the message as the reason) in a write of its own on `write`:
/// the change's transaction, if it got that far, rolled back. A failure to record is logged;
/// it never hides the use case's error.
pub async fn record_failure<T, E: Refusal>(
    write: &SqlitePool,
    audit: &AuditEntry,
    result: &std::result::Result<T, E>,
    now: Millis,
) {
    if result.is_err() {
        let entry = audit.clone().result(AuditResult::of(result));
        let written = async {
            let mut conn = write.acquire().await?;
            insert(&mut conn, &entry, now).await
        }
        .await;
        if let Err(e) = written {
            tracing::error!(error = %e, action = %entry.action, "recording a failed action in the audit log failed");
        }
    }
}

fn audit_result(row: &sqlx::sqlite::SqliteRow) -> Result<AuditResult> {
    let result: String = row.try_get("result")?;
    AuditResult::from_columns(&result, row.try_get("detail")?)
        .ok_or_else(|| Error::Internal(format!("unknown audit result {result:?} in the database")))
}

/// One page of the audit log, newest first, in one query. Only the filters that are set
/// become conditions, so that `(actor, seq)` and `(app, seq)` indexes can serve them.
pub(crate) async fn list(read: &SqlitePool, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(
        "SELECT seq, at, actor, app, action, target, result, detail FROM audit WHERE 1 = 1",
    );
    if let Some(actor) = &f.actor {
        q.push(" AND actor = ").push_bind(actor.as_str().to_owned());
    }
    if let Some(app) = &f.app {
        q.push(" AND app = ").push_bind(app.as_str().to_owned());
    }
    if let Some(prefix) = f.action.as_deref().filter(|p| !p.is_empty()) {
        let len = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
        q.push(" AND substr(action, 1, ")
            .push_bind(len)
            .push(") = ")
            .push_bind(prefix.to_owned());
    }
    if let Some(before) = f.before_seq {
        q.push(" AND seq < ").push_bind(before);
    }
    q.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(f.effective_limit()));
    let rows = q.build().fetch_all(read).await?;
    rows.iter()
        .map(|row| {
            Ok(AuditRecord {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                app: parse_opt(row, "app", AppName::parse)?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                result: audit_result(row)?,
            })
        })
        .collect()
}

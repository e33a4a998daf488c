//! The OS processes the local runtime started, so that a restart can find those left behind.

use sqlx::Row;

use super::Store;
use crate::error::Result;
use crate::ids::ReleaseId;
use crate::model::now_ms;
use crate::names::AppName;

pub(crate) struct ProcessRecord {
    pub id: String,
    pub pid: i64,
    pub start_ticks: Option<i64>,
}

impl Store {
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

//! Per-workflow run statistics for the workflows page, from PostgreSQL:
//! success rate and median (p50) duration over the last 7 days.
//!
//! One query per namespace. It reads `workflow_executions` through the
//! index `(workflow_id, created_at DESC, id DESC)` (migration 0004): one
//! range per workflow of the namespace.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// The window the workflows page reports on.
pub const WINDOW: TimeDelta = TimeDelta::days(7);

/// Runs of one workflow created in the window.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStats {
    /// Runs created in the window, whatever their state.
    pub runs: i64,
    /// Of those, runs that succeeded.
    pub succeeded: i64,
    /// Of those, runs that failed.
    pub failed: i64,
    /// succeeded / (succeeded + failed); cancelled and unfinished runs are
    /// neither. None when no run has finished that way.
    pub success_rate: Option<f64>,
    /// Median duration of the finished runs, in milliseconds.
    pub p50_duration_ms: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    #[sqlx(flatten)]
    stats: WorkflowStats,
}

/// Statistics of the workflows of `namespace` over runs created at or
/// after `since`, by workflow name; workflows without such runs are absent.
pub async fn workflow_stats(
    pool: &PgPool,
    namespace: &str,
    since: DateTime<Utc>,
) -> Result<BTreeMap<String, WorkflowStats>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT w.name,
                count(*) AS runs,
                count(*) FILTER (WHERE e.status = 'completed') AS succeeded,
                count(*) FILTER (WHERE e.status = 'failed') AS failed,
                (count(*) FILTER (WHERE e.status = 'completed'))::float8
                    / NULLIF(count(*) FILTER (WHERE e.status IN ('completed', 'failed')), 0)
                    AS success_rate,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration_ms)
                    FILTER (WHERE e.status IN ('completed', 'failed', 'cancelled')
                            AND e.duration_ms IS NOT NULL)
                    AS p50_duration_ms
           FROM workspaces s
           JOIN workflows w ON w.workspace_id = s.id
           JOIN workflow_executions e ON e.workflow_id = w.id AND e.created_at >= $2
          WHERE s.name = $1 AND s.is_active
          GROUP BY w.name",
    )
    .bind(namespace)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| (row.name, row.stats)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::{at, execution, seed_runs};
    use crate::mirror::records::RunPhase;

    #[sqlx::test(migrations = "../migrations")]
    async fn success_rate_and_median_duration_of_the_window(pool: PgPool) {
        // Runs 1..=6 at 09:0n; durations n minutes. Run 1 is before the
        // window; 2 and 3 failed, 4 and 5 succeeded, 6 was cancelled,
        // 7 is still running.
        let runs: Vec<_> = (1..=7u32)
            .map(|n| {
                let phase = match n {
                    2 | 3 => RunPhase::Failed,
                    6 => RunPhase::Cancelled,
                    7 => RunPhase::Running,
                    _ => RunPhase::Succeeded,
                };
                let mut run = execution(n.into(), phase);
                run.created_at = Some(at(9, n));
                run.started_at = Some(at(10, 0));
                run.ended_at = phase.is_finished().then(|| at(10, n));
                run
            })
            .collect();
        seed_runs(&pool, &runs).await;

        let stats = workflow_stats(&pool, "growth", at(9, 2)).await.unwrap();
        let triage = &stats["triage-signup"];
        assert_eq!(triage.runs, 6);
        assert_eq!(triage.succeeded, 2);
        assert_eq!(triage.failed, 2);
        assert_eq!(triage.success_rate, Some(0.5));
        // Finished in the window: 2, 3, 4, 5, 6 minutes; the median is 4.
        assert_eq!(triage.p50_duration_ms, Some(240_000.0));

        let later = workflow_stats(&pool, "growth", at(9, 7)).await.unwrap();
        assert_eq!(later["triage-signup"].runs, 1);
        assert_eq!(later["triage-signup"].success_rate, None);
        assert_eq!(later["triage-signup"].p50_duration_ms, None);

        assert!(
            workflow_stats(&pool, "growth", at(11, 0))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            workflow_stats(&pool, "other", at(0, 0))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

//! Daily aggregates: `workflow_metrics`, `node_metrics`, `usage_records`.
//!
//! An aggregate row is always computed from the executions tables, never
//! incremented: refreshing a (workflow, day) after a run finishes is
//! incremental in scope (only the affected keys) yet idempotent, because a
//! replayed run event recomputes the same numbers. [`recompute_daily_metrics`]
//! applies the same computation to every key of a range of days (and
//! removes rows that no longer have executions behind them).
//!
//! Definitions: a run counts on the UTC day it started (created, if it never
//! started) once it is finished (`completed`, `failed`, `cancelled`);
//! `error_rate` is failed / total × 100. Node metrics count finished
//! attempts (skipped nodes did not execute) of the runs of that day, per
//! node name — forEach items `name[i]` count under `name`. Usage is
//! `workflow_executions` per workspace per day, `timestamp` at 00:00 UTC.

use std::ops::RangeInclusive;

use chrono::NaiveDate;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{WriteError, failed};

/// Recomputes `workflow_metrics` for the given (workflow, day) keys.
async fn refresh_workflow_days(
    conn: &mut PgConnection,
    workflows: &[Uuid],
    days: &[NaiveDate],
) -> Result<(), WriteError> {
    sqlx::query(
        "WITH keys AS (
             SELECT DISTINCT workflow_id, day FROM UNNEST($1::uuid[], $2::date[]) AS k(workflow_id, day)
         ), totals AS (
             SELECT k.workflow_id, k.day,
                    count(e.id) AS total,
                    count(e.id) FILTER (WHERE e.status = 'completed') AS successful,
                    count(e.id) FILTER (WHERE e.status = 'failed') AS failed,
                    round(avg(e.duration_ms), 2) AS avg_duration,
                    max(e.duration_ms) AS max_duration,
                    min(e.duration_ms) AS min_duration
             FROM keys k
             LEFT JOIN workflow_executions e
                 ON e.workflow_id = k.workflow_id
                AND e.status IN ('completed', 'failed', 'cancelled')
                AND COALESCE(e.started_at, e.created_at) >= k.day::timestamp AT TIME ZONE 'UTC'
                AND COALESCE(e.started_at, e.created_at) < (k.day + 1)::timestamp AT TIME ZONE 'UTC'
             GROUP BY k.workflow_id, k.day
         ), removed AS (
             DELETE FROM workflow_metrics m USING totals t
             WHERE m.workflow_id = t.workflow_id AND m.execution_date = t.day AND t.total = 0
         )
         INSERT INTO workflow_metrics (workflow_id, execution_date, successful_executions, failed_executions,
                                       total_executions, avg_duration_ms, max_duration_ms, min_duration_ms,
                                       error_rate)
         SELECT workflow_id, day, successful, failed, total, avg_duration, max_duration, min_duration,
                round(100.0 * failed / total, 2)
         FROM totals WHERE total > 0
         ON CONFLICT (workflow_id, execution_date) DO UPDATE SET
             successful_executions = EXCLUDED.successful_executions,
             failed_executions = EXCLUDED.failed_executions,
             total_executions = EXCLUDED.total_executions,
             avg_duration_ms = EXCLUDED.avg_duration_ms,
             max_duration_ms = EXCLUDED.max_duration_ms,
             min_duration_ms = EXCLUDED.min_duration_ms,
             error_rate = EXCLUDED.error_rate",
    )
    .bind(workflows)
    .bind(days)
    .execute(conn)
    .await
    .map_err(failed("workflow metrics"))?;
    Ok(())
}

/// Recomputes `node_metrics` for every node of the given (workflow, day)
/// keys.
async fn refresh_node_days(
    conn: &mut PgConnection,
    workflows: &[Uuid],
    days: &[NaiveDate],
) -> Result<(), WriteError> {
    sqlx::query(
        "WITH keys AS (
             SELECT DISTINCT workflow_id, day FROM UNNEST($1::uuid[], $2::date[]) AS k(workflow_id, day)
         ), attempts AS (
             SELECT k.workflow_id, k.day, regexp_replace(n.node_id, '\\[[0-9]+\\]$', '') AS node_id,
                    n.node_type, n.status, n.duration_ms
             FROM keys k
             JOIN workflow_executions e
                 ON e.workflow_id = k.workflow_id
                AND e.status IN ('completed', 'failed', 'cancelled')
                AND COALESCE(e.started_at, e.created_at) >= k.day::timestamp AT TIME ZONE 'UTC'
                AND COALESCE(e.started_at, e.created_at) < (k.day + 1)::timestamp AT TIME ZONE 'UTC'
             JOIN node_executions n
                 ON n.execution_id = e.id AND n.status IN ('completed', 'failed', 'cancelled')
         ), totals AS (
             SELECT workflow_id, day, node_id, max(node_type) AS node_type,
                    count(*) AS total,
                    count(*) FILTER (WHERE status = 'completed') AS successful,
                    count(*) FILTER (WHERE status = 'failed') AS failed,
                    round(avg(duration_ms), 2) AS avg_duration,
                    max(duration_ms) AS max_duration,
                    min(duration_ms) AS min_duration
             FROM attempts GROUP BY workflow_id, day, node_id
         ), removed AS (
             DELETE FROM node_metrics m USING keys k
             WHERE m.workflow_id = k.workflow_id AND m.execution_date = k.day
               AND NOT EXISTS (SELECT 1 FROM totals t WHERE t.workflow_id = m.workflow_id
                               AND t.day = m.execution_date AND t.node_id = m.node_id)
         )
         INSERT INTO node_metrics (workflow_id, node_id, node_type, execution_date, execution_count,
                                   success_count, failure_count, avg_duration_ms, max_duration_ms,
                                   min_duration_ms, error_rate)
         SELECT workflow_id, node_id, node_type, day, total, successful, failed, avg_duration, max_duration,
                min_duration, round(100.0 * failed / total, 2)
         FROM totals
         ON CONFLICT (workflow_id, node_id, execution_date) DO UPDATE SET
             node_type = EXCLUDED.node_type,
             execution_count = EXCLUDED.execution_count,
             success_count = EXCLUDED.success_count,
             failure_count = EXCLUDED.failure_count,
             avg_duration_ms = EXCLUDED.avg_duration_ms,
             max_duration_ms = EXCLUDED.max_duration_ms,
             min_duration_ms = EXCLUDED.min_duration_ms,
             error_rate = EXCLUDED.error_rate",
    )
    .bind(workflows)
    .bind(days)
    .execute(conn)
    .await
    .map_err(failed("node metrics"))?;
    Ok(())
}

/// Recomputes the `workflow_executions` usage of the given (workspace, day)
/// keys.
async fn refresh_usage_days(
    conn: &mut PgConnection,
    workspaces: &[Uuid],
    days: &[NaiveDate],
) -> Result<(), WriteError> {
    sqlx::query(
        "WITH keys AS (
             SELECT DISTINCT workspace_id, day FROM UNNEST($1::uuid[], $2::date[]) AS k(workspace_id, day)
         ), totals AS (
             SELECT k.workspace_id, k.day, count(e.id) AS total
             FROM keys k
             LEFT JOIN workflows w ON w.workspace_id = k.workspace_id
             LEFT JOIN workflow_executions e
                 ON e.workflow_id = w.id
                AND e.status IN ('completed', 'failed', 'cancelled')
                AND COALESCE(e.started_at, e.created_at) >= k.day::timestamp AT TIME ZONE 'UTC'
                AND COALESCE(e.started_at, e.created_at) < (k.day + 1)::timestamp AT TIME ZONE 'UTC'
             GROUP BY k.workspace_id, k.day
         ), removed AS (
             DELETE FROM usage_records u USING totals t
             WHERE u.workspace_id = t.workspace_id AND u.metric = 'workflow_executions'
               AND u.timestamp = t.day::timestamp AT TIME ZONE 'UTC' AND t.total = 0
         )
         INSERT INTO usage_records (workspace_id, metric, amount, timestamp)
         SELECT workspace_id, 'workflow_executions', total, day::timestamp AT TIME ZONE 'UTC'
         FROM totals WHERE total > 0
         ON CONFLICT (workspace_id, metric, timestamp) DO UPDATE SET amount = EXCLUDED.amount",
    )
    .bind(workspaces)
    .bind(days)
    .execute(conn)
    .await
    .map_err(failed("usage records"))?;
    Ok(())
}

/// Refreshes the daily aggregates a set of finished runs contribute to:
/// called as runs finish (and when node rows of a finished run arrive late).
pub async fn refresh_for_executions(
    conn: &mut PgConnection,
    execution_uids: &[Uuid],
) -> Result<(), WriteError> {
    if execution_uids.is_empty() {
        return Ok(());
    }
    let keys: Vec<(Uuid, Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT DISTINCT e.workflow_id, w.workspace_id,
                (COALESCE(e.started_at, e.created_at) AT TIME ZONE 'UTC')::date
         FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id
         WHERE e.id = ANY($1) AND e.status IN ('completed', 'failed', 'cancelled')",
    )
    .bind(execution_uids)
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("daily metric keys"))?;
    if keys.is_empty() {
        return Ok(());
    }
    let workflows: Vec<Uuid> = keys.iter().map(|key| key.0).collect();
    let workspaces: Vec<Uuid> = keys.iter().map(|key| key.1).collect();
    let days: Vec<NaiveDate> = keys.iter().map(|key| key.2).collect();
    refresh_workflow_days(conn, &workflows, &days).await?;
    refresh_node_days(conn, &workflows, &days).await?;
    refresh_usage_days(conn, &workspaces, &days).await?;
    Ok(())
}

/// What [`recompute_daily_metrics`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recomputed {
    /// (workflow, day) keys recomputed.
    pub workflow_days: usize,
    /// (workspace, day) keys recomputed.
    pub workspace_days: usize,
}

/// Rebuilds `workflow_metrics`, `node_metrics` and `usage_records` for the
/// given UTC days from the executions tables, in one transaction. The
/// "one command" of the issue: the operator binary exposes it as
/// `sluice-operator recompute-metrics --from DAY [--to DAY]`.
pub async fn recompute_daily_metrics(
    pool: &PgPool,
    days: RangeInclusive<NaiveDate>,
) -> Result<Recomputed, WriteError> {
    let mut transaction = pool.begin().await.map_err(failed("daily metrics"))?;
    let (first, last) = (*days.start(), *days.end());
    let workflow_keys: Vec<(Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT workflow_id, (COALESCE(started_at, created_at) AT TIME ZONE 'UTC')::date AS day
         FROM workflow_executions
         WHERE COALESCE(started_at, created_at) >= $1::timestamp AT TIME ZONE 'UTC'
           AND COALESCE(started_at, created_at) < ($2 + 1)::timestamp AT TIME ZONE 'UTC'
         UNION SELECT workflow_id, execution_date FROM workflow_metrics WHERE execution_date BETWEEN $1 AND $2
         UNION SELECT workflow_id, execution_date FROM node_metrics WHERE execution_date BETWEEN $1 AND $2",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *transaction)
    .await
    .map_err(failed("daily metric keys"))?;
    let workspace_keys: Vec<(Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT w.workspace_id, (COALESCE(e.started_at, e.created_at) AT TIME ZONE 'UTC')::date AS day
         FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id
         WHERE COALESCE(e.started_at, e.created_at) >= $1::timestamp AT TIME ZONE 'UTC'
           AND COALESCE(e.started_at, e.created_at) < ($2 + 1)::timestamp AT TIME ZONE 'UTC'
         UNION SELECT workspace_id, (timestamp AT TIME ZONE 'UTC')::date FROM usage_records
         WHERE metric = 'workflow_executions'
           AND timestamp >= $1::timestamp AT TIME ZONE 'UTC'
           AND timestamp < ($2 + 1)::timestamp AT TIME ZONE 'UTC'",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *transaction)
    .await
    .map_err(failed("daily metric keys"))?;

    let (workflows, workflow_days): (Vec<Uuid>, Vec<NaiveDate>) =
        workflow_keys.iter().copied().unzip();
    refresh_workflow_days(&mut transaction, &workflows, &workflow_days).await?;
    refresh_node_days(&mut transaction, &workflows, &workflow_days).await?;
    let (workspaces, workspace_days): (Vec<Uuid>, Vec<NaiveDate>) =
        workspace_keys.iter().copied().unzip();
    refresh_usage_days(&mut transaction, &workspaces, &workspace_days).await?;
    transaction
        .commit()
        .await
        .map_err(failed("daily metrics"))?;
    Ok(Recomputed {
        workflow_days: workflow_keys.len(),
        workspace_days: workspace_keys.len(),
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
    }

    /// (total, successful, failed, avg, max, min, error rate) of the day.
    async fn workflow_day(pool: &PgPool) -> (i32, i32, i32, f64, i64, i64, f64) {
        sqlx::query_as(
            "SELECT total_executions, successful_executions, failed_executions, avg_duration_ms::float8,
                    max_duration_ms, min_duration_ms, error_rate::float8
             FROM workflow_metrics WHERE execution_date = $1",
        )
        .bind(day())
        .fetch_one(pool)
        .await
        .unwrap()
    }

    async fn finished_runs(pool: &PgPool) {
        let mut slow = execution(3, RunPhase::Failed);
        slow.ended_at = Some(at(9, 5)); // 4 minutes
        let first = execution(1, RunPhase::Succeeded);
        seed_runs(
            pool,
            &[
                first.clone(),
                execution(2, RunPhase::Succeeded),
                slow.clone(),
                execution(4, RunPhase::Running),
            ],
        )
        .await;
        write(
            pool,
            &[
                MirrorEvent::NodeExecution(node(&first, "lookup", 0, NodePhase::Failed)),
                MirrorEvent::NodeExecution(node(&first, "lookup", 1, NodePhase::Succeeded)),
                MirrorEvent::NodeExecution(node(&first, "tag-each[0]", 0, NodePhase::Succeeded)),
                MirrorEvent::NodeExecution(node(&first, "tag-each[1]", 0, NodePhase::Succeeded)),
                MirrorEvent::NodeExecution(node(&first, "alert", 0, NodePhase::Skipped)),
                MirrorEvent::NodeExecution(node(&slow, "lookup", 0, NodePhase::Failed)),
            ],
        )
        .await;
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn finished_runs_update_the_daily_metrics(pool: PgPool) {
        finished_runs(&pool).await;
        assert_eq!(
            workflow_day(&pool).await,
            (3, 2, 1, 160_000.0, 240_000, 120_000, 33.33)
        );

        let nodes: Vec<(String, i32, i32, i32)> = sqlx::query_as(
            "SELECT node_id, execution_count, success_count, failure_count FROM node_metrics ORDER BY node_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            nodes,
            [("lookup".into(), 3, 1, 2), ("tag-each".into(), 2, 2, 0)]
        );

        let usage: (String, i64) = sqlx::query_as("SELECT metric, amount FROM usage_records")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(usage, ("workflow_executions".into(), 3));

        // The running run finishes: the day's row follows.
        write(
            &pool,
            &[MirrorEvent::Execution(execution(4, RunPhase::Cancelled))],
        )
        .await;
        assert_eq!(workflow_day(&pool).await.0, 4);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn recomputing_gives_the_incremental_rows(pool: PgPool) {
        finished_runs(&pool).await;
        let tables = ["workflow_metrics", "node_metrics", "usage_records"];
        let mut incremental = Vec::new();
        for table in tables {
            incremental.push(dump(&pool, table).await);
        }
        let range = day().pred_opt().unwrap()..=day();
        let recomputed = recompute_daily_metrics(&pool, range.clone()).await.unwrap();
        assert_eq!(
            recomputed,
            Recomputed {
                workflow_days: 1,
                workspace_days: 1
            }
        );
        for (table, rows) in tables.iter().zip(&incremental) {
            assert_eq!(&dump(&pool, table).await, rows, "{table}");
        }

        // Wrong or missing rows are repaired.
        sqlx::query("UPDATE workflow_metrics SET total_executions = 99")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM node_metrics WHERE node_id = 'lookup'")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM usage_records")
            .execute(&pool)
            .await
            .unwrap();
        recompute_daily_metrics(&pool, range.clone()).await.unwrap();
        assert_eq!(workflow_day(&pool).await.0, 3);
        let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM node_metrics")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(nodes, 2);
        let usage: i64 = sqlx::query_scalar("SELECT amount FROM usage_records")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(usage, 3);

        // Rows without executions behind them go.
        sqlx::query("DELETE FROM workflow_executions")
            .execute(&pool)
            .await
            .unwrap();
        recompute_daily_metrics(&pool, range).await.unwrap();
        for table in tables {
            assert!(dump(&pool, table).await.is_empty(), "{table}");
        }
    }
}

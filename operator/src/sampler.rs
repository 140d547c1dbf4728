//! The system metrics sampler: on the leader, every
//! `--metrics-sample-interval` it writes `system_metrics` rows (through the
//! mirror, so a PostgreSQL outage only delays them) and deletes rows older
//! than `--metrics-retention`, a batch at a time.
//!
//! Per namespace (tag `namespace`), from the runs the mirror holds:
//! `runs_active` (Running), `runs_queued` (Pending or Queued), and
//! `runs_started` / `runs_finished` in the interval (by their start and end
//! times). A run whose event reaches PostgreSQL only after the interval
//! ended (a mirror backlog) is missed by that interval's started/finished
//! counts; the `mirror_backlog` row says when that can happen. For the
//! runs started in the interval, `run_start_latency_p50` / `_p95` (ms): from
//! the run's creation to its start (`status.startedAt`, the runner's first
//! report from its pod).
//!
//! Rows, each tagged `{"source": "sluice-operator", "replica": <pod>}`:
//! `mirror_backlog` (count), `reconcile_queue_depth` (count of runs waiting
//! for a reconcile, tagged `"controller": "run"`), `operator_memory_rss` (bytes, VmRSS of
//! /proc/self/status) and `operator_cpu` (percentage of one core over the
//! interval, from utime + stime of /proc/self/stat; from the second sample
//! on). The /proc readings are Linux only; elsewhere those rows are left out.
//!
//! The pure parts — turning two snapshots into rows, the retention cutoff,
//! the /proc parsers — are separate from the loop and tested on their own.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::context::Context;
use crate::mirror::{MirrorEvent, SystemMetricRecord};

/// Rows deleted per retention statement: short statements, short locks.
pub const RETENTION_BATCH: i64 = 1_000;

/// Kernel clock ticks per second of /proc/self/stat times (USER_HZ, fixed
/// at 100 by the Linux ABI on every architecture the operator ships for).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// What one sample saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Mirror events not yet in PostgreSQL.
    pub mirror_backlog: u64,
    /// Runs triggered and not yet picked up by a reconcile of the run
    /// controller ([`crate::reconcile_queue`]).
    pub reconcile_queue: u64,
    /// Resident memory of the process, in bytes (Linux only).
    pub resident_bytes: Option<u64>,
    /// CPU time the process used since it started, user plus system, in
    /// seconds (Linux only).
    pub cpu_seconds: Option<f64>,
}

/// The runs of one namespace at a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRuns {
    pub namespace: String,
    /// Running now.
    pub active: i64,
    /// Pending or Queued now.
    pub queued: i64,
    /// Started within the interval.
    pub started: i64,
    /// Ended within the interval.
    pub finished: i64,
    /// Creation to start of the runs started within the interval, in
    /// milliseconds: median and 95th percentile (none when none started).
    pub start_latency_ms: Option<(f64, f64)>,
}

/// The rows of the runs of each namespace, recorded at `at`.
pub fn run_rows(
    runs: &[NamespaceRuns],
    at: DateTime<Utc>,
    replica: &str,
) -> Vec<SystemMetricRecord> {
    let mut rows = Vec::with_capacity(runs.len() * 4);
    for namespace in runs {
        let tags = json!({
            "source": "sluice-operator",
            "replica": replica,
            "namespace": namespace.namespace,
        });
        for (metric_type, value) in [
            ("runs_active", namespace.active),
            ("runs_queued", namespace.queued),
            ("runs_started", namespace.started),
            ("runs_finished", namespace.finished),
        ] {
            rows.push(SystemMetricRecord {
                metric_type: metric_type.to_owned(),
                value: value as f64,
                unit: Some("count".to_owned()),
                tags: tags.clone(),
                recorded_at: at,
            });
        }
        if let Some((p50, p95)) = namespace.start_latency_ms {
            for (metric_type, value) in [
                ("run_start_latency_p50", p50),
                ("run_start_latency_p95", p95),
            ] {
                rows.push(SystemMetricRecord {
                    metric_type: metric_type.to_owned(),
                    value,
                    unit: Some("ms".to_owned()),
                    tags: tags.clone(),
                    recorded_at: at,
                });
            }
        }
    }
    rows
}

/// The runs of each namespace that has any running, waiting, or started or
/// ended in `(since, until]`, read from the mirror's executions.
pub async fn namespace_runs(
    pool: &PgPool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<NamespaceRuns>, sqlx::Error> {
    type Row = (String, i64, i64, i64, i64, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT ws.name,
                count(*) FILTER (WHERE e.status = 'running'),
                count(*) FILTER (WHERE e.status IN ('pending', 'queued')),
                count(*) FILTER (WHERE e.started_at > $1 AND e.started_at <= $2),
                count(*) FILTER (WHERE e.ended_at > $1 AND e.ended_at <= $2),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY latency.ms)
                    FILTER (WHERE e.started_at > $1 AND e.started_at <= $2),
                percentile_cont(0.95) WITHIN GROUP (ORDER BY latency.ms)
                    FILTER (WHERE e.started_at > $1 AND e.started_at <= $2)
         FROM workflow_executions e
         JOIN workflows w ON w.id = e.workflow_id
         JOIN workspaces ws ON ws.id = w.workspace_id
         CROSS JOIN LATERAL (
             SELECT (extract(epoch FROM e.started_at - e.created_at) * 1000)::float8 AS ms
         ) latency
         WHERE e.status IN ('running', 'pending', 'queued')
            OR (e.started_at > $1 AND e.started_at <= $2)
            OR (e.ended_at > $1 AND e.ended_at <= $2)
         GROUP BY ws.name
         ORDER BY ws.name",
    )
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(namespace, active, queued, started, finished, p50, p95)| NamespaceRuns {
                namespace,
                active,
                queued,
                started,
                finished,
                // Hundredths of a millisecond, as the table keeps them.
                start_latency_ms: p50
                    .zip(p95)
                    .map(|(p50, p95)| (hundredths(p50), hundredths(p95))),
            },
        )
        .collect())
}

fn hundredths(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The rows of `current`; CPU use needs the previous sample of this process.
pub fn rows(
    previous: Option<&Snapshot>,
    current: &Snapshot,
    replica: &str,
) -> Vec<SystemMetricRecord> {
    let tags = json!({"source": "sluice-operator", "replica": replica});
    let row = |metric_type: &str, value: f64, unit: &str| SystemMetricRecord {
        metric_type: metric_type.to_owned(),
        value,
        unit: Some(unit.to_owned()),
        tags: tags.clone(),
        recorded_at: current.at,
    };
    let mut rows = vec![
        row("mirror_backlog", current.mirror_backlog as f64, "count"),
        SystemMetricRecord {
            metric_type: "reconcile_queue_depth".to_owned(),
            value: current.reconcile_queue as f64,
            unit: Some("count".to_owned()),
            tags: json!({"source": "sluice-operator", "replica": replica, "controller": "run"}),
            recorded_at: current.at,
        },
    ];
    if let Some(bytes) = current.resident_bytes {
        rows.push(row("operator_memory_rss", bytes as f64, "bytes"));
    }
    if let Some(cpu) = previous.and_then(|previous| cpu_percent(previous, current)) {
        rows.push(row("operator_cpu", cpu, "percentage"));
    }
    rows
}

/// CPU use between two samples, as a percentage of one core.
fn cpu_percent(previous: &Snapshot, current: &Snapshot) -> Option<f64> {
    let elapsed = (current.at - previous.at).num_microseconds()? as f64 / 1e6;
    let used = current.cpu_seconds? - previous.cpu_seconds?;
    (elapsed > 0.0 && used >= 0.0).then(|| (used / elapsed * 100.0 * 100.0).round() / 100.0)
}

/// Rows recorded before this instant are deleted.
pub fn retention_cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|retention| now.checked_sub_signed(retention))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// VmRSS of a /proc/<pid>/status text, in bytes.
pub fn parse_resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// utime + stime of a /proc/<pid>/stat text, in seconds.
pub fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// A snapshot of this process now.
fn take(context: &Context) -> Snapshot {
    let mirror_backlog = context
        .mirror
        .as_ref()
        .map_or(0, |mirror| mirror.stats().backlog as u64);
    Snapshot {
        at: Utc::now(),
        mirror_backlog,
        reconcile_queue: context.reconcile_queue.depth() as u64,
        resident_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|text| parse_resident_bytes(&text)),
        cpu_seconds: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_cpu_seconds(&text)),
    }
}

/// Deletes the rows recorded before `cutoff`, `batch` per statement, and
/// returns how many went.
pub async fn delete_older_than(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM system_metrics WHERE id IN (
                 SELECT id FROM system_metrics WHERE recorded_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += done;
        if done < batch as u64 {
            return Ok(deleted);
        }
    }
}

/// Samples until `stop` resolves. Without a database it does nothing.
pub async fn run(context: Arc<Context>, stop: impl std::future::Future<Output = ()>) {
    let Some(mirror) = context.mirror.clone() else {
        return;
    };
    let every = context.config.metrics_sample_interval;
    let retention = context.config.metrics_retention;
    let replica = context.config.identity.clone();
    let work = async {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Snapshot> = None;
        loop {
            ticks.tick().await;
            let current = take(&context);
            let since = previous.as_ref().map_or_else(
                || current.at - chrono::Duration::from_std(every).unwrap_or_default(),
                |previous| previous.at,
            );
            let runs = match namespace_runs(mirror.pool(), since, current.at).await {
                Ok(runs) => runs,
                Err(error) => {
                    tracing::warn!(%error, "failed to count runs for system metrics");
                    Vec::new()
                }
            };
            let all = rows(previous.as_ref(), &current, &replica)
                .into_iter()
                .chain(run_rows(&runs, current.at, &replica));
            for row in all {
                if let Err(error) = mirror.offer(MirrorEvent::SystemMetric(row)) {
                    tracing::warn!(%error, "failed to queue a system metric sample");
                }
            }
            let cutoff = retention_cutoff(current.at, retention);
            match delete_older_than(mirror.pool(), cutoff, RETENTION_BATCH).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, %cutoff, "deleted old system metrics"),
                Err(error) => tracing::warn!(%error, "failed to delete old system metrics"),
            }
            previous = Some(current);
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::at;
    use sqlx::Row;

    fn snapshot(second: i64, cpu: Option<f64>) -> Snapshot {
        Snapshot {
            at: at(9, 0) + chrono::Duration::seconds(second),
            mirror_backlog: 7,
            reconcile_queue: 4,
            resident_bytes: Some(50 * 1024 * 1024),
            cpu_seconds: cpu,
        }
    }

    #[test]
    fn the_first_sample_has_no_cpu_row_and_the_next_has_the_share_of_one_core() {
        let first = snapshot(0, Some(10.0));
        let types = |rows: &[SystemMetricRecord]| {
            rows.iter()
                .map(|row| {
                    (
                        row.metric_type.clone(),
                        row.value,
                        row.unit.clone().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            types(&rows(None, &first, "op-0")),
            [
                ("mirror_backlog".into(), 7.0, "count".into()),
                ("reconcile_queue_depth".into(), 4.0, "count".into()),
                ("operator_memory_rss".into(), 52_428_800.0, "bytes".into()),
            ]
        );
        // 15 s of CPU over 60 s: a quarter of a core.
        let second = snapshot(60, Some(25.0));
        let later = rows(Some(&first), &second, "op-0");
        assert_eq!(
            types(&later)[3],
            ("operator_cpu".into(), 25.0, "percentage".into())
        );
        assert!(later.iter().all(|row| row.recorded_at == second.at));
        assert_eq!(
            later[0].tags,
            json!({"source": "sluice-operator", "replica": "op-0"})
        );
        assert_eq!(
            later[1].tags,
            json!({"source": "sluice-operator", "replica": "op-0", "controller": "run"})
        );
        // Without /proc (not Linux) only the backlog and the queue are left.
        let bare = Snapshot {
            resident_bytes: None,
            cpu_seconds: None,
            ..second.clone()
        };
        assert_eq!(rows(Some(&first), &bare, "op-0").len(), 2);
    }

    #[test]
    fn the_cutoff_is_the_retention_before_now_and_never_overflows() {
        let now = at(9, 0);
        assert_eq!(
            retention_cutoff(now, Duration::from_secs(30 * 86_400)),
            now - chrono::Duration::days(30)
        );
        assert_eq!(
            retention_cutoff(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn proc_texts_parse() {
        let status =
            "Name:\tsluice-operator\nVmPeak:\t  99999 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_resident_bytes(status), Some(51200 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tx\n"), None);
        let stat = "4242 (sluice op) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1"), None);
        #[cfg(target_os = "linux")]
        {
            let own = std::fs::read_to_string("/proc/self/status").unwrap();
            assert!(parse_resident_bytes(&own).unwrap() > 0);
            let own = std::fs::read_to_string("/proc/self/stat").unwrap();
            assert!(parse_cpu_seconds(&own).is_some());
        }
    }

    #[test]
    fn each_namespace_gets_run_rows_tagged_with_it_and_latency_only_when_runs_started() {
        let runs = [NamespaceRuns {
            namespace: "growth".into(),
            active: 2,
            queued: 3,
            started: 4,
            finished: 5,
            start_latency_ms: Some((1500.0, 9000.0)),
        }];
        let rows = run_rows(&runs, at(9, 0), "op-0");
        let seen: Vec<_> = rows
            .iter()
            .map(|row| (row.metric_type.as_str(), row.value))
            .collect();
        assert_eq!(
            seen,
            [
                ("runs_active", 2.0),
                ("runs_queued", 3.0),
                ("runs_started", 4.0),
                ("runs_finished", 5.0),
                ("run_start_latency_p50", 1500.0),
                ("run_start_latency_p95", 9000.0)
            ]
        );
        assert_eq!(rows[4].unit.as_deref(), Some("ms"));
        let none_started = NamespaceRuns {
            start_latency_ms: None,
            ..runs[0].clone()
        };
        assert_eq!(run_rows(&[none_started], at(9, 0), "op-0").len(), 4);
        assert!(rows.iter().all(|row| row.tags
            == json!({"source": "sluice-operator", "replica": "op-0", "namespace": "growth"})));
        assert!(run_rows(&[], at(9, 0), "op-0").is_empty());
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn runs_are_counted_per_namespace_within_the_interval(pool: PgPool) {
        use crate::mirror::RunPhase;
        use crate::mirror::fixtures::{execution, seed_runs};
        // Fixture runs start at 9:01 and finished ones end at 9:03.
        seed_runs(
            &pool,
            &[
                execution(1, RunPhase::Running),
                execution(2, RunPhase::Running),
                execution(3, RunPhase::Queued),
                execution(4, RunPhase::Pending),
                execution(5, RunPhase::Succeeded),
                execution(6, RunPhase::Failed),
            ],
        )
        .await;
        // The four started runs waited 1, 2, 3 and 4 s to start.
        sqlx::query(
            "UPDATE workflow_executions e SET created_at = e.started_at - r.n * interval '1 second'
             FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
                   FROM workflow_executions WHERE started_at IS NOT NULL) r
             WHERE e.id = r.id",
        )
        .execute(&pool)
        .await
        .unwrap();
        let counts = namespace_runs(&pool, at(9, 0), at(9, 2)).await.unwrap();
        assert_eq!(
            counts,
            [NamespaceRuns {
                namespace: "growth".into(),
                active: 2,
                queued: 2,
                started: 4,
                finished: 0,
                start_latency_ms: Some((2500.0, 3850.0)),
            }]
        );
        let later = namespace_runs(&pool, at(9, 2), at(9, 4)).await.unwrap();
        assert_eq!((later[0].started, later[0].finished), (0, 2));
        assert_eq!(later[0].start_latency_ms, None);
        // Nothing running, waiting or moving: no namespace.
        sqlx::query("UPDATE workflow_executions SET status = 'completed'")
            .execute(&pool)
            .await
            .unwrap();
        assert!(
            namespace_runs(&pool, at(10, 0), at(10, 1))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn samples_are_written_and_old_rows_go_in_batches(pool: PgPool) {
        let limits = crate::mirror::sanitize::Limits::default();
        let mut conn = pool.acquire().await.unwrap();
        let first = snapshot(0, Some(10.0));
        let second = snapshot(60, Some(25.0));
        for row in rows(None, &first, "op-0")
            .into_iter()
            .chain(rows(Some(&first), &second, "op-0"))
        {
            crate::mirror::audit::insert_system_metric(&mut conn, &row, &limits)
                .await
                .unwrap();
        }
        let written = sqlx::query(
            "SELECT metric_type, metric_value::float8 AS value, unit, tags->>'replica' AS replica
             FROM system_metrics ORDER BY recorded_at, metric_type",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get::<String, _>("metric_type"),
                row.get::<f64, _>("value"),
                row.get::<String, _>("unit"),
                row.get::<String, _>("replica"),
            )
        })
        .collect::<Vec<_>>();
        let op = |t: &str, v: f64, u: &str| (t.to_owned(), v, u.to_owned(), "op-0".to_owned());
        assert_eq!(
            written,
            [
                op("mirror_backlog", 7.0, "count"),
                op("operator_memory_rss", 52_428_800.0, "bytes"),
                op("reconcile_queue_depth", 4.0, "count"),
                op("mirror_backlog", 7.0, "count"),
                op("operator_cpu", 25.0, "percentage"),
                op("operator_memory_rss", 52_428_800.0, "bytes"),
                op("reconcile_queue_depth", 4.0, "count"),
            ]
        );

        // 25 old rows and the 7 above; batches of 10 take three statements.
        sqlx::query(
            "INSERT INTO system_metrics (metric_type, metric_value, unit, tags, recorded_at)
             SELECT 'mirror_backlog', n, 'count', '{}'::jsonb, $1 - n * interval '1 minute'
             FROM generate_series(1, 25) AS n",
        )
        .bind(at(9, 0) - chrono::Duration::days(31))
        .execute(&pool)
        .await
        .unwrap();
        let cutoff = retention_cutoff(at(9, 0), Duration::from_secs(30 * 86_400));
        assert_eq!(delete_older_than(&pool, cutoff, 10).await.unwrap(), 25);
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM system_metrics")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 7);
        assert_eq!(delete_older_than(&pool, cutoff, 10).await.unwrap(), 0);
    }
}

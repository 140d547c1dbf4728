//! Showback: `sluice-operator usage --from DAY --to DAY [--namespace NS]
//! [--output table|csv|json]`. One row per namespace and workflow with runs
//! in the range (a run counts on the UTC day it started, or was created if
//! it never started, as the daily metrics count it):
//!
//! - runs by outcome, node-seconds (runner pod time of finished runs, start
//!   to end) and data bytes (the runs' stored input and output JSON), from
//!   `workflow_executions`;
//! - the namespace's finished runs as `usage_records` holds them
//!   (`namespace_runs_recorded`, the same on each of its rows);
//! - the plan in force at the end of the range (`subscriptions`) and its
//!   limits (`billing_plans`); empty when the namespace had none.
//!
//! [`read_usage`] reads, [`render`] (pure) prints. Reads only.

use chrono::NaiveDate;
use serde::Serialize;
use sluice_crds::PlanLimits;
use sqlx::PgPool;

use crate::config::UsageFormat;

/// One namespace and workflow over the range.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UsageRow {
    pub namespace: String,
    pub workflow: String,
    /// The plan in force at the end of the range.
    pub plan: Option<String>,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Pending, queued or running.
    pub unfinished: i64,
    /// Runner seconds of the finished runs, to the millisecond.
    pub node_seconds: f64,
    pub data_bytes: i64,
    /// Finished runs of the whole namespace in `usage_records`.
    pub namespace_runs_recorded: i64,
    /// The plan's limits.
    pub limits: Option<PlanLimits>,
}

/// The rows of `from..=to` (UTC days), of one namespace or all, ordered by
/// namespace and workflow.
pub async fn read_usage(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    namespace: Option<&str>,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    type Row = (
        String,
        String,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        f64,
        i64,
        i64,
        Option<serde_json::Value>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH runs AS (
             SELECT ws.id AS workspace_id, ws.name AS namespace, w.name AS workflow,
                    count(*) FILTER (WHERE e.status = 'completed') AS succeeded,
                    count(*) FILTER (WHERE e.status = 'failed') AS failed,
                    count(*) FILTER (WHERE e.status = 'cancelled') AS cancelled,
                    count(*) FILTER (WHERE e.status NOT IN ('completed', 'failed', 'cancelled')) AS unfinished,
                    COALESCE(round(sum(extract(epoch FROM e.ended_at - e.started_at))
                        FILTER (WHERE e.status IN ('completed', 'failed', 'cancelled')
                                  AND e.started_at IS NOT NULL AND e.ended_at IS NOT NULL), 3), 0)::float8
                        AS node_seconds,
                    COALESCE(sum(COALESCE(octet_length(e.variables::text), 0)
                               + COALESCE(octet_length(e.result::text), 0)), 0)::int8 AS data_bytes
             FROM workflow_executions e
             JOIN workflows w ON w.id = e.workflow_id
             JOIN workspaces ws ON ws.id = w.workspace_id
             WHERE COALESCE(e.started_at, e.created_at) >= $1::date::timestamp AT TIME ZONE 'UTC'
               AND COALESCE(e.started_at, e.created_at) < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
               AND ($3::text IS NULL OR ws.name = $3)
             GROUP BY ws.id, ws.name, w.name
         ), recorded AS (
             SELECT workspace_id, sum(amount)::int8 AS runs
             FROM usage_records
             WHERE metric = 'workflow_executions'
               AND timestamp >= $1::date::timestamp AT TIME ZONE 'UTC'
               AND timestamp < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
             GROUP BY workspace_id
         ), plans AS (
             SELECT DISTINCT ON (s.workspace_id) s.workspace_id, s.plan_id, p.limits
             FROM subscriptions s
             LEFT JOIN LATERAL (
                 SELECT b.limits FROM billing_plans b WHERE b.name = s.plan_id
                 ORDER BY b.is_active DESC, b.created_at DESC LIMIT 1
             ) p ON TRUE
             WHERE s.current_period_start < ($2::date + 1)::timestamp AT TIME ZONE 'UTC'
               AND (s.current_period_end IS NULL
                    OR s.current_period_end >= ($2::date + 1)::timestamp AT TIME ZONE 'UTC')
             ORDER BY s.workspace_id, s.current_period_start DESC
         )
         SELECT r.namespace, r.workflow, p.plan_id, r.succeeded, r.failed, r.cancelled,
                r.unfinished, r.node_seconds, r.data_bytes, COALESCE(rec.runs, 0), p.limits
         FROM runs r
         LEFT JOIN recorded rec ON rec.workspace_id = r.workspace_id
         LEFT JOIN plans p ON p.workspace_id = r.workspace_id
         ORDER BY r.namespace, r.workflow",
    )
    .bind(from)
    .bind(to)
    .bind(namespace)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                namespace,
                workflow,
                plan,
                succeeded,
                failed,
                cancelled,
                unfinished,
                node_seconds,
                data_bytes,
                namespace_runs_recorded,
                limits,
            )| UsageRow {
                namespace,
                workflow,
                plan,
                succeeded,
                failed,
                cancelled,
                unfinished,
                node_seconds,
                data_bytes,
                namespace_runs_recorded,
                limits: limits.and_then(|limits| serde_json::from_value(limits).ok()),
            },
        )
        .collect())
}

/// The columns of the table and the CSV, in order.
pub const COLUMNS: [&str; 16] = [
    "namespace",
    "workflow",
    "plan",
    "succeeded",
    "failed",
    "cancelled",
    "unfinished",
    "node_seconds",
    "data_bytes",
    "namespace_runs_recorded",
    "limit_concurrent_runs",
    "limit_runs_per_day",
    "limit_runs_per_month",
    "limit_node_seconds_per_month",
    "limit_max_run_duration",
    "limit_max_input_bytes",
];

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// A row's cells, in [`COLUMNS`] order; an absent limit is empty.
pub fn cells(row: &UsageRow) -> Vec<String> {
    let limits = row.limits.clone().unwrap_or_default();
    vec![
        row.namespace.clone(),
        row.workflow.clone(),
        row.plan.clone().unwrap_or_default(),
        row.succeeded.to_string(),
        row.failed.to_string(),
        row.cancelled.to_string(),
        row.unfinished.to_string(),
        format!("{:.3}", row.node_seconds),
        row.data_bytes.to_string(),
        row.namespace_runs_recorded.to_string(),
        optional(limits.concurrent_runs),
        optional(limits.runs_per_day),
        optional(limits.runs_per_month),
        optional(limits.node_seconds_per_month),
        optional(limits.max_run_duration.map(String::from)),
        optional(limits.max_input_bytes),
    ]
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The rows printed as `format`, ending with a line break.
pub fn render(rows: &[UsageRow], format: UsageFormat) -> String {
    match format {
        UsageFormat::Json => {
            let mut text = serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into());
            text.push('\n');
            text
        }
        UsageFormat::Csv => {
            let mut lines = vec![COLUMNS.join(",")];
            lines.extend(rows.iter().map(|row| {
                cells(row)
                    .iter()
                    .map(|cell| csv_field(cell))
                    .collect::<Vec<_>>()
                    .join(",")
            }));
            lines.join("\n") + "\n"
        }
        UsageFormat::Table => {
            let header: Vec<String> = COLUMNS
                .iter()
                .map(|column| column.to_uppercase().replace('_', " "))
                .collect();
            let body: Vec<Vec<String>> = rows.iter().map(cells).collect();
            let widths: Vec<usize> = (0..COLUMNS.len())
                .map(|column| {
                    std::iter::once(&header)
                        .chain(&body)
                        .map(|line| line[column].len())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            let mut lines = vec![line(&header)];
            lines.extend(body.iter().map(|cells| line(cells)));
            lines.join("\n") + "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::*;
    use crate::mirror::records::*;
    use serde_json::json;

    fn day(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, day).unwrap()
    }

    /// Namespace growth (uid 1) on plan "team" from 7:30 on 2025-03-14;
    /// workflow triage-signup (uid 10) with four runs that day and one the
    /// day before; namespace billing (uid 2) with no plan and one run.
    async fn seed(pool: &PgPool) {
        let mut slow = execution(3, RunPhase::Failed);
        slow.ended_at = Some(at(9, 5));
        let mut early = execution(5, RunPhase::Succeeded);
        early.started_at = Some(at(9, 1) - chrono::Duration::days(1));
        early.ended_at = Some(at(9, 2) - chrono::Duration::days(1));
        seed_runs(
            pool,
            &[
                execution(1, RunPhase::Succeeded),
                execution(2, RunPhase::Cancelled),
                slow,
                execution(4, RunPhase::Running),
                early,
            ],
        )
        .await;
        let mut billing_workflow = workflow();
        billing_workflow.uid = uid(11);
        billing_workflow.workspace_uid = uid(2);
        billing_workflow.namespace = "billing".into();
        billing_workflow.name = "invoice".into();
        let mut invoice = execution(6, RunPhase::Succeeded);
        invoice.workflow_uid = uid(11);
        invoice.input = None;
        invoice.output = None;
        write(
            pool,
            &[
                MirrorEvent::Workspace(WorkspaceRecord {
                    uid: uid(2),
                    name: "billing".into(),
                    ..workspace()
                }),
                MirrorEvent::Workflow(billing_workflow),
                MirrorEvent::Execution(invoice),
                MirrorEvent::Plan(PlanRecord {
                    uid: uid(40),
                    name: "team".into(),
                    description: None,
                    limits: json!({"concurrentRuns": 3, "runsPerDay": 100, "maxRunDuration": "30m"}),
                    created_at: Some(at(7, 0)),
                    deleted: false,
                }),
                MirrorEvent::Subscription(SubscriptionRecord {
                    workspace_uid: uid(1),
                    namespace: "growth".into(),
                    plan: Some("team".into()),
                    at: at(7, 30),
                }),
            ],
        )
        .await;
    }

    fn columns(csv: &str) -> Vec<Vec<String>> {
        csv.lines()
            .map(|line| line.split(',').map(str::to_owned).collect())
            .collect()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn the_csv_has_each_namespace_and_workflow_column_by_column(pool: PgPool) {
        seed(&pool).await;
        let rows = read_usage(&pool, day(14), day(14), None).await.unwrap();
        let csv = render(&rows, UsageFormat::Csv);
        let lines = columns(&csv);
        assert_eq!(lines.len(), 3, "{csv}");
        assert_eq!(lines[0], COLUMNS);
        // Input {"email": "ada@example.com"} is 28 bytes as jsonb text,
        // output {"vip": true} 13.
        let input = r#"{"email": "ada@example.com"}"#.len() as i64;
        let output = r#"{"vip": true}"#.len() as i64;
        let growth = &lines[2];
        let expected_growth = [
            ("namespace", "growth".to_owned()),
            ("workflow", "triage-signup".to_owned()),
            ("plan", "team".to_owned()),
            ("succeeded", "1".to_owned()),
            ("failed", "1".to_owned()),
            ("cancelled", "1".to_owned()),
            ("unfinished", "1".to_owned()),
            // 9:01 → 9:03 twice and 9:01 → 9:05: 2 + 2 + 4 minutes.
            ("node_seconds", "480.000".to_owned()),
            ("data_bytes", (4 * input + 3 * output).to_string()),
            ("namespace_runs_recorded", "3".to_owned()),
            ("limit_concurrent_runs", "3".to_owned()),
            ("limit_runs_per_day", "100".to_owned()),
            ("limit_runs_per_month", String::new()),
            ("limit_node_seconds_per_month", String::new()),
            ("limit_max_run_duration", "30m".to_owned()),
            ("limit_max_input_bytes", String::new()),
        ];
        for (index, (column, value)) in expected_growth.iter().enumerate() {
            assert_eq!(lines[0][index], *column);
            assert_eq!(growth[index], *value, "growth, column {column}");
        }
        let billing = &lines[1];
        let expected_billing = [
            "billing", "invoice", "", "1", "0", "0", "0", "120.000", "0", "1", "", "", "", "", "",
            "",
        ];
        for (index, value) in expected_billing.iter().enumerate() {
            assert_eq!(billing[index], *value, "billing, column {}", COLUMNS[index]);
        }
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_range_and_a_namespace_narrow_the_rows(pool: PgPool) {
        seed(&pool).await;
        let both_days = read_usage(&pool, day(13), day(14), Some("growth"))
            .await
            .unwrap();
        assert_eq!(both_days.len(), 1);
        assert_eq!(both_days[0].succeeded, 2, "the run of the 13th too");
        assert_eq!(both_days[0].namespace_runs_recorded, 4);
        let before_the_plan = read_usage(&pool, day(13), day(13), None).await.unwrap();
        assert_eq!(before_the_plan.len(), 1);
        assert_eq!(
            before_the_plan[0].plan, None,
            "the plan started on the 14th"
        );
        assert!(
            read_usage(&pool, day(15), day(20), None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn json_and_table_carry_the_same_rows() {
        let row = UsageRow {
            namespace: "growth".into(),
            workflow: "triage".into(),
            plan: Some("team".into()),
            succeeded: 2,
            node_seconds: 1.5,
            limits: Some(PlanLimits {
                runs_per_day: Some(10),
                ..PlanLimits::default()
            }),
            ..UsageRow::default()
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(std::slice::from_ref(&row), UsageFormat::Json)).unwrap();
        assert_eq!(json[0]["namespace"], "growth");
        assert_eq!(json[0]["limits"]["runsPerDay"], 10);
        let table = render(&[row], UsageFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE  WORKFLOW  PLAN"), "{table}");
        assert!(lines[1].starts_with("growth     triage    team"), "{table}");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}

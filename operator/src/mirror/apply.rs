//! One batch of events → rows, inside the caller's transaction.
//!
//! Object events (workspaces, workflows, runs, …) are applied in arrival
//! order; node executions and log lines are then written in multi-row
//! statements (nodes first, so log lines can link to them); last, the daily
//! aggregates of runs that finished in this batch, or whose late node rows
//! arrived in it, are refreshed. Reordering within a batch is safe because
//! every write is an idempotent upsert that never moves state backwards.
//! This module neither commits nor retries: [`super::queue`] does.

use std::collections::BTreeSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{DeletedRecord, LogRecord, MirrorEvent, NodeExecutionRecord, ResourceKind};
use super::sanitize::Limits;
use super::{
    WriteError, audit, catalog, executions, failed, membership, metrics, node_types, quotas, sweep,
    workflows,
};

/// What a batch left unwritten.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Indexes of node and log events whose run has no row yet.
    pub orphans: Vec<usize>,
}

/// Applies one event that is not a node execution or log line.
async fn apply_object(
    conn: &mut PgConnection,
    event: &MirrorEvent,
    limits: &Limits,
) -> Result<(), WriteError> {
    match event {
        MirrorEvent::Workspace(workspace) => workflows::upsert_workspace(conn, workspace).await,
        MirrorEvent::Workflow(workflow) => workflows::apply_workflow(conn, workflow, limits).await,
        MirrorEvent::Schedule(schedule) => workflows::upsert_schedule(conn, schedule).await,
        MirrorEvent::Connection(connection) => {
            catalog::upsert_connection(conn, connection, limits).await
        }
        MirrorEvent::Execution(execution) => {
            executions::upsert_execution(conn, execution, limits).await?;
            executions::touch_webhook_endpoint(conn, execution).await?;
            executions::upsert_queue_entry(conn, execution).await
        }
        MirrorEvent::NodeDefinition(definition) => {
            catalog::upsert_node_definition(conn, definition, limits).await
        }
        MirrorEvent::NodeType(node_type) => {
            node_types::upsert_node_type(conn, node_type, limits).await
        }
        MirrorEvent::NodeTypeDeleted(uid) => node_types::delete_node_type(conn, *uid).await,
        MirrorEvent::Audit(entry) => audit::insert_audit(conn, entry, limits).await,
        MirrorEvent::SystemMetric(metric) => {
            audit::insert_system_metric(conn, metric, limits).await
        }
        MirrorEvent::Deleted(deleted) => apply_deleted(conn, *deleted).await,
        MirrorEvent::Inventory(inventory) => sweep::sweep_gone(conn, inventory).await,
        MirrorEvent::Membership(record) => membership::sync_membership(conn, record).await,
        MirrorEvent::Plan(plan) => quotas::upsert_plan(conn, plan).await,
        MirrorEvent::Subscription(subscription) => {
            quotas::sync_subscription(conn, subscription).await
        }
        MirrorEvent::NodeExecution(_) | MirrorEvent::Log(_) => Ok(()),
    }
}

/// A delete, whether watched or found by a resync's sweep.
pub(crate) async fn apply_deleted(
    conn: &mut PgConnection,
    deleted: DeletedRecord,
) -> Result<(), WriteError> {
    match deleted.kind {
        ResourceKind::Workspace => workflows::deactivate_workspace(conn, deleted.uid).await,
        ResourceKind::Workflow => workflows::archive_workflow(conn, deleted.uid).await,
        ResourceKind::WorkflowRun => executions::cancel_queue_entry(conn, deleted.uid).await,
        ResourceKind::Schedule => workflows::delete_schedule(conn, deleted.uid).await,
        ResourceKind::Connection => catalog::delete_connection(conn, deleted.uid).await,
    }
}

/// Applies a batch. Returns the node and log events that must wait for
/// their run's row.
pub async fn apply_events(
    conn: &mut PgConnection,
    events: &[&MirrorEvent],
    limits: &Limits,
) -> Result<Applied, WriteError> {
    let mut nodes: Vec<&NodeExecutionRecord> = Vec::new();
    let mut node_positions = Vec::new();
    let mut logs: Vec<&LogRecord> = Vec::new();
    let mut log_positions = Vec::new();
    let mut finished: BTreeSet<Uuid> = BTreeSet::new();
    for (index, event) in events.iter().enumerate() {
        match event {
            MirrorEvent::NodeExecution(node) => {
                nodes.push(node);
                node_positions.push(index);
            }
            MirrorEvent::Log(log) => {
                logs.push(log);
                log_positions.push(index);
            }
            other => {
                if let MirrorEvent::Execution(execution) = other
                    && execution.phase.is_finished()
                {
                    finished.insert(execution.uid);
                }
                apply_object(conn, other, limits).await?;
            }
        }
    }

    let mut applied = Applied::default();
    let node_orphans = executions::write_node_executions(conn, &nodes, limits).await?;
    let log_orphans = executions::write_logs(conn, &logs, limits).await?;
    applied
        .orphans
        .extend(node_orphans.into_iter().map(|index| node_positions[index]));
    applied
        .orphans
        .extend(log_orphans.into_iter().map(|index| log_positions[index]));
    applied.orphans.sort_unstable();

    if !nodes.is_empty() {
        // Node rows of runs that had already finished: their node metrics
        // change too.
        let runs: Vec<Uuid> = nodes
            .iter()
            .map(|node| node.execution_uid)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let late: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM workflow_executions
             WHERE id = ANY($1) AND status IN ('completed', 'failed', 'cancelled')",
        )
        .bind(&runs)
        .fetch_all(&mut *conn)
        .await
        .map_err(failed("workflow executions"))?;
        finished.extend(late);
    }
    let finished: Vec<Uuid> = finished.into_iter().collect();
    metrics::refresh_for_executions(conn, &finished).await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    /// Every table the mirror writes.
    const MIRRORED: &[&str] = &[
        "users",
        "workspaces",
        "workflows",
        "workflow_versions",
        "workflow_tags",
        "workflow_tag_assignments",
        "workflow_triggers",
        "workflow_schedules",
        "webhook_endpoints",
        "connections",
        "environment_variables",
        "node_definitions",
        "workflow_executions",
        "execution_queue",
        "node_executions",
        "execution_logs",
        "workflow_metrics",
        "node_metrics",
        "usage_records",
        "audit_logs",
        "system_metrics",
        "api_keys",
        "workspace_members",
        "user_roles",
        "user_role_assignments",
        "billing_plans",
        "subscriptions",
    ];

    async fn dump_all(pool: &PgPool) -> Vec<(String, Vec<String>)> {
        let mut tables = Vec::new();
        for table in MIRRORED {
            tables.push((table.to_string(), dump(pool, table).await));
        }
        tables
    }

    fn every_mapping() -> Vec<MirrorEvent> {
        let queued = execution(1, RunPhase::Queued);
        let running = execution(2, RunPhase::Running);
        let done = execution(3, RunPhase::Succeeded);
        let failed_run = execution(4, RunPhase::Failed);
        let mut created = workflow();
        created.created_by = Some("alice@example.com".into());
        created.triggers[0]
            .webhook
            .as_mut()
            .unwrap()
            .bearer_fingerprint = Some("sha256:0123456789abcdef".into());
        vec![
            MirrorEvent::Workspace(workspace()),
            MirrorEvent::Workflow(created),
            MirrorEvent::Membership(MembershipRecord {
                scope: Scope::Cluster,
                members: vec![MemberRecord {
                    workspace_uid: uid(1),
                    namespace: "growth".into(),
                    username: "alice@example.com".into(),
                    role: MemberRole::Admin,
                }],
                assignments: vec![("alice@example.com".into(), MemberRole::Admin)],
            }),
            MirrorEvent::Schedule(ScheduleRecord {
                uid: uid(20),
                workflow_uid: uid(10),
                name: "nightly".into(),
                cron: "30 2 * * *".into(),
                time_zone: "Europe/Berlin".into(),
                active: true,
                next_run_at: Some(at(1, 30)),
                last_run_at: Some(at(0, 30)),
                created_at: Some(at(8, 0)),
            }),
            MirrorEvent::Connection(ConnectionRecord {
                uid: uid(30),
                workspace_uid: uid(1),
                namespace: "growth".into(),
                name: "crm-api".into(),
                connection_type: "http".into(),
                config: json!({"baseUrl": "https://crm.example.com", "apiToken": "leaked"}),
                secret_name: Some("crm-api-token".into()),
                secret_fingerprint: Some("ab".repeat(32)),
                ready: true,
                verification: Verification::Verified,
                last_verified_at: Some(at(8, 30)),
                created_at: Some(at(8, 0)),
                oauth2: None,
            }),
            MirrorEvent::NodeDefinition(NodeDefinitionRecord {
                name: "http".into(),
                version: "1.0.0".into(),
                description: Some("HTTP request".into()),
                kind: "action".into(),
                category: Some("http".into()),
                icon: None,
                settings_schema: Some(json!({"type": "object"})),
                input_schema: None,
                output_schema: None,
                builtin: true,
                active: true,
            }),
            MirrorEvent::Execution(queued),
            MirrorEvent::Execution(running.clone()),
            MirrorEvent::Execution(done.clone()),
            MirrorEvent::Execution(failed_run.clone()),
            MirrorEvent::NodeExecution(node(&running, "lookup", 0, NodePhase::Running)),
            MirrorEvent::NodeExecution(node(&done, "lookup", 0, NodePhase::Failed)),
            MirrorEvent::NodeExecution(node(&done, "lookup", 1, NodePhase::Succeeded)),
            MirrorEvent::NodeExecution(node(&done, "tag-each[0]", 0, NodePhase::Succeeded)),
            MirrorEvent::NodeExecution(node(&done, "tag-each[1]", 0, NodePhase::Succeeded)),
            MirrorEvent::NodeExecution(node(&failed_run, "lookup", 0, NodePhase::Failed)),
            MirrorEvent::Log(log(&done, 1, b"GET https://crm.example.com")),
            MirrorEvent::Log(log(&done, 2, b"200 OK")),
            MirrorEvent::Audit(AuditRecord {
                resource_uid: uid(10),
                version: "42".into(),
                kind: ResourceKind::Workflow,
                name: "triage-signup".into(),
                namespace: "growth".into(),
                workspace_uid: Some(uid(1)),
                action: AuditAction::Updated,
                old_values: Some(json!({"spec": {"suspend": true}})),
                new_values: Some(json!({"spec": {"suspend": false}})),
                metadata: None,
                user: None,
                observed_at: at(8, 10),
            }),
            MirrorEvent::Plan(PlanRecord {
                uid: uid(40),
                name: "team".into(),
                description: None,
                limits: json!({"concurrentRuns": 3}),
                created_at: Some(at(7, 0)),
                deleted: false,
            }),
            MirrorEvent::Subscription(SubscriptionRecord {
                workspace_uid: uid(1),
                namespace: "growth".into(),
                plan: Some("team".into()),
                at: at(7, 30),
            }),
            MirrorEvent::SystemMetric(SystemMetricRecord {
                metric_type: "mirror_backlog".into(),
                value: 3.0,
                unit: Some("count".into()),
                tags: json!({"replica": "0"}),
                recorded_at: at(9, 0),
            }),
        ]
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn every_mapping_written_twice_gives_the_same_rows(pool: PgPool) {
        let events = every_mapping();
        write(&pool, &events).await;
        let once = dump_all(&pool).await;
        for (table, rows) in &once {
            assert!(
                !rows.is_empty(),
                "{table} has no rows: the test does not cover it"
            );
        }
        write(&pool, &events).await;
        assert_eq!(once, dump_all(&pool).await);
        // One event at a time, as a relist would replay them.
        for event in &events {
            write(&pool, std::slice::from_ref(event)).await;
        }
        assert_eq!(once, dump_all(&pool).await);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_batch_reports_nodes_and_logs_of_unknown_runs_as_orphans(pool: PgPool) {
        seed_runs(&pool, &[]).await;
        let unknown = execution(9, RunPhase::Running);
        let applied = write(
            &pool,
            &[
                MirrorEvent::NodeExecution(node(&unknown, "lookup", 0, NodePhase::Running)),
                MirrorEvent::Workspace(workspace()),
                MirrorEvent::Log(log(&unknown, 1, b"hello")),
            ],
        )
        .await;
        assert_eq!(applied.orphans, vec![0, 2]);
        let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM node_executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(nodes, 0);
    }
}

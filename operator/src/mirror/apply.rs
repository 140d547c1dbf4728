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
use super::{WriteError, audit, catalog, executions, failed, metrics, workflows};

/// What a batch left unwritten.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Indexes of node and log events whose run has no row yet.
    pub orphans: Vec<usize>,
}

/// Applies one event that is not a node execution or log line.
async fn apply_object(conn: &mut PgConnection, event: &MirrorEvent, limits: &Limits) -> Result<(), WriteError> {
    match event {
        MirrorEvent::Workspace(workspace) => workflows::upsert_workspace(conn, workspace).await,
        MirrorEvent::Workflow(workflow) => workflows::apply_workflow(conn, workflow, limits).await,
        MirrorEvent::Schedule(schedule) => workflows::upsert_schedule(conn, schedule).await,
        MirrorEvent::Connection(connection) => catalog::upsert_connection(conn, connection, limits).await,
        MirrorEvent::Execution(execution) => {
            executions::upsert_execution(conn, execution, limits).await?;
            executions::upsert_queue_entry(conn, execution).await
        }
        MirrorEvent::NodeDefinition(definition) => catalog::upsert_node_definition(conn, definition, limits).await,
        MirrorEvent::Audit(entry) => audit::insert_audit(conn, entry, limits).await,
        MirrorEvent::SystemMetric(metric) => audit::insert_system_metric(conn, metric, limits).await,
        MirrorEvent::Deleted(deleted) => apply_deleted(conn, *deleted).await,
        MirrorEvent::NodeExecution(_) | MirrorEvent::Log(_) => Ok(()),
    }
}

async fn apply_deleted(conn: &mut PgConnection, deleted: DeletedRecord) -> Result<(), WriteError> {
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
pub async fn apply_events(conn: &mut PgConnection, events: &[&MirrorEvent], limits: &Limits) -> Result<Applied, WriteError> {
    let mut nodes: Vec<NodeExecutionRecord> = Vec::new();
    let mut node_positions = Vec::new();
    let mut logs: Vec<LogRecord> = Vec::new();
    let mut log_positions = Vec::new();
    let mut finished: BTreeSet<Uuid> = BTreeSet::new();
    for (index, event) in events.iter().enumerate() {
        match event {
            MirrorEvent::NodeExecution(node) => {
                nodes.push(node.clone());
                node_positions.push(index);
            }
            MirrorEvent::Log(log) => {
                logs.push(log.clone());
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
    applied.orphans.extend(node_orphans.into_iter().map(|index| node_positions[index]));
    applied.orphans.extend(log_orphans.into_iter().map(|index| log_positions[index]));
    applied.orphans.sort_unstable();

    if !nodes.is_empty() {
        // Node rows of runs that had already finished: their node metrics
        // change too.
        let runs: Vec<Uuid> = nodes.iter().map(|node| node.execution_uid).collect::<BTreeSet<_>>().into_iter().collect();
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

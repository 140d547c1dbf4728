//! Runs, their queue entries, node executions and log lines.
//!
//! Node executions and log lines come in volume, so they are written in
//! batches: one multi-row `INSERT … SELECT FROM UNNEST($1::uuid[], …)` per
//! chunk (a handful of round trips for thousands of rows, one parameter per
//! column whatever the row count). Rows whose run is not mirrored yet are
//! not written but handed back as orphans for the queue to retry later.
//! Replays never move a row backwards: a finished run or node attempt keeps
//! its final state, and a `None` payload keeps the stored one.
//! No commits or retries here.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{ExecutionRecord, LogRecord, NodeExecutionRecord, NodePhase, RunPhase};
use super::sanitize::{self, Limits, Notes};
use super::{WriteError, failed, ids};

/// Rows per multi-row statement.
const CHUNK_ROWS: usize = 2_000;
/// Payload bytes per multi-row statement (large outputs get small chunks).
const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Creates or updates a run's row. A finished run is never overwritten by
/// an unfinished state.
pub async fn upsert_execution(
    conn: &mut PgConnection,
    execution: &ExecutionRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let mut notes = Notes::default();
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, status, started_at, ended_at,
                                         variables, result, error, trigger_data, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10::jsonb, $11, COALESCE($12, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             workflow_version = COALESCE(EXCLUDED.workflow_version, workflow_executions.workflow_version),
             status = EXCLUDED.status,
             started_at = COALESCE(EXCLUDED.started_at, workflow_executions.started_at),
             ended_at = COALESCE(EXCLUDED.ended_at, workflow_executions.ended_at),
             variables = COALESCE(EXCLUDED.variables, workflow_executions.variables),
             result = COALESCE(EXCLUDED.result, workflow_executions.result),
             error = COALESCE(EXCLUDED.error, workflow_executions.error),
             trigger_data = COALESCE(EXCLUDED.trigger_data, workflow_executions.trigger_data)
         WHERE workflow_executions.status NOT IN ('completed', 'failed', 'cancelled')
            OR EXCLUDED.status IN ('completed', 'failed', 'cancelled')",
    )
    .bind(execution.uid)
    .bind(execution.workflow_uid)
    .bind(execution.workflow_revision)
    .bind(execution.phase.as_status())
    .bind(execution.started_at)
    .bind(execution.ended_at)
    .bind(sanitize::json_opt(execution.input.as_ref(), limits, "variables", &mut notes))
    .bind(sanitize::json_opt(execution.output.as_ref(), limits, "result", &mut notes))
    .bind(
        execution
            .error
            .as_deref()
            .map(|error| sanitize::text(error, limits.text_cap_bytes, "error", &mut notes)),
    )
    .bind(sanitize::json_opt(execution.trigger.as_ref(), limits, "trigger_data", &mut notes))
    .bind(ids::SYSTEM_USER_ID)
    .bind(execution.created_at)
    .execute(conn)
    .await
    .map_err(failed("workflow execution"))?;
    Ok(())
}

/// Keeps the run's `execution_queue` entry in step with its phase: created
/// while Pending/Queued (`pending`), then `processing`, then the outcome
/// (`completed`, `failed`, `cancelled`). A run that was never seen queued
/// gets no entry.
pub async fn upsert_queue_entry(
    conn: &mut PgConnection,
    execution: &ExecutionRecord,
) -> Result<(), WriteError> {
    let query = match execution.phase {
        RunPhase::Pending | RunPhase::Queued => sqlx::query(
            "INSERT INTO execution_queue (id, workflow_id, execution_id, status, priority, payload, created_at)
             VALUES ($1, $2, $3, 'pending', $4, $5, COALESCE($6, CURRENT_TIMESTAMP))
             ON CONFLICT (execution_id) DO UPDATE SET priority = EXCLUDED.priority
             WHERE execution_queue.status = 'pending'",
        )
        .bind(ids::queue_entry_id(execution.uid))
        .bind(execution.workflow_uid)
        .bind(execution.uid)
        .bind(execution.priority)
        .bind(json!({"run": execution.name, "priority": execution.priority}))
        .bind(execution.created_at),
        RunPhase::Running => sqlx::query(
            "UPDATE execution_queue
             SET status = 'processing', worker_id = $2, started_at = COALESCE(started_at, $3)
             WHERE execution_id = $1 AND status = 'pending'",
        )
        .bind(execution.uid)
        .bind(execution.job_name.as_deref().map(|name| sanitize::varchar(name, 255)))
        .bind(execution.started_at),
        RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled => sqlx::query(
            "UPDATE execution_queue
             SET status = $2, worker_id = COALESCE(worker_id, $3), started_at = COALESCE(started_at, $4),
                 ended_at = COALESCE(ended_at, $5), error = COALESCE(error, $6)
             WHERE execution_id = $1 AND status IN ('pending', 'processing')",
        )
        .bind(execution.uid)
        .bind(execution.phase.as_status())
        .bind(execution.job_name.as_deref().map(|name| sanitize::varchar(name, 255)))
        .bind(execution.started_at)
        .bind(execution.ended_at)
        .bind(
            execution
                .error
                .as_deref()
                .map(|error| sanitize::text(error, 4096, "error", &mut Notes::default())),
        ),
    };
    query
        .execute(conn)
        .await
        .map_err(failed("execution queue entry"))?;
    Ok(())
}

/// A deleted run keeps its rows; a queue entry still waiting is cancelled.
pub async fn cancel_queue_entry(
    conn: &mut PgConnection,
    execution_uid: Uuid,
) -> Result<(), WriteError> {
    sqlx::query(
        "UPDATE execution_queue SET status = 'cancelled'
         WHERE execution_id = $1 AND status IN ('pending', 'processing')",
    )
    .bind(execution_uid)
    .execute(conn)
    .await
    .map_err(failed("execution queue entry"))?;
    Ok(())
}

fn node_is_final(phase: NodePhase) -> bool {
    matches!(
        phase,
        NodePhase::Succeeded | NodePhase::Failed | NodePhase::Skipped | NodePhase::Cancelled
    )
}

/// Folds a later event of the same attempt into an earlier one, the way the
/// upsert would: present fields win, a final phase is never undone.
fn merge_node(earlier: &mut NodeExecutionRecord, later: &NodeExecutionRecord) {
    if !node_is_final(earlier.phase) || node_is_final(later.phase) {
        earlier.phase = later.phase;
        earlier.node_type.clone_from(&later.node_type);
    }
    let take = |into: &mut Option<Value>, from: &Option<Value>| {
        if from.is_some() {
            into.clone_from(from);
        }
    };
    take(&mut earlier.input, &later.input);
    take(&mut earlier.output, &later.output);
    if later.started_at.is_some() {
        earlier.started_at = later.started_at;
    }
    if later.ended_at.is_some() {
        earlier.ended_at = later.ended_at;
    }
    if later.error.is_some() {
        earlier.error.clone_from(&later.error);
    }
    if later.worker_id.is_some() {
        earlier.worker_id.clone_from(&later.worker_id);
    }
}

/// Of the given run ids, those with a `workflow_executions` row.
async fn existing_executions(
    conn: &mut PgConnection,
    execution_uids: &[Uuid],
) -> Result<HashSet<Uuid>, WriteError> {
    let found: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM workflow_executions WHERE id = ANY($1)")
            .bind(execution_uids)
            .fetch_all(conn)
            .await
            .map_err(failed("workflow executions"))?;
    Ok(found.into_iter().collect())
}

/// Column arrays of one multi-row node statement.
#[derive(Default)]
struct NodeColumns {
    ids: Vec<Uuid>,
    execution_ids: Vec<Uuid>,
    node_ids: Vec<String>,
    node_types: Vec<String>,
    statuses: Vec<&'static str>,
    started: Vec<Option<DateTime<Utc>>>,
    ended: Vec<Option<DateTime<Utc>>>,
    inputs: Vec<Option<String>>,
    outputs: Vec<Option<String>>,
    errors: Vec<Option<String>>,
    attempts: Vec<i32>,
    workers: Vec<Option<String>>,
    notes: Vec<Option<String>>,
    bytes: usize,
}

impl NodeColumns {
    fn push(&mut self, node: &NodeExecutionRecord, limits: &Limits) {
        let mut notes = Notes::default();
        let node_id = sanitize::varchar(&node.node_id, 255);
        let input = sanitize::json_opt(node.input.as_ref(), limits, "input", &mut notes);
        let output = sanitize::json_opt(node.output.as_ref(), limits, "output", &mut notes);
        let error = node
            .error
            .as_deref()
            .map(|error| sanitize::text(error, limits.text_cap_bytes, "error", &mut notes));
        self.bytes +=
            input.as_ref().map_or(0, String::len) + output.as_ref().map_or(0, String::len);
        self.ids.push(ids::node_execution_id(
            node.execution_uid,
            &node.node_id,
            node.attempt,
        ));
        self.execution_ids.push(node.execution_uid);
        self.node_ids.push(node_id);
        self.node_types
            .push(sanitize::varchar(&node.node_type, 255));
        self.statuses.push(node.phase.as_status());
        self.started.push(node.started_at);
        self.ended.push(node.ended_at);
        self.inputs.push(input);
        self.outputs.push(output);
        self.errors.push(error);
        self.attempts.push(node.attempt);
        self.workers.push(
            node.worker_id
                .as_deref()
                .map(|worker| sanitize::varchar(worker, 255)),
        );
        self.notes
            .push(notes.to_json().map(|notes| notes.to_string()));
    }

    fn is_full(&self) -> bool {
        self.ids.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES
    }

    async fn write(&self, conn: &mut PgConnection) -> Result<(), WriteError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO node_executions (id, execution_id, node_id, node_type, status, started_at, ended_at,
                                         input_data, output_data, error, retry_count, worker_id, attempt,
                                         payload_notes)
             SELECT n.id, n.execution_id, n.node_id, n.node_type, n.status, n.started_at, n.ended_at,
                    n.input_data::jsonb, n.output_data::jsonb, n.error, n.attempt, n.worker_id, n.attempt,
                    n.payload_notes::jsonb
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::text[],
                         $13::text[])
                  AS n(id, execution_id, node_id, node_type, status, started_at, ended_at, input_data,
                       output_data, error, attempt, worker_id, payload_notes)
             ON CONFLICT (execution_id, node_id, attempt) DO UPDATE SET
                 node_type = EXCLUDED.node_type,
                 status = EXCLUDED.status,
                 started_at = COALESCE(EXCLUDED.started_at, node_executions.started_at),
                 ended_at = COALESCE(EXCLUDED.ended_at, node_executions.ended_at),
                 input_data = COALESCE(EXCLUDED.input_data, node_executions.input_data),
                 output_data = COALESCE(EXCLUDED.output_data, node_executions.output_data),
                 error = COALESCE(EXCLUDED.error, node_executions.error),
                 worker_id = COALESCE(EXCLUDED.worker_id, node_executions.worker_id),
                 payload_notes = CASE
                     WHEN node_executions.payload_notes IS NULL THEN EXCLUDED.payload_notes
                     WHEN EXCLUDED.payload_notes IS NULL THEN node_executions.payload_notes
                     ELSE node_executions.payload_notes || EXCLUDED.payload_notes END
             WHERE node_executions.status NOT IN ('completed', 'failed', 'skipped', 'cancelled')
                OR EXCLUDED.status IN ('completed', 'failed', 'skipped', 'cancelled')",
        )
        .bind(&self.ids)
        .bind(&self.execution_ids)
        .bind(&self.node_ids)
        .bind(&self.node_types)
        .bind(&self.statuses)
        .bind(&self.started)
        .bind(&self.ended)
        .bind(&self.inputs)
        .bind(&self.outputs)
        .bind(&self.errors)
        .bind(&self.attempts)
        .bind(&self.workers)
        .bind(&self.notes)
        .execute(conn)
        .await
        .map_err(failed("node executions"))?;
        Ok(())
    }
}

/// Writes node executions in multi-row statements. Returns the indexes
/// (into `nodes`) of those whose run has no row yet; they are not written.
pub async fn write_node_executions(
    conn: &mut PgConnection,
    nodes: &[&NodeExecutionRecord],
    limits: &Limits,
) -> Result<Vec<usize>, WriteError> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut runs: Vec<Uuid> = nodes.iter().map(|node| node.execution_uid).collect();
    runs.sort_unstable();
    runs.dedup();
    let present = existing_executions(conn, &runs).await?;

    // One row per (run, node, attempt) per statement: ON CONFLICT DO UPDATE
    // cannot touch a row twice in one command.
    let mut merged: Vec<Cow<'_, NodeExecutionRecord>> = Vec::with_capacity(nodes.len());
    let mut position: HashMap<(Uuid, &str, i32), usize> = HashMap::with_capacity(nodes.len());
    let mut orphans = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        if !present.contains(&node.execution_uid) {
            orphans.push(index);
            continue;
        }
        match position.entry((node.execution_uid, node.node_id.as_str(), node.attempt)) {
            std::collections::hash_map::Entry::Occupied(slot) => {
                merge_node(merged[*slot.get()].to_mut(), node)
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(merged.len());
                merged.push(Cow::Borrowed(*node));
            }
        }
    }

    let mut columns = NodeColumns::default();
    for node in &merged {
        columns.push(node, limits);
        if columns.is_full() {
            columns.write(conn).await?;
            columns = NodeColumns::default();
        }
    }
    columns.write(conn).await?;
    Ok(orphans)
}

/// Writes log lines in multi-row statements, linked to their node attempt
/// when that row exists. Returns the indexes of lines whose run has no row
/// yet; they are not written.
pub async fn write_logs(
    conn: &mut PgConnection,
    logs: &[&LogRecord],
    limits: &Limits,
) -> Result<Vec<usize>, WriteError> {
    if logs.is_empty() {
        return Ok(Vec::new());
    }
    let mut runs: Vec<Uuid> = logs.iter().map(|log| log.execution_uid).collect();
    runs.sort_unstable();
    runs.dedup();
    let present = existing_executions(conn, &runs).await?;

    let mut orphans = Vec::new();
    let mut seen = HashSet::with_capacity(logs.len());
    let mut rows = LogColumns::default();
    for (index, log) in logs.iter().enumerate() {
        if !present.contains(&log.execution_uid) {
            orphans.push(index);
            continue;
        }
        if !seen.insert((log.execution_uid, log.seq)) {
            continue; // the same line twice: the first one is the line
        }
        rows.push(log, limits);
        if rows.ids.len() >= CHUNK_ROWS || rows.bytes >= CHUNK_BYTES {
            rows.write(conn).await?;
            rows = LogColumns::default();
        }
    }
    rows.write(conn).await?;
    Ok(orphans)
}

#[derive(Default)]
struct LogColumns {
    ids: Vec<Uuid>,
    execution_ids: Vec<Uuid>,
    node_execution_ids: Vec<Option<Uuid>>,
    levels: Vec<&'static str>,
    messages: Vec<String>,
    metadata: Vec<Option<String>>,
    logged_at: Vec<DateTime<Utc>>,
    seqs: Vec<i64>,
    bytes: usize,
}

impl LogColumns {
    fn push(&mut self, log: &LogRecord, limits: &Limits) {
        let mut notes = Notes::default();
        let message = sanitize::bytes_text(
            &log.message,
            limits.log_line_cap_bytes,
            "message",
            &mut notes,
        );
        let mut metadata = log.metadata.clone();
        if let Some((node_id, attempt)) = &log.node {
            let object = match metadata.take() {
                Some(Value::Object(object)) => object,
                Some(other) => serde_json::Map::from_iter([("value".to_owned(), other)]),
                None => serde_json::Map::new(),
            };
            let mut object = object;
            object.insert("node".into(), json!(node_id));
            object.insert("attempt".into(), json!(attempt));
            metadata = Some(Value::Object(object));
        }
        let metadata = notes.merge_into(metadata);
        let mut json_notes = Notes::default();
        let metadata = sanitize::json_opt(metadata.as_ref(), limits, "metadata", &mut json_notes);
        self.bytes += message.len() + metadata.as_ref().map_or(0, String::len);
        self.ids.push(ids::log_id(log.execution_uid, log.seq));
        self.execution_ids.push(log.execution_uid);
        self.node_execution_ids
            .push(log.node.as_ref().map(|(node_id, attempt)| {
                ids::node_execution_id(log.execution_uid, node_id, *attempt)
            }));
        self.levels.push(log.level.as_str());
        self.messages.push(message);
        self.metadata.push(metadata);
        self.logged_at.push(log.logged_at);
        self.seqs.push(log.seq);
    }

    async fn write(&self, conn: &mut PgConnection) -> Result<(), WriteError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        // The node link is filled in when the node row exists (now or on a
        // replay); the line itself is never rewritten.
        sqlx::query(
            "INSERT INTO execution_logs (id, execution_id, node_execution_id, level, message, metadata,
                                        created_at, seq)
             SELECT l.id, l.execution_id, node.id, l.level, l.message, l.metadata::jsonb, l.created_at, l.seq
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::int8[])
                  AS l(id, execution_id, node_execution_id, level, message, metadata, created_at, seq)
             LEFT JOIN node_executions node ON node.id = l.node_execution_id
             ON CONFLICT (execution_id, seq) DO UPDATE SET node_execution_id = EXCLUDED.node_execution_id
             WHERE execution_logs.node_execution_id IS NULL AND EXCLUDED.node_execution_id IS NOT NULL",
        )
        .bind(&self.ids)
        .bind(&self.execution_ids)
        .bind(&self.node_execution_ids)
        .bind(&self.levels)
        .bind(&self.messages)
        .bind(&self.metadata)
        .bind(&self.logged_at)
        .bind(&self.seqs)
        .execute(conn)
        .await
        .map_err(failed("execution logs"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use serde_json::{Value, json};
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    async fn queue_status(pool: &PgPool) -> String {
        sqlx::query_scalar("SELECT status FROM execution_queue")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    async fn run_status(pool: &PgPool) -> String {
        sqlx::query_scalar("SELECT status FROM workflow_executions")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_run_moves_through_the_queue_and_never_back(pool: PgPool) {
        seed_runs(&pool, &[execution(1, RunPhase::Queued)]).await;
        assert_eq!(
            (run_status(&pool).await, queue_status(&pool).await),
            ("queued".into(), "pending".into())
        );
        write(
            &pool,
            &[MirrorEvent::Execution(execution(1, RunPhase::Running))],
        )
        .await;
        assert_eq!(queue_status(&pool).await, "processing");
        let worker: String = sqlx::query_scalar("SELECT worker_id FROM execution_queue")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(worker, "triage-signup-1-job");
        write(
            &pool,
            &[MirrorEvent::Execution(execution(1, RunPhase::Succeeded))],
        )
        .await;
        assert_eq!(
            (run_status(&pool).await, queue_status(&pool).await),
            ("completed".into(), "completed".into())
        );

        // Late events of earlier phases change nothing.
        write(
            &pool,
            &[MirrorEvent::Execution(execution(1, RunPhase::Running))],
        )
        .await;
        write(
            &pool,
            &[MirrorEvent::Execution(execution(1, RunPhase::Queued))],
        )
        .await;
        assert_eq!(
            (run_status(&pool).await, queue_status(&pool).await),
            ("completed".into(), "completed".into())
        );
        let result: Value = sqlx::query_scalar("SELECT result FROM workflow_executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(result, json!({"vip": true}));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn durations_are_computed_on_insert_and_update(pool: PgPool) {
        let running = execution(1, RunPhase::Running);
        seed_runs(&pool, std::slice::from_ref(&running)).await;
        write(
            &pool,
            &[MirrorEvent::NodeExecution(node(
                &running,
                "lookup",
                0,
                NodePhase::Running,
            ))],
        )
        .await;
        let durations = || async {
            let run: Option<i64> =
                sqlx::query_scalar("SELECT duration_ms FROM workflow_executions")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let node: Option<i64> = sqlx::query_scalar("SELECT duration_ms FROM node_executions")
                .fetch_one(&pool)
                .await
                .unwrap();
            (run, node)
        };
        assert_eq!(durations().await, (None, None));

        let mut finished_node = node(&running, "lookup", 0, NodePhase::Succeeded);
        finished_node.ended_at = Some(at(9, 1) + chrono::Duration::milliseconds(1_234));
        write(
            &pool,
            &[
                MirrorEvent::Execution(execution(1, RunPhase::Succeeded)),
                MirrorEvent::NodeExecution(finished_node),
            ],
        )
        .await;
        // Run: 09:01 → 09:03; node: 09:01 → 09:01:01.234.
        assert_eq!(durations().await, (Some(120_000), Some(1_234)));

        // Inserted already finished.
        let done = execution(2, RunPhase::Failed);
        write(&pool, &[MirrorEvent::Execution(done)]).await;
        let inserted: i64 =
            sqlx::query_scalar("SELECT duration_ms FROM workflow_executions WHERE id = $1")
                .bind(uid(1002))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(inserted, 120_000);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn node_attempts_and_for_each_items_are_separate_rows(pool: PgPool) {
        let run = execution(1, RunPhase::Running);
        seed_runs(&pool, std::slice::from_ref(&run)).await;
        let mut start = node(&run, "lookup", 0, NodePhase::Running);
        start.output = None;
        let mut finish = node(&run, "lookup", 0, NodePhase::Failed);
        finish.input = None;
        finish.error = Some("timeout".into());
        write(
            &pool,
            &[
                MirrorEvent::NodeExecution(start.clone()),
                MirrorEvent::NodeExecution(finish.clone()),
                MirrorEvent::NodeExecution(node(&run, "lookup", 1, NodePhase::Succeeded)),
                MirrorEvent::NodeExecution(node(&run, "tag-each[0]", 0, NodePhase::Succeeded)),
                MirrorEvent::NodeExecution(node(&run, "tag-each[1]", 0, NodePhase::Succeeded)),
                // A replayed start after the finish, in the same batch.
                MirrorEvent::NodeExecution(start.clone()),
            ],
        )
        .await;
        // And again in a later batch.
        write(&pool, &[MirrorEvent::NodeExecution(start)]).await;

        let rows: Vec<(String, i32, i32, String, Option<Value>, Option<String>)> = sqlx::query_as(
            "SELECT node_id, attempt, retry_count, status, input_data, error FROM node_executions
             ORDER BY node_id, attempt",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let input = Some(json!({"url": "https://crm.example.com"}));
        assert_eq!(
            rows,
            [
                (
                    "lookup".into(),
                    0,
                    0,
                    "failed".into(),
                    input.clone(),
                    Some("timeout".into())
                ),
                (
                    "lookup".into(),
                    1,
                    1,
                    "completed".into(),
                    input.clone(),
                    None
                ),
                (
                    "tag-each[0]".into(),
                    0,
                    0,
                    "completed".into(),
                    input.clone(),
                    None
                ),
                ("tag-each[1]".into(), 0, 0, "completed".into(), input, None),
            ]
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn logs_link_to_their_node_once_it_exists(pool: PgPool) {
        let run = execution(1, RunPhase::Running);
        seed_runs(&pool, std::slice::from_ref(&run)).await;
        write(
            &pool,
            &[MirrorEvent::Log(log(&run, 1, b"before the node row"))],
        )
        .await;
        write(
            &pool,
            &[
                MirrorEvent::NodeExecution(node(&run, "lookup", 0, NodePhase::Running)),
                MirrorEvent::Log(log(&run, 1, b"before the node row")),
                MirrorEvent::Log(log(&run, 2, b"after")),
                MirrorEvent::Log(log(&run, 2, b"after")),
            ],
        )
        .await;
        let rows: Vec<(i64, String, bool, Value)> = sqlx::query_as(
            "SELECT seq, message, node_execution_id IS NOT NULL, metadata FROM execution_logs ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let metadata = json!({"stream": "stdout", "node": "lookup", "attempt": 0});
        assert_eq!(
            rows,
            [
                (1, "before the node row".into(), true, metadata.clone()),
                (2, "after".into(), true, metadata)
            ]
        );
    }

    fn nested(depth: usize) -> Value {
        let mut value = json!("bottom");
        for _ in 0..depth {
            value = json!([value]);
        }
        value
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn bad_payloads_are_stored_without_failing_the_batch(pool: PgPool) {
        let run = execution(1, RunPhase::Running);
        seed_runs(&pool, std::slice::from_ref(&run)).await;

        let mut nul = node(&run, "nul\0node", 0, NodePhase::Failed);
        nul.input = Some(json!({"key\u{0}": "value\u{0}"}));
        nul.error = Some("exit\0code".into());
        let mut huge = node(&run, "huge", 0, NodePhase::Succeeded);
        huge.output = Some(json!({"body": "x".repeat(10 * 1024 * 1024)}));
        let mut deep = node(&run, "deep", 0, NodePhase::Succeeded);
        deep.output = Some(nested(1_000));
        let fine = node(&run, "fine", 0, NodePhase::Succeeded);
        let bad_log = log(&run, 1, b"bytes \xc3\x28 and a nul \0 here");
        let good_log = log(&run, 2, b"fine");
        write(
            &pool,
            &[
                MirrorEvent::NodeExecution(nul),
                MirrorEvent::NodeExecution(huge),
                MirrorEvent::NodeExecution(deep),
                MirrorEvent::NodeExecution(fine),
                MirrorEvent::Log(bad_log),
                MirrorEvent::Log(good_log),
            ],
        )
        .await;

        let rows: Vec<(String, Option<Value>, Option<Value>, Option<String>, Option<Value>)> = sqlx::query_as(
            "SELECT node_id, input_data, output_data, error, payload_notes FROM node_executions ORDER BY node_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 4);
        let by_name = |name: &str| rows.iter().find(|row| row.0 == name).unwrap().clone();

        let (_, input, _, error, notes) = by_name(r"nul\u0000node");
        assert_eq!(input, Some(json!({r"key\u0000": r"value\u0000"})));
        assert_eq!(error.as_deref(), Some(r"exit\u0000code"));
        assert_eq!(notes, Some(json!({"nulEscaped": 3})));

        let (_, _, output, _, notes) = by_name("huge");
        let output = output.unwrap();
        assert_eq!(output["$sluice"]["truncated"], json!(true));
        assert_eq!(output["$sluice"]["capBytes"], json!(1024 * 1024));
        assert_eq!(
            output["$sluice"]["originalBytes"],
            json!(10 * 1024 * 1024 + 11)
        );
        assert_eq!(
            notes,
            Some(
                json!({"truncated": [{"field": "output", "originalBytes": 10 * 1024 * 1024 + 11, "capBytes": 1024 * 1024}]})
            )
        );

        let (_, _, output, _, notes) = by_name("deep");
        let mut inner = output.unwrap();
        for _ in 0..64 {
            inner = inner[0].clone();
        }
        assert_eq!(inner["$sluice"]["depthCapped"], json!(true));
        assert_eq!(notes, Some(json!({"depthCapped": ["output"]})));

        assert_eq!(by_name("fine").4, None, "clean rows carry no notes");

        let logs: Vec<(String, Value)> =
            sqlx::query_as("SELECT message, metadata FROM execution_logs ORDER BY seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(logs[0].0, "bytes \u{fffd}( and a nul \\u0000 here");
        assert_eq!(
            logs[0].1["sluice"],
            json!({"invalidUtf8": ["message"], "nulEscaped": 1})
        );
        assert_eq!(logs[1].0, "fine");
    }
}

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
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{ExecutionRecord, LogRecord, NodeExecutionRecord, NodePhase, RunPhase};
use super::sanitize::{self, Limits, Notes, Truncation};
use super::{WriteError, failed, ids};

/// Rows per multi-row statement.
const CHUNK_ROWS: usize = 2_000;
/// Payload bytes per multi-row statement (large outputs get small chunks).
const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Creates or updates a run's row (after the parent rows it carries, where
/// they are missing). A finished run is never overwritten by an unfinished
/// state.
pub async fn upsert_execution(
    conn: &mut PgConnection,
    execution: &ExecutionRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    if let Some(parent) = &execution.parent {
        super::workflows::ensure_workflow(conn, parent, limits).await?;
    }
    let creator =
        super::users::ensure_user_or_system(conn, execution.created_by.as_deref()).await?;
    let mut notes = Notes::default();
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, status, started_at, ended_at,
                                         variables, result, error, trigger_data, created_by, created_at, name)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10::jsonb, $11, COALESCE($12, CURRENT_TIMESTAMP), $14)
         ON CONFLICT (id) DO UPDATE SET
             name = COALESCE(workflow_executions.name, EXCLUDED.name),
             workflow_version = COALESCE(EXCLUDED.workflow_version, workflow_executions.workflow_version),
             status = EXCLUDED.status,
             started_at = COALESCE(EXCLUDED.started_at, workflow_executions.started_at),
             ended_at = COALESCE(EXCLUDED.ended_at, workflow_executions.ended_at),
             variables = COALESCE(EXCLUDED.variables, workflow_executions.variables),
             result = COALESCE(EXCLUDED.result, workflow_executions.result),
             error = COALESCE(EXCLUDED.error, workflow_executions.error),
             trigger_data = COALESCE(EXCLUDED.trigger_data, workflow_executions.trigger_data),
             created_by = CASE WHEN $13 THEN EXCLUDED.created_by ELSE workflow_executions.created_by END
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
    .bind(creator)
    .bind(execution.created_at)
    .bind(execution.created_by.is_some())
    .bind(sanitize::varchar(&execution.name, 253))
    .execute(conn)
    .await
    .map_err(failed("workflow execution"))?;
    Ok(())
}

/// Notes a payload the runner already shortened (its reported copy is a
/// marker), so the row says that what it stores is not whole.
fn note_runner_cut(value: Option<&Value>, field: &'static str, notes: &mut Notes) {
    if let Some((original_bytes, cap_bytes)) = value.and_then(sluice_runner::report::shortened) {
        notes.truncated.push(Truncation {
            field,
            original_bytes,
            cap_bytes,
        });
    }
}

/// The outputs of `nodes` of run `execution_uid` as stored whole: each
/// node's last attempt when it succeeded, left out when it did not, when
/// sanitising changed anything in its row, or when the runner's cap had
/// replaced the output with a marker (noted in the row; rows of older
/// runners are recognised by their marker's shape).
pub async fn stored_node_outputs(
    pool: &sqlx::PgPool,
    execution_uid: Uuid,
    nodes: &[String],
) -> Result<BTreeMap<String, Value>, sqlx::Error> {
    let rows: Vec<(String, String, Option<Value>, bool)> = sqlx::query_as(
        "SELECT DISTINCT ON (node_id) node_id, status::text, output_data, payload_notes IS NULL
         FROM node_executions WHERE execution_id = $1 AND node_id = ANY($2)
         ORDER BY node_id, attempt DESC",
    )
    .bind(execution_uid)
    .bind(nodes)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(node, status, output, clean)| {
            let output = output.filter(|_| clean && status == "completed")?;
            let capped = output.get("truncated") == Some(&Value::Bool(true))
                && output.get("capBytes").is_some();
            (!capped).then_some((node, output))
        })
        .collect())
}

/// A run a webhook started marks its endpoint used when the run was made.
pub async fn touch_webhook_endpoint(
    conn: &mut PgConnection,
    execution: &ExecutionRecord,
) -> Result<(), WriteError> {
    let Some(trigger) = &execution.trigger else {
        return Ok(());
    };
    let (Some("Webhook"), Some(name)) = (trigger["type"].as_str(), trigger["source"].as_str())
    else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE webhook_endpoints SET last_used_at = COALESCE($2, CURRENT_TIMESTAMP)
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < COALESCE($2, CURRENT_TIMESTAMP))",
    )
    .bind(ids::webhook_endpoint_id(execution.workflow_uid, name))
    .bind(execution.created_at)
    .execute(conn)
    .await
    .map_err(failed("webhook endpoint"))?;
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
        note_runner_cut(node.input.as_ref(), "input", &mut notes);
        note_runner_cut(node.output.as_ref(), "output", &mut notes);
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
        .execute(&mut *conn)
        .await
        .map_err(failed("node executions"))?;
        // The runner reports only a node's last attempt as finished: an
        // earlier attempt still open when a later one of the same node
        // started failed and was retried.
        sqlx::query(
            "UPDATE node_executions AS e
                SET status = 'failed',
                    ended_at = COALESCE(e.ended_at, n.started_at),
                    error = COALESCE(e.error, 'the attempt failed and the node was retried')
               FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::timestamptz[])
                    AS n(execution_id, node_id, attempt, started_at)
              WHERE n.attempt > 0
                AND e.execution_id = n.execution_id AND e.node_id = n.node_id
                AND e.attempt < n.attempt
                AND e.status NOT IN ('completed', 'failed', 'skipped', 'cancelled')",
        )
        .bind(&self.execution_ids)
        .bind(&self.node_ids)
        .bind(&self.attempts)
        .bind(&self.started)
        .execute(conn)
        .await
        .map_err(failed("retried node attempts"))?;
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
#[path = "executions_tests.rs"]
mod tests;

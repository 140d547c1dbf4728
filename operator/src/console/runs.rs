//! Run history for the console, read from PostgreSQL: the runs list
//! (filtered, keyset-paginated newest first) and one run with its node
//! executions and log lines.
//!
//! Only queries: who may read which namespace is decided by the caller
//! (SubjectAccessReview), which passes the namespaces in. Nothing here
//! writes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use std::collections::HashMap;
use uuid::Uuid;

/// Runs per page unless the request asks for fewer.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most runs one page holds.
pub const MAX_PAGE_SIZE: u32 = 200;
/// Most log lines one detail answer holds (ask again `afterSeq` for more).
pub const MAX_LOG_LINES: i64 = 2_000;

/// Where the next page starts: after the run with this creation time and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// The opaque form handed to pages.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        ))
    }

    /// Reads a cursor this console handed out; `None` for anything else.
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('.')?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// A run's phase as Kubernetes names it, and as the mirror stores it.
pub const PHASES: [(&str, &str); 6] = [
    ("Pending", "pending"),
    ("Queued", "queued"),
    ("Running", "running"),
    ("Succeeded", "completed"),
    ("Failed", "failed"),
    ("Cancelled", "cancelled"),
];

/// What started a run (`spec.trigger.type`; none is Manual).
pub const TRIGGERS: [&str; 4] = ["Manual", "Schedule", "Webhook", "Workflow"];

/// The stored status of a phase name (any case); `None` when unknown.
pub fn status_of_phase(phase: &str) -> Option<&'static str> {
    PHASES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(phase))
        .map(|(_, status)| *status)
}

/// The phase name of a stored status.
pub fn phase_of_status(status: &str) -> String {
    PHASES
        .iter()
        .find(|(_, stored)| *stored == status)
        .map_or_else(|| status.to_owned(), |(name, _)| (*name).to_owned())
}

/// The trigger type of a name (any case); `None` when unknown.
pub fn trigger_type(name: &str) -> Option<&'static str> {
    TRIGGERS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
}

/// The trigger type a run shows: its stored one in canonical case, Manual
/// when none is stored.
fn trigger_name(stored: Option<&str>) -> String {
    let stored = stored.unwrap_or("Manual");
    trigger_type(stored).unwrap_or(stored).to_owned()
}

/// What the runs list is narrowed to. `namespaces` are the ones the user
/// may read; the others narrow further.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub namespaces: Vec<String>,
    pub workflow: Option<String>,
    /// A stored status (see [`status_of_phase`]).
    pub status: Option<&'static str>,
    /// A trigger type (see [`trigger_type`]).
    pub trigger: Option<&'static str>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

/// One line of the runs list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub id: Uuid,
    /// The WorkflowRun's name (absent on rows mirrored before names were).
    pub name: Option<String>,
    pub namespace: String,
    pub workflow: String,
    pub phase: String,
    pub trigger: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// One page of runs and where the next one starts.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    pub next_cursor: Option<String>,
}

type RunRow = (
    Uuid,
    Uuid,
    Option<String>,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// A page of runs matching `filter`, newest first, after `cursor`.
pub async fn list_runs(
    pool: &PgPool,
    filter: &RunFilter,
    cursor: Option<Cursor>,
    page_size: u32,
) -> Result<RunPage, sqlx::Error> {
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    // The workflows first (a few rows): the runs query then reads one
    // index in (created_at, id) order and stops at the page size.
    let workflows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT w.id, w.name, ws.name FROM workflows w JOIN workspaces ws ON ws.id = w.workspace_id
         WHERE ws.name = ANY($1) AND ($2::text IS NULL OR w.name = $2)",
    )
    .bind(&filter.namespaces)
    .bind(filter.workflow.as_deref())
    .fetch_all(pool)
    .await?;
    if workflows.is_empty() {
        return Ok(RunPage {
            runs: Vec::new(),
            next_cursor: None,
        });
    }
    let names: HashMap<Uuid, (String, String)> = workflows
        .into_iter()
        .map(|(id, workflow, namespace)| (id, (workflow, namespace)))
        .collect();
    let ids: Vec<Uuid> = names.keys().copied().collect();

    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, workflow_id, name, status, trigger_data->>'type', created_at, started_at, ended_at, error
         FROM workflow_executions WHERE ",
    );
    // One workflow: an equality, so the planner reads that workflow's
    // (workflow_id, created_at, id) range.
    match ids.as_slice() {
        [only] => query.push("workflow_id = ").push_bind(*only),
        _ => query.push("workflow_id = ANY(").push_bind(ids).push(")"),
    };
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(trigger) = filter.trigger {
        query
            .push(" AND lower(COALESCE(trigger_data->>'type', 'Manual')) = ")
            .push_bind(trigger.to_ascii_lowercase());
    }
    if let Some(from) = filter.from {
        query.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND created_at < ").push_bind(to);
    }
    if let Some(cursor) = cursor {
        query
            .push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    query
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(page_size) + 1);
    let mut rows: Vec<RunRow> = query.build_query_as().fetch_all(pool).await?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|row| Cursor {
            created_at: row.5,
            id: row.0,
        })
        .map(|cursor| cursor.encode());
    let runs = rows
        .into_iter()
        .map(
            |(id, workflow_id, name, status, trigger, created_at, started_at, ended_at, error)| {
                let (workflow, namespace) = names.get(&workflow_id).cloned().unwrap_or_default();
                RunSummary {
                    id,
                    name,
                    namespace,
                    workflow,
                    phase: phase_of_status(&status),
                    trigger: trigger_name(trigger.as_deref()),
                    created_at,
                    started_at,
                    ended_at,
                    error,
                }
            },
        )
        .collect();
    Ok(RunPage { runs, next_cursor })
}

/// One attempt of one node (or forEach item).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// As stored: the node's name, or `name[index]` for a forEach item.
    pub node_id: String,
    /// The node's name in the workflow.
    pub node: String,
    /// The forEach item's index, if it is one.
    pub item: Option<i64>,
    pub attempt: i32,
    pub node_type: String,
    pub phase: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// What sanitising did to the stored payloads (caps, escapes).
    pub payload_notes: Option<Value>,
    pub worker: Option<String>,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    pub seq: Option<i64>,
    pub node_id: Option<String>,
    pub attempt: Option<i32>,
    pub level: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A run with everything PostgreSQL holds about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub workflow_revision: Option<i32>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub trigger_data: Option<Value>,
    /// The workflow's graph as the run saw it: `nodes` (the spec's) and
    /// `edges` (`{from, to}`).
    pub graph: Value,
    pub nodes: Vec<NodeView>,
    pub logs: Vec<LogView>,
    /// Why it failed and what to do, when it did.
    pub failure: Option<Failure>,
}

/// Why a run failed, and what to do about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub message: String,
    /// The first node (by start) whose last attempt failed.
    pub failed_node: Option<String>,
    pub advice: String,
}

/// Log levels from the least to the most severe.
pub const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// The levels at `minimum` or more severe; `None` for an unknown level.
pub fn levels_from(minimum: &str) -> Option<Vec<String>> {
    let start = LOG_LEVELS
        .iter()
        .position(|level| level.eq_ignore_ascii_case(minimum))?;
    Some(
        LOG_LEVELS[start..]
            .iter()
            .map(|level| (*level).to_owned())
            .collect(),
    )
}

/// Splits `name[3]` into the node name and the item index.
pub fn split_item(node_id: &str) -> (String, Option<i64>) {
    if let Some(open) = node_id.rfind('[')
        && let Some(index) = node_id[open + 1..]
            .strip_suffix(']')
            .and_then(|index| index.parse().ok())
    {
        return (node_id[..open].to_owned(), Some(index));
    }
    (node_id.to_owned(), None)
}

/// What to do about a failed run: fix the cause first, then resume.
pub fn build_failure(status: &str, message: Option<&str>, nodes: &[NodeView]) -> Option<Failure> {
    if status != "failed" {
        return None;
    }
    let mut last_attempts: HashMap<&str, &NodeView> = HashMap::new();
    for node in nodes {
        let entry = last_attempts.entry(node.node_id.as_str()).or_insert(node);
        if node.attempt > entry.attempt {
            *entry = node;
        }
    }
    let failed = nodes
        .iter()
        .filter(|node| node.phase == "Failed")
        .filter(|node| {
            last_attempts
                .get(node.node_id.as_str())
                .is_some_and(|last| last.attempt == node.attempt)
        })
        .min_by_key(|node| node.started_at);
    let message = message
        .map(str::to_owned)
        .or_else(|| failed.and_then(|node| node.error.clone()))
        .unwrap_or_else(|| "the run failed".to_owned());
    let advice = match failed {
        Some(node) => format!(
            "read the input, output and logs of node {}, fix the cause (its parameters, a Connection, the service it calls), then resume: succeeded nodes are not run again",
            node.node_id
        ),
        None => "fix the cause named above (kubectl describe workflowrun shows the reason and events), then resume or run again".to_owned(),
    };
    Some(Failure {
        message,
        failed_node: failed.map(|node| node.node_id.clone()),
        advice,
    })
}

type DetailRow = (
    Uuid,
    Option<String>,
    String,
    String,
    String,
    Option<Value>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<i32>,
    Option<Value>,
    Option<Value>,
    Option<Value>,
);

type LogRow = (
    Option<i64>,
    Option<String>,
    Option<i32>,
    String,
    String,
    DateTime<Utc>,
);

type NodeRow = (
    String,
    i32,
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<Value>,
    Option<Value>,
    Option<String>,
    Option<Value>,
    Option<String>,
);

/// The run `name` of `namespace` (the newest, should a name have been
/// reused), with its nodes and its log lines at `levels` after `after_seq`.
pub async fn find_run(
    pool: &PgPool,
    namespace: &str,
    name: &str,
    levels: &[String],
    after_seq: Option<i64>,
) -> Result<Option<RunDetail>, sqlx::Error> {
    let row: Option<DetailRow> = sqlx::query_as(
        "SELECT e.id, e.name, ws.name, w.name, e.status, e.trigger_data, e.created_at, e.started_at,
                e.ended_at, e.error, e.workflow_version, e.variables, e.result,
                jsonb_build_object('nodes', COALESCE(v.nodes, w.nodes), 'edges', COALESCE(v.edges, w.edges))
         FROM workflow_executions e
         JOIN workflows w ON w.id = e.workflow_id
         JOIN workspaces ws ON ws.id = w.workspace_id
         LEFT JOIN workflow_versions v ON v.workflow_id = w.id AND v.version_number = e.workflow_version
         WHERE e.name = $2 AND ws.name = $1
         ORDER BY e.created_at DESC LIMIT 1",
    )
    .bind(namespace)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    let Some((
        id,
        name,
        namespace,
        workflow,
        status,
        trigger_data,
        created_at,
        started_at,
        ended_at,
        error,
        workflow_revision,
        input,
        output,
        graph,
    )) = row
    else {
        return Ok(None);
    };
    let node_rows: Vec<NodeRow> = sqlx::query_as(
        "SELECT node_id, attempt, node_type, status, started_at, ended_at, input_data, output_data,
                error, payload_notes, worker_id
         FROM node_executions WHERE execution_id = $1
         ORDER BY started_at NULLS LAST, node_id, attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let nodes: Vec<NodeView> = node_rows
        .into_iter()
        .map(
            |(
                node_id,
                attempt,
                node_type,
                status,
                started_at,
                ended_at,
                input,
                output,
                error,
                payload_notes,
                worker,
            )| {
                let (node, item) = split_item(&node_id);
                NodeView {
                    node_id,
                    node,
                    item,
                    attempt,
                    node_type,
                    phase: phase_of_status(&status),
                    started_at,
                    ended_at,
                    input,
                    output,
                    error,
                    payload_notes,
                    worker,
                }
            },
        )
        .collect();
    let log_rows: Vec<LogRow> =
        sqlx::query_as(
            "SELECT l.seq, n.node_id, n.attempt, l.level, l.message, COALESCE(l.created_at, CURRENT_TIMESTAMP)
             FROM execution_logs l LEFT JOIN node_executions n ON n.id = l.node_execution_id
             WHERE l.execution_id = $1 AND l.level = ANY($2) AND ($3::bigint IS NULL OR l.seq > $3)
             ORDER BY l.seq, l.created_at LIMIT $4",
        )
        .bind(id)
        .bind(levels)
        .bind(after_seq)
        .bind(MAX_LOG_LINES)
        .fetch_all(pool)
        .await?;
    let logs = log_rows
        .into_iter()
        .map(|(seq, node_id, attempt, level, message, at)| LogView {
            seq,
            node_id,
            attempt,
            level,
            message,
            at,
        })
        .collect();
    let failure = build_failure(&status, error.as_deref(), &nodes);
    let trigger = trigger_name(
        trigger_data
            .as_ref()
            .and_then(|data| data.get("type"))
            .and_then(Value::as_str),
    );
    Ok(Some(RunDetail {
        summary: RunSummary {
            id,
            name,
            namespace,
            workflow,
            phase: phase_of_status(&status),
            trigger,
            created_at,
            started_at,
            ended_at,
            error,
        },
        workflow_revision,
        input,
        output,
        trigger_data,
        graph: graph.unwrap_or(Value::Null),
        nodes,
        logs,
        failure,
    }))
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;

//! Test fixtures: records with sensible defaults, and a shorthand to write
//! a batch. Test-only; never used by the mirror itself.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::apply::{Applied, apply_events};
use super::records::*;
use super::sanitize::Limits;

pub fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, hour, minute, 0).unwrap()
}

pub fn uid(n: u128) -> Uuid {
    Uuid::from_u128(0xabc00000_0000_4000_8000_000000000000 + n)
}

pub fn workspace() -> WorkspaceRecord {
    WorkspaceRecord {
        uid: uid(1),
        name: "growth".into(),
        labels: BTreeMap::from([("team".into(), "growth".into())]),
        created_at: Some(at(8, 0)),
        deleted: false,
    }
}

pub fn workflow() -> WorkflowRecord {
    WorkflowRecord {
        uid: uid(10),
        workspace_uid: uid(1),
        namespace: "growth".into(),
        name: "triage-signup".into(),
        description: Some("triage new signups".into()),
        nodes: json!([{"name": "lookup", "http": {"method": "GET"}}, {"name": "score", "needs": ["lookup"]}]),
        edges: json!([{"from": "lookup", "to": "score"}]),
        settings: json!({"concurrency": {"limit": 5, "policy": "Queue"}}),
        state: WorkflowState::Active,
        revision: 1,
        labels: BTreeMap::from([
            ("tier".into(), "gold".into()),
            ("team".into(), "growth".into()),
        ]),
        triggers: vec![TriggerRecord {
            name: "signup".into(),
            trigger_type: "webhook".into(),
            settings: json!({"auth": "hmac"}),
            active: true,
            webhook: Some(WebhookRecord {
                path: "/hooks/growth/triage-signup/signup".into(),
                secret_ref: Some(SecretKeyRef {
                    name: "signup-hook".into(),
                    key: "hmac".into(),
                }),
                last_used_at: None,
                bearer_fingerprint: None,
            }),
        }],
        env: vec![
            EnvVarRecord {
                name: "REGION".into(),
                value: EnvValue::Plain("eu".into()),
            },
            EnvVarRecord {
                name: "CRM_TOKEN".into(),
                value: EnvValue::Secret(SecretKeyRef {
                    name: "crm".into(),
                    key: "token".into(),
                }),
            },
        ],
        created_at: Some(at(8, 5)),
        created_by: None,
        published_at: Some(at(8, 5)),
    }
}

pub fn execution(n: u128, phase: RunPhase) -> ExecutionRecord {
    let finished = phase.is_finished();
    ExecutionRecord {
        uid: uid(1000 + n),
        workflow_uid: uid(10),
        name: format!("triage-signup-{n}"),
        phase,
        workflow_revision: Some(1),
        priority: 0,
        input: Some(json!({"email": "ada@example.com"})),
        output: finished.then(|| json!({"vip": true})),
        error: (phase == RunPhase::Failed).then(|| "node lookup failed".to_owned()),
        trigger: Some(json!({"type": "manual"})),
        created_at: Some(at(9, 0)),
        started_at: (phase != RunPhase::Pending && phase != RunPhase::Queued).then(|| at(9, 1)),
        ended_at: finished.then(|| at(9, 3)),
        created_by: None,
        job_name: Some(format!("triage-signup-{n}-job")),
        parent: None,
    }
}

pub fn node(
    execution: &ExecutionRecord,
    node_id: &str,
    attempt: i32,
    phase: NodePhase,
) -> NodeExecutionRecord {
    let finished = !matches!(phase, NodePhase::Pending | NodePhase::Running);
    NodeExecutionRecord {
        execution_uid: execution.uid,
        node_id: node_id.into(),
        attempt,
        node_type: "http".into(),
        phase,
        started_at: Some(at(9, 1)),
        ended_at: finished.then(|| at(9, 2)),
        input: Some(json!({"url": "https://crm.example.com"})),
        output: finished.then(|| json!({"status": 200})),
        error: None,
        worker_id: Some("triage-signup-1-job-abcde".into()),
    }
}

pub fn log(execution: &ExecutionRecord, seq: i64, message: &[u8]) -> LogRecord {
    LogRecord {
        execution_uid: execution.uid,
        seq,
        node: Some(("lookup".into(), 0)),
        level: LogLevel::Info,
        message: message.to_vec(),
        metadata: Some(json!({"stream": "stdout"})),
        logged_at: at(9, 2),
    }
}

/// Applies events in one transaction, as the writer does.
pub async fn write(pool: &PgPool, events: &[MirrorEvent]) -> Applied {
    let mut transaction = pool.begin().await.unwrap();
    let refs: Vec<&MirrorEvent> = events.iter().collect();
    let applied = apply_events(&mut transaction, &refs, &Limits::default())
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    applied
}

/// Workspace, workflow and the given runs.
pub async fn seed_runs(pool: &PgPool, runs: &[ExecutionRecord]) {
    let mut events = vec![
        MirrorEvent::Workspace(workspace()),
        MirrorEvent::Workflow(workflow()),
    ];
    events.extend(runs.iter().cloned().map(MirrorEvent::Execution));
    write(pool, &events).await;
}

/// Every row of a table as JSON text, in a stable order: for "same rows"
/// comparisons.
pub async fn dump(pool: &PgPool, table: &str) -> Vec<String> {
    let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY to_jsonb(t)::text");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .unwrap()
}

//! Database tests of `executions.rs` (kept apart to keep that file short).

#![allow(clippy::type_complexity)]
use chrono::{DateTime, Utc};
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
        let run: Option<i64> = sqlx::query_scalar("SELECT duration_ms FROM workflow_executions")
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
async fn an_attempt_still_open_when_a_later_one_starts_is_closed_as_failed(pool: PgPool) {
    let run = execution(1, RunPhase::Running);
    seed_runs(&pool, std::slice::from_ref(&run)).await;
    let first = node(&run, "lookup", 0, NodePhase::Running);
    let mut second = node(&run, "lookup", 1, NodePhase::Running);
    second.started_at = Some(first.started_at.unwrap() + chrono::Duration::seconds(3));
    let other = node(&run, "other", 0, NodePhase::Running);
    write(
        &pool,
        &[
            MirrorEvent::NodeExecution(first.clone()),
            MirrorEvent::NodeExecution(other),
        ],
    )
    .await;
    write(&pool, &[MirrorEvent::NodeExecution(second.clone())]).await;
    // A replayed start of the first attempt does not open it again.
    write(&pool, &[MirrorEvent::NodeExecution(first.clone())]).await;

    let rows: Vec<(String, i32, String, Option<DateTime<Utc>>, Option<String>)> = sqlx::query_as(
        "SELECT node_id, attempt, status, ended_at, error FROM node_executions
         ORDER BY node_id, attempt",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                "lookup".into(),
                0,
                "failed".into(),
                second.started_at,
                Some("the attempt failed and the node was retried".into())
            ),
            ("lookup".into(), 1, "running".into(), None, None),
            ("other".into(), 0, "running".into(), None, None),
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

async fn endpoint_last_used(pool: &PgPool) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("SELECT last_used_at FROM webhook_endpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_webhook_run_marks_its_endpoint_used_and_never_earlier(pool: PgPool) {
    let mut manual = execution(1, RunPhase::Pending);
    manual.created_at = Some(at(9, 30));
    seed_runs(&pool, &[manual]).await;
    assert_eq!(endpoint_last_used(&pool).await, None, "a manual run");

    let hooked = |n, minute| {
        let mut run = execution(n, RunPhase::Pending);
        run.trigger = Some(json!({"type": "Webhook", "source": "signup", "data": {}}));
        run.created_at = Some(at(10, minute));
        MirrorEvent::Execution(run)
    };
    write(&pool, &[hooked(2, 15)]).await;
    assert_eq!(endpoint_last_used(&pool).await, Some(at(10, 15)));
    // A later event of an older run (a replay, a resync) does not move it back.
    write(&pool, &[hooked(3, 20), hooked(2, 15)]).await;
    assert_eq!(endpoint_last_used(&pool).await, Some(at(10, 20)));
}

#[sqlx::test(migrations = "../migrations")]
async fn stored_outputs_are_the_last_attempts_that_succeeded_whole(pool: PgPool) {
    let run = execution(1, RunPhase::Failed);
    seed_runs(&pool, std::slice::from_ref(&run)).await;
    let with_output = |id: &str, attempt, phase, output: Value| {
        let mut record = node(&run, id, attempt, phase);
        record.output = Some(output);
        MirrorEvent::NodeExecution(record)
    };
    write(
        &pool,
        &[
            // Retried, then succeeded: the last attempt counts.
            with_output("lookup", 0, NodePhase::Failed, json!(null)),
            with_output("lookup", 1, NodePhase::Succeeded, json!({"id": 7})),
            with_output("score", 0, NodePhase::Failed, json!(null)),
            // Over the runner's cap: a marker, not the output.
            with_output(
                "big",
                0,
                NodePhase::Succeeded,
                json!({"$sluice": {"truncated": true, "originalBytes": 9, "capBytes": 1}, "preview": "\"xxxx"}),
            ),
            // The marker of runners before the marker carried `$sluice`.
            with_output(
                "old",
                0,
                NodePhase::Succeeded,
                json!({"truncated": true, "bytes": 9, "capBytes": 1, "message": "over"}),
            ),
            // Changed by sanitising (a NUL escaped): not whole.
            with_output("nul", 0, NodePhase::Succeeded, json!("a\u{0}b")),
        ],
    )
    .await;
    let notes: Option<Value> =
        sqlx::query_scalar("SELECT payload_notes FROM node_executions WHERE node_id = 'big'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        notes,
        Some(json!({"truncated": [{"field": "output", "originalBytes": 9, "capBytes": 1}]})),
        "the row says its output was shortened by the runner"
    );
    let nodes: Vec<String> = ["lookup", "score", "big", "old", "nul", "never"]
        .map(String::from)
        .to_vec();
    let stored = super::stored_node_outputs(&pool, run.uid, &nodes)
        .await
        .unwrap();
    assert_eq!(
        stored,
        std::collections::BTreeMap::from([("lookup".to_owned(), json!({"id": 7}))])
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_run_whose_parents_are_missing_writes_them_from_what_it_carries(pool: PgPool) {
    // An empty database: no workspace, no workflow row.
    let mut orphan = execution(1, RunPhase::Succeeded);
    let mut parent = workflow();
    parent.state = WorkflowState::Archived;
    orphan.parent = Some(Box::new(parent));
    write(&pool, &[MirrorEvent::Execution(orphan.clone())]).await;
    assert_eq!(run_status(&pool).await, "completed");
    let (name, status, version): (String, String, i32) =
        sqlx::query_as("SELECT name, status::text, version FROM workflows")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), status.as_str(), version),
        ("triage-signup", "archived", 1)
    );
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_versions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(versions, 1, "the run's revision is recorded too");
    assert_eq!(dump(&pool, "workspaces").await.len(), 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_parent_carried_by_a_run_never_changes_an_existing_row(pool: PgPool) {
    write(
        &pool,
        &[
            MirrorEvent::Workspace(workspace()),
            MirrorEvent::Workflow(workflow()),
        ],
    )
    .await;
    let before = dump(&pool, "workflows").await;
    let mut run = execution(1, RunPhase::Running);
    let mut stale = workflow();
    stale.name = "renamed-by-a-stale-snapshot".into();
    stale.state = WorkflowState::Archived;
    run.parent = Some(Box::new(stale));
    write(&pool, &[MirrorEvent::Execution(run)]).await;
    assert_eq!(before, dump(&pool, "workflows").await);
    assert_eq!(run_status(&pool).await, "running");
}

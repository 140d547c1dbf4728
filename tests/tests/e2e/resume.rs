//! `spec.resumeFrom` end to end: fix the node that failed a run, resume
//! it, and the nodes that had succeeded are reused (their outputs come from
//! PostgreSQL, they do not run again) while the fixed node runs.

use serde_json::{Value, json};
use sluice_crds::{NodePhase, RunPhase};
use sluice_e2e::operator::eventually;

use crate::operator_support::Bed;

/// `stamp` prints a value unique to the moment it runs, so a reused output
/// is told apart from a fresh one; `gate` is the node to fix.
fn report_workflow(gate: Value) -> Value {
    let mut gate_node = json!({"name": "gate", "needs": ["length"]});
    if let (Some(node), Some(block)) = (gate_node.as_object_mut(), gate.as_object()) {
        node.extend(block.clone());
    }
    json!({
        "nodes": [
            {"name": "stamp", "shell": {"script": "date +%s%N"}},
            {"name": "length", "needs": ["stamp"], "transform": {"jq": ".nodes.stamp.output.stdout | length"}},
            gate_node,
        ],
        "output": "{stamp: .nodes.stamp.output.stdout, gate: .nodes.gate.output}",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_reuses_the_outputs_of_nodes_that_succeeded() {
    let bed = Bed::start("resume").await;
    bed.apply_workflow(
        "report",
        report_workflow(json!({"fail": {"message": "the gate is closed"}})),
    )
    .await;
    bed.create_run("first", "report", json!({})).await;
    let first = bed.wait_terminal("first", RunPhase::Failed).await;
    let first_uid = first.metadata.uid.clone().expect("a uid");
    // The resume reads the first run's outputs from PostgreSQL.
    let pool = bed.database.pool();
    let first_stamp: Value = eventually("the first run's stamp output", || {
        let uid = first_uid.clone();
        async move {
            sqlx::query_scalar::<_, Option<Value>>(
                "SELECT output_data FROM node_executions
                 WHERE execution_id = $1::uuid AND node_id = 'stamp' AND status::text = 'completed'",
            )
            .bind(uid)
            .fetch_optional(pool)
            .await
            .ok()??
        }
    })
    .await;

    // Fix the gate, then resume.
    bed.apply_workflow(
        "report",
        report_workflow(json!({"transform": {"jq": "\"open\""}})),
    )
    .await;
    bed.create_run("second", "report", json!({"resumeFrom": "first"}))
        .await;
    let second = bed.wait_terminal("second", RunPhase::Succeeded).await;
    let status = second.status.clone().unwrap_or_default();
    let output = status.output.clone().expect("an output");
    assert_eq!(
        output["stamp"], first_stamp["stdout"],
        "stamp's output is the first run's, so it did not run again"
    );
    assert_eq!(output["gate"], "open");
    let attempts: Vec<(&str, NodePhase, i32)> = status
        .nodes
        .iter()
        .map(|node| (node.name.as_str(), node.phase, node.attempts))
        .collect();
    assert_eq!(
        attempts,
        [
            ("stamp", NodePhase::Succeeded, 0),
            ("length", NodePhase::Succeeded, 0),
            ("gate", NodePhase::Succeeded, 1),
        ]
    );
    let resumed = bed
        .events_about("second")
        .await
        .into_iter()
        .find(|event| event.reason.as_deref() == Some("Resumed"))
        .expect("a Resumed event");
    assert_eq!(
        resumed.note.as_deref(),
        Some("resuming from run first: reusing the outputs of length, stamp")
    );

    // A run that succeeded cannot be resumed from: the run says why.
    bed.create_run("third", "report", json!({"resumeFrom": "second"}))
        .await;
    let third = bed.wait_terminal("third", RunPhase::Failed).await;
    let status = third.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("ResumeInvalid"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("spec.resumeFrom") && message.contains("is Succeeded"),
        "{message}"
    );
    bed.finish().await;
}

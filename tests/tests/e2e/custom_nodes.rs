//! Custom node types on the test bed: the operator validates custom nodes
//! against the namespace's NodeTypes, adds each used type to the run's pod
//! as a native sidecar, and the kubelet emulator runs that sidecar (the
//! example node server, examples/custom-node/greeter.py) beside the runner.
//! The example workflow itself runs in `examples.rs`. The mirror's rows
//! of a type (custom_nodes, node_templates, installed_nodes,
//! node_definitions) are checked here too.

use kube::api::Api;
use serde_json::{Value, json};
use sluice_crds::{ConditionStatus, RunPhase, Workflow};
use sluice_e2e::operator::eventually;

use crate::operator_support::Bed;

/// A NodeType served by the example greeter, with extra `args`.
fn greeter_type(name: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "NodeType",
        "metadata": {"name": name},
        "spec": {
            "version": "0.1.0",
            "image": "ghcr.io/sluice-dev/sluice-greeter-node:0.1.0",
            "command": ["sluice-greeter-node"],
            "args": args,
            "paramsSchema": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}}
            },
            "presets": [{"name": "formal", "params": {"greeting": "Good day"}}]
        }
    })
}

/// Waits for the workflow's Ready condition to be `status`; returns its message.
async fn ready_message(workflows: &Api<Workflow>, name: &str, status: ConditionStatus) -> String {
    eventually(&format!("workflow {name} Ready={status:?}"), || {
        let workflows = workflows.clone();
        async move {
            let workflow = workflows.get(name).await.ok()?;
            let status_now = workflow.status?;
            let ready = status_now.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == status).then(|| {
                let valid = status_now
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Valid")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                format!("{} | {valid}", ready.message)
            })
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_and_missing_types_are_refused_before_the_run() {
    let bed = Bed::start("custom-refused").await;
    bed.apply(greeter_type("greeter", &[])).await;
    bed.apply_workflow(
        "bad-params",
        json!({"nodes": [{"name": "greet", "custom": {"type": "greeter", "params": {"name": ""}}}]}),
    )
    .await;
    bed.apply_workflow(
        "no-such-type",
        json!({"nodes": [{"name": "greet", "custom": {"type": "stranger", "params": {"name": "Ada"}}}]}),
    )
    .await;
    let workflows = bed.workflows();
    let bad = ready_message(&workflows, "bad-params", ConditionStatus::False).await;
    assert!(bad.contains("spec.nodes[0].custom.params.name"), "{bad}");
    assert!(bad.contains("shorter than minLength 1"), "{bad}");
    let missing = ready_message(&workflows, "no-such-type", ConditionStatus::False).await;
    assert!(missing.contains("spec.nodes[0].custom.type"), "{missing}");
    assert!(
        missing.contains("create a NodeType (or ClusterNodeType) named \"stranger\""),
        "{missing}"
    );

    // A run of it fails before any Job exists.
    bed.create_run("bad-params-run", "bad-params", json!({}))
        .await;
    let run = bed.wait_terminal("bad-params-run", RunPhase::Failed).await;
    let status = run.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("WorkflowInvalid"));
    assert_eq!(status.job_name, None);

    // Creating the missing type makes the other workflow Ready, unprompted.
    bed.apply(greeter_type("stranger", &[])).await;
    ready_message(&workflows, "no-such-type", ConditionStatus::True).await;

    // The mirror holds the type, its preset and its installation.
    let pool = bed.database.pool();
    let namespace = bed.cluster.namespace().to_owned();
    let rows = eventually("the greeter type in the mirror", || {
        let namespace = namespace.clone();
        async move {
            let custom: (String, String, String) = sqlx::query_as(
                "SELECT c.type, c.version, c.code FROM custom_nodes c
                 JOIN workspaces w ON w.id = c.workspace_id
                 WHERE c.name = 'greeter' AND w.name = $1",
            )
            .bind(&namespace)
            .fetch_optional(pool)
            .await
            .ok()??;
            let template: (String, Value) = sqlx::query_as(
                "SELECT name, template_data FROM node_templates WHERE node_type = $1",
            )
            .bind(format!("{namespace}/greeter"))
            .fetch_optional(pool)
            .await
            .ok()??;
            let installed: String = sqlx::query_scalar(
                "SELECT i.version FROM installed_nodes i JOIN workspaces w ON w.id = i.workspace_id
                 WHERE i.name = 'greeter' AND w.name = $1",
            )
            .bind(&namespace)
            .fetch_optional(pool)
            .await
            .ok()??;
            let definition: bool = sqlx::query_scalar(
                "SELECT is_builtin FROM node_definitions WHERE name = 'greeter' AND version = '0.1.0'",
            )
            .fetch_optional(pool)
            .await
            .ok()??;
            Some((custom, template, installed, definition))
        }
    })
    .await;
    assert_eq!(
        rows.0,
        (
            "NodeType".to_owned(),
            "0.1.0".to_owned(),
            "ghcr.io/sluice-dev/sluice-greeter-node:0.1.0".to_owned()
        )
    );
    assert_eq!(
        rows.1,
        ("formal".to_owned(), json!({"greeting": "Good day"}))
    );
    assert_eq!(rows.2, "0.1.0");
    assert!(!rows.3, "a custom type is not built in");
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_sidecar_fails_the_node_with_its_reason() {
    let bed = Bed::start("custom-crash").await;
    bed.apply(greeter_type("crasher", &["--crash-on-execute"]))
        .await;
    bed.apply_workflow(
        "crashes",
        json!({"nodes": [{"name": "greet", "custom": {"type": "crasher", "params": {"name": "Ada"}}}]}),
    )
    .await;
    ready_message(&bed.workflows(), "crashes", ConditionStatus::True).await;
    bed.create_run("crashes-run", "crashes", json!({})).await;
    let run = bed.wait_terminal("crashes-run", RunPhase::Failed).await;
    let status = run.status.unwrap_or_default();
    let node = status
        .nodes
        .iter()
        .find(|node| node.name == "greet")
        .expect("the node's summary");
    let error = node.error.clone().unwrap_or_default();
    assert!(
        error.contains("node server of custom type \"crasher\""),
        "{error}"
    );
    assert!(error.contains("its container may have crashed"), "{error}");
    assert!(error.contains("-c node-crasher"), "{error}");
    bed.finish().await;
}

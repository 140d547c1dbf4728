//! The node types that need a cluster, end to end.
//!
//! - `kubernetes`: the engine runs in this process with the node using the
//!   test cluster's client (the same API server stand-in or real cluster
//!   the rest of the suite uses), and once through the `sluice-runner run`
//!   binary with `KUBECONFIG` pointing at the test cluster, the path a
//!   local run takes.
//! - `workflow`: the real operator and runner: a parent run starts a child
//!   run through the run API and returns its output; a failing child fails
//!   the parent; a run's token sees only its own children.

use crate::operator_support::{Bed, waiting_workflow};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_crds::workflow_run::TriggerType;
use sluice_crds::{NodePhase, RunPhase, WorkflowSpec};
use sluice_e2e::binaries::{Binary, locate};
use sluice_e2e::cluster::{TestCluster, install_crypto_provider};
use sluice_e2e::operator::eventually;
use sluice_runner::clock::SystemClock;
use sluice_runner::engine::{Engine, RunRequest, RunResult};
use sluice_runner::nodes::Catalog;
use sluice_runner::nodes::kubernetes::KubernetesNode;
use sluice_runner::report::NoReport;
use std::sync::Arc;

/// Runs a workflow of `nodes` in this process, with the `kubernetes` node
/// talking to `cluster` as the run of namespace `cluster.namespace()`.
async fn run_nodes(cluster: &TestCluster, nodes: Value) -> RunResult {
    let spec: WorkflowSpec =
        serde_json::from_value(json!({ "nodes": nodes })).expect("a workflow spec");
    let compiled = sluice_runner::validate::compile(&spec).expect("a valid workflow");
    let mut catalog = Catalog::empty();
    catalog.register(Arc::new(KubernetesNode::with_client(cluster.client())));
    let engine = Engine::new(catalog, Arc::new(SystemClock));
    let mut request = RunRequest::new(json!({}));
    request.info.namespace = cluster.namespace().to_owned();
    engine.run(&compiled, request, Arc::new(NoReport)).await
}

fn config_map_node(name: &str, action: &str, extra: Value) -> Value {
    let mut params =
        json!({"action": action, "apiVersion": "v1", "kind": "ConfigMap", "name": "settings"});
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    json!({"name": name, "kubernetes": params})
}

fn needs(mut node: Value, need: &str) -> Value {
    node["needs"] = json!([need]);
    node
}

/// A node retried up to twice on retryable errors, that may fail alone.
fn tolerant(mut node: Value) -> Value {
    node["retry"] = json!({"limit": 2, "backoff": {"initial": "10ms"}});
    node["continueOnError"] = json!(true);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_node_applies_gets_patches_and_deletes_a_config_map() {
    install_crypto_provider();
    let cluster = TestCluster::start("k8s-node-crud")
        .await
        .expect("a test cluster");
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());

    let applied = run_nodes(
        &cluster,
        json!([
            {"name": "apply", "kubernetes": {"action": "Apply", "manifest": {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "labels": {"team": "a"}},
                "data": {"color": "blue"},
            }}},
            {"name": "read", "needs": ["apply"], "kubernetes":
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "settings"}},
        ]),
    )
    .await;
    assert_eq!(applied.summary.phase, RunPhase::Succeeded, "{applied:?}");
    let read = applied.node("read").and_then(|n| n.output.clone()).unwrap();
    assert_eq!(read["data"], json!({"color": "blue"}));
    assert_eq!(read["metadata"]["namespace"], cluster.namespace());
    assert!(read["metadata"].get("managedFields").is_none(), "{read}");
    let stored = config_maps
        .get("settings")
        .await
        .expect("the applied ConfigMap");
    assert!(
        stored
            .managed_fields()
            .iter()
            .any(|entry| entry.manager.as_deref() == Some("sluice-runner")
                && entry.operation.as_deref() == Some("Apply")),
        "server-side apply by sluice-runner: {:?}",
        stored.managed_fields()
    );

    let patched = run_nodes(
        &cluster,
        json!([
            config_map_node("merge", "Patch", json!({"patch": {"data": {"size": "L"}}})),
            {
                "name": "json", "needs": ["merge"],
                "kubernetes": {"action": "Patch", "apiVersion": "v1", "kind": "ConfigMap",
                    "name": "settings", "patchType": "Json", "patch": [
                        {"op": "test", "path": "/data/color", "value": "blue"},
                        {"op": "replace", "path": "/data/color", "value": "red"},
                    ]},
            },
        ]),
    )
    .await;
    assert_eq!(patched.summary.phase, RunPhase::Succeeded, "{patched:?}");
    let after_json = patched.node("json").and_then(|n| n.output.clone()).unwrap();
    assert_eq!(after_json["data"], json!({"color": "red", "size": "L"}));
    let stored = config_maps.get("settings").await.unwrap();
    assert_eq!(
        stored
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str),
        Some("red")
    );

    let deleted = run_nodes(
        &cluster,
        json!([
            config_map_node("delete", "Delete", json!({})),
            needs(config_map_node("again", "Delete", json!({})), "delete"),
        ]),
    )
    .await;
    assert_eq!(deleted.summary.phase, RunPhase::Succeeded, "{deleted:?}");
    assert_eq!(
        deleted.node("delete").and_then(|n| n.output.clone()),
        Some(json!({"deleted": true}))
    );
    assert_eq!(
        deleted.node("again").and_then(|n| n.output.clone()),
        Some(json!({"deleted": false}))
    );
    assert!(config_maps.get_opt("settings").await.unwrap().is_none());
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_node_errors_are_permanent_and_explained() {
    install_crypto_provider();
    let cluster = TestCluster::start("k8s-node-errors")
        .await
        .expect("a test cluster");
    let result = run_nodes(
        &cluster,
        json!([
            {"name": "seed", "kubernetes": {"action": "Apply", "manifest": {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"}, "data": {"color": "blue"},
            }}},
            tolerant(config_map_node("missing", "Get", json!({"name": "absent"}))),
            tolerant(needs(
                config_map_node("failed-test", "Patch", json!({"patchType": "Json", "patch": [
                    {"op": "test", "path": "/data/color", "value": "green"},
                    {"op": "replace", "path": "/data/color", "value": "red"},
                ]})),
                "seed",
            )),
            tolerant(json!({"name": "no-such-kind", "kubernetes":
                {"apiVersion": "v1", "kind": "Gadget", "name": "x"}})),
        ]),
    )
    .await;
    let failed = |name: &str| {
        let node = result.node(name).expect("the node's result");
        assert_eq!(node.phase, NodePhase::Failed, "{node:?}");
        assert_eq!(
            node.attempts, 1,
            "a permanent error is not retried: {node:?}"
        );
        node.error.clone().unwrap_or_default()
    };
    let missing = failed("missing");
    assert!(
        missing.starts_with(&format!(
            "failed to get configmaps \"absent\" in namespace \"{}\": not found",
            cluster.namespace()
        )),
        "{missing}"
    );
    let failed_test = failed("failed-test");
    assert!(
        failed_test.contains("failed to patch configmaps \"settings\"")
            && failed_test.contains("(422)"),
        "{failed_test}"
    );
    let no_kind = failed("no-such-kind");
    assert!(
        no_kind.contains("the cluster serves no kind \"Gadget\" in apiVersion \"v1\""),
        "{no_kind}"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    let stored = config_maps.get("settings").await.unwrap();
    assert_eq!(
        stored
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str),
        Some("blue"),
        "a failed test operation leaves the object unchanged"
    );
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_reaches_the_cluster_through_kubeconfig() {
    let cluster = sluice_e2e::operator::cluster("k8s-node-local")
        .await
        .expect("a test cluster with the binaries built");
    let workflow = json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "local-apply", "namespace": cluster.namespace()},
        "spec": {"nodes": [
            {"name": "apply", "kubernetes": {"action": "Apply", "manifest": {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "from-local-run"}, "data": {"by": "${{ .run.name }}"},
            }}},
        ]},
    });
    let file = cluster.workdir().join("local-apply.yaml");
    std::fs::write(&file, workflow.to_string()).expect("failed to write the workflow");
    let output = tokio::process::Command::new(locate(Binary::Runner).expect("sluice-runner"))
        .arg("run")
        .arg(&file)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("HOME", cluster.workdir())
        .output()
        .await
        .expect("failed to run sluice-runner");
    assert!(
        output.status.success(),
        "sluice-runner run failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    let created = config_maps
        .get("from-local-run")
        .await
        .expect("the applied ConfigMap");
    assert_eq!(
        created
            .data
            .unwrap_or_default()
            .get("by")
            .map(String::as_str),
        Some("local-apply-local")
    );
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

/// A workflow whose `call` node runs `child` with `input` and whose output
/// is that node's output.
fn parent_workflow(child: &str, input: Value) -> Value {
    json!({
        "nodes": [{"name": "call", "workflow": {"workflowRef": child, "input": input}}],
        "output": ".nodes.call.output",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_node_runs_a_child_and_returns_its_output_or_its_failure() {
    let bed = Bed::start("workflow-node").await;
    bed.apply_workflow(
        "double",
        json!({
            "nodes": [{"name": "double", "transform": {"jq": "{doubled: (.input.n * 2)}"}}],
            "output": ".nodes.double.output",
        }),
    )
    .await;
    bed.apply_workflow(
        "broken",
        json!({"nodes": [{"name": "boom", "fail": {"message": "no luck today"}}]}),
    )
    .await;
    bed.apply_workflow("calls-double", parent_workflow("double", json!({"n": 21})))
        .await;
    bed.apply_workflow("calls-broken", parent_workflow("broken", json!({})))
        .await;
    bed.create_run("good", "calls-double", json!({})).await;
    bed.create_run("bad", "calls-broken", json!({})).await;

    let good = bed.wait_terminal("good", RunPhase::Succeeded).await;
    assert_eq!(
        good.status.unwrap_or_default().output,
        Some(json!({"run": "good-call", "output": {"doubled": 42}, "outputTruncated": false}))
    );
    let child = bed.runs().get("good-call").await.expect("the child run");
    let trigger = child.spec.trigger.clone().expect("a trigger");
    assert_eq!(
        (trigger.type_, trigger.source.as_deref()),
        (TriggerType::Workflow, Some("good"))
    );
    assert_eq!(
        child
            .labels()
            .get("sluice.dev/parent-run")
            .map(String::as_str),
        Some("good")
    );
    let parent_uid = bed.runs().get("good").await.unwrap().uid();
    assert!(
        child
            .owner_references()
            .iter()
            .any(|owner| owner.kind == "WorkflowRun" && Some(&owner.uid) == parent_uid.as_ref()),
        "{:?}",
        child.owner_references()
    );

    let bad = bed.wait_terminal("bad", RunPhase::Failed).await;
    let status = bad.status.unwrap_or_default();
    assert_eq!(status.first_failed_node.as_deref(), Some("call"));
    let error = status
        .nodes
        .iter()
        .find(|node| node.name == "call")
        .and_then(|node| node.error.clone())
        .unwrap_or_default();
    assert!(
        error.starts_with("child run bad-call of workflow broken failed at node boom:")
            && error.contains("no luck today"),
        "{error}"
    );
    bed.wait_terminal("bad-call", RunPhase::Failed).await;
    bed.finish().await;
}

/// The run API token of `run`, from the Secret the operator made for it.
async fn run_token(bed: &Bed, run: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let secret = secrets
        .get(&sluice_operator::names::run_credential_secret_name(run))
        .await
        .expect("the run's credential secret");
    let token = secret
        .data
        .and_then(|mut data| data.remove("token"))
        .expect("a token");
    String::from_utf8(token.0).expect("a text token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_token_sees_only_its_own_children() {
    let bed = Bed::start("workflow-node-auth").await;
    bed.apply_workflow("sleeper", waiting_workflow("120s"))
        .await;
    bed.apply_workflow("spawner", parent_workflow("sleeper", json!({})))
        .await;
    bed.create_run("run-a", "spawner", json!({})).await;
    bed.create_run("run-b", "spawner", json!({})).await;
    for child in ["run-a-call", "run-b-call"] {
        bed.wait_run(child, "the child running", |run| {
            run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Running)
        })
        .await;
    }
    let token_a = run_token(&bed, "run-a").await;
    install_crypto_provider();
    let http = reqwest::Client::new();
    let children = |parent: &str, child: &str| {
        format!(
            "{}{}/{}/{parent}/children/{child}",
            bed.operator.run_api_url(),
            sluice_crds::run_api::RUN_API_PREFIX,
            bed.cluster.namespace()
        )
    };
    let token_a = &token_a;
    let status_of = |request: reqwest::RequestBuilder| async move {
        request
            .bearer_auth(token_a)
            .send()
            .await
            .expect("the run API answers")
            .status()
            .as_u16()
    };
    assert_eq!(
        status_of(http.get(children("run-a", "run-b-call"))).await,
        403,
        "run B's child through run A's path"
    );
    assert_eq!(
        status_of(http.get(children("run-b", "run-b-call"))).await,
        403,
        "run B's path with run A's token"
    );
    assert_eq!(
        status_of(http.delete(children("run-a", "run-b-call"))).await,
        403,
        "cancelling run B's child"
    );
    assert_eq!(
        status_of(
            http.put(children("run-b", "run-b-extra"))
                .json(&json!({"workflow": "sleeper"}))
        )
        .await,
        403,
        "starting a child of run B"
    );
    assert!(bed.runs().get_opt("run-b-extra").await.unwrap().is_none());
    assert_eq!(
        status_of(
            http.put(children("run-a", "run-a-other"))
                .json(&json!({"workflow": "no-such-workflow"}))
        )
        .await,
        404,
        "a child of a workflow that does not exist"
    );
    assert_eq!(
        status_of(http.get(children("run-a", "run-a-call"))).await,
        200
    );

    // Run A cancels its own child; run B's child keeps running.
    assert_eq!(
        status_of(http.delete(children("run-a", "run-a-call"))).await,
        200
    );
    bed.wait_terminal("run-a-call", RunPhase::Cancelled).await;
    let run_a = bed.wait_terminal("run-a", RunPhase::Failed).await;
    let error = run_a
        .status
        .unwrap_or_default()
        .nodes
        .iter()
        .find(|node| node.name == "call")
        .and_then(|node| node.error.clone())
        .unwrap_or_default();
    assert!(
        error.starts_with("child run run-a-call of workflow sleeper was cancelled"),
        "{error}"
    );
    let run_b_child = bed.runs().get("run-b-call").await.unwrap();
    assert_eq!(
        run_b_child.status.and_then(|s| s.phase),
        Some(RunPhase::Running)
    );
    for name in ["run-b", "run-b-call"] {
        bed.runs()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cancel": true}})),
            )
            .await
            .expect("failed to cancel a run");
    }
    eventually("run B and its child to end", || {
        let runs = bed.runs();
        async move {
            let mut ended = 0;
            for name in ["run-b", "run-b-call"] {
                let phase = runs.get(name).await.ok()?.status?.phase?;
                ended += usize::from(phase.is_terminal());
            }
            (ended == 2).then_some(())
        }
    })
    .await;
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_running_child() {
    let bed = Bed::start("cancel-parent").await;
    bed.apply_workflow(
        "slow",
        json!({"nodes": [{"name": "nap", "wait": {"duration": "60s"}}]}),
    )
    .await;
    bed.apply_workflow("calls-slow", parent_workflow("slow", json!({})))
        .await;
    bed.create_run("parent", "calls-slow", json!({})).await;
    bed.wait_run("parent-call", "the child running", |run| {
        run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Running)
    })
    .await;

    // The parent's Job is deleted at once, so its runner cannot cancel the
    // child itself: the operator must.
    bed.runs()
        .patch(
            "parent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .expect("cancel the parent");
    bed.wait_terminal("parent", RunPhase::Cancelled).await;
    let child = bed.wait_terminal("parent-call", RunPhase::Cancelled).await;
    assert_eq!(child.spec.cancel, Some(true));
    bed.finish().await;
}

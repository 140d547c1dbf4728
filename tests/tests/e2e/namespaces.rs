//! Namespace-scoped mode with a list: an operator started with
//! `SLUICE_WATCH_NAMESPACES=a,b` runs the runs of both namespaces, takes
//! webhooks for both, and never touches a third namespace.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_crds::{RunPhase, Workflow, WorkflowRun};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::operator::{Operator, OperatorOptions, cluster, eventually};

use crate::operator_support::quick_workflow;

const TOKEN: &str = "namespaces-e2e-token";

/// The workflow, its webhook's Secret and one run, in `namespace`.
async fn seed(cluster: &TestCluster, namespace: &str) {
    let mut spec = quick_workflow();
    spec["triggers"] = json!([{"name": "go", "webhook": {
        "auth": {"type": "Bearer", "secretRef": {"name": "hook", "key": "token"}},
    }}]);
    let objects: [Value; 3] = [
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hook", "namespace": namespace},
            "stringData": {"token": TOKEN},
        }),
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "greeter", "namespace": namespace},
            "spec": spec,
        }),
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": "first", "namespace": namespace},
            "spec": {"workflowRef": {"name": "greeter"}, "input": {"name": namespace}},
        }),
    ];
    for object in objects {
        cluster
            .apply_value(object, std::path::Path::new("<test>"))
            .await
            .expect("failed to apply an object");
    }
}

async fn wait_succeeded(cluster: &TestCluster, namespace: &str, name: &str) -> WorkflowRun {
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), namespace);
    let run = eventually(&format!("run {namespace}/{name} to finish"), || {
        let runs = runs.clone();
        async move {
            let run = runs.get_opt(name).await.ok()??;
            let phase = run.status.as_ref()?.phase?;
            phase.is_terminal().then_some(run)
        }
    })
    .await;
    let status = run.status.clone().unwrap_or_default();
    assert_eq!(
        status.phase,
        Some(RunPhase::Succeeded),
        "run {namespace}/{name}: {:?} {:?}",
        status.reason,
        status.message
    );
    run
}

async fn post_hook(operator: &Operator, namespace: &str) -> (StatusCode, Value) {
    let url = format!("{}/hooks/{namespace}/greeter/go", operator.webhook_url());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&json!({"name": "hook"}))
        .send()
        .await
        .expect("the webhook server answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watching_two_namespaces_runs_both_and_never_touches_a_third() {
    sluice_e2e::cluster::install_crypto_provider();
    let mut cluster = cluster("watch-list")
        .await
        .expect("failed to start the test cluster");
    let mut watched = Vec::new();
    for suffix in ["a", "b"] {
        let name = cluster
            .create_namespace(suffix)
            .await
            .expect("failed to create a namespace");
        watched.push(name);
    }
    // The test's own namespace is the one left out; its Jobs would run
    // like the others' (the kubelet emulator watches it too).
    let ignored = cluster.namespace().to_string();
    // Everything exists before the operator starts, the ignored namespace's
    // objects first: an operator watching every namespace would find them
    // in the same first list as the others'.
    seed(&cluster, &ignored).await;
    for name in &watched {
        seed(&cluster, name).await;
    }
    let options = OperatorOptions {
        watch_namespaces: watched.clone(),
        ..OperatorOptions::default()
    };
    let mut operator = Operator::start(&cluster, options)
        .await
        .expect("failed to start the operator");

    for name in &watched {
        let run = wait_succeeded(&cluster, name, "first").await;
        let job = run
            .status
            .as_ref()
            .and_then(|status| status.job_name.clone())
            .expect("the run names its Job");
        Api::<Job>::namespaced(cluster.client(), name)
            .get(&job)
            .await
            .expect("the run's Job is in its namespace");
        // A webhook of a watched namespace starts a run there.
        let (status, answer) = eventually(&format!("the webhook of {name}"), || async {
            let (status, answer) = post_hook(&operator, name).await;
            (status != StatusCode::NOT_FOUND).then_some((status, answer))
        })
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let hooked = answer["run"].as_str().expect("the run's name");
        wait_succeeded(&cluster, name, hooked).await;
    }

    // The ignored namespace: its webhook is unknown, and nothing the
    // operator writes is on its objects.
    let (status, answer) = post_hook(&operator, &ignored).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let run = Api::<WorkflowRun>::namespaced(cluster.client(), &ignored)
        .get("first")
        .await
        .expect("the ignored run exists");
    assert!(run.status.is_none(), "{:?}", run.status);
    assert!(run.finalizers().is_empty(), "{:?}", run.finalizers());
    let workflow = Api::<Workflow>::namespaced(cluster.client(), &ignored)
        .get("greeter")
        .await
        .expect("the ignored workflow exists");
    assert!(workflow.status.is_none(), "{:?}", workflow.status);
    let jobs = Api::<Job>::namespaced(cluster.client(), &ignored)
        .list(&ListParams::default())
        .await
        .expect("jobs list");
    assert!(jobs.items.is_empty(), "no Job in the ignored namespace");
    let runs = Api::<WorkflowRun>::namespaced(cluster.client(), &ignored)
        .list(&ListParams::default())
        .await
        .expect("runs list");
    assert_eq!(runs.items.len(), 1, "the webhook created no run there");

    operator.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

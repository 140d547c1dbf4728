//! The `helm test` hook's script, run as the hook Pod would run it but on
//! this machine: the chart is rendered for the test's namespace, the
//! hook's ConfigMap files are written to a folder, and `test.sh` runs with
//! the workspace's `sluice-runner` against the real operator, so the
//! workflows the hook applies and polls are proven to work end to end.

use std::time::Duration;

use kube::api::Api;
use serde_json::Value;
use sluice_crds::{RunPhase, WorkflowRun};
use sluice_e2e::binaries::{Binary, locate};
use sluice_e2e::operator::{Operator, OperatorOptions, cluster};

use super::{find, objects, render_in};

/// Where the hook Pod mounts its ConfigMap (see templates/tests/).
const MOUNT: &str = "/etc/sluice-test/";

#[tokio::test]
async fn the_helm_test_hook_runs_a_workflow_to_success() {
    let cluster = cluster("chart-hook").await.expect("start the test cluster");
    let mut operator = Operator::start(&cluster, OperatorOptions::default())
        .await
        .expect("start the operator");

    let rendered = objects(&render_in(cluster.namespace(), "{}"));
    let files = find(&rendered, "ConfigMap", "demo-operator-test").expect("the hook's ConfigMap");
    let pod = find(&rendered, "Pod", "demo-operator-test").expect("the hook's Pod");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let mounted = pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("a mount");
    assert_eq!(format!("{mounted}/"), MOUNT);

    let folder = tempfile::tempdir().expect("a folder");
    let prefix = format!("{}/", folder.path().display());
    for (name, text) in files["data"].as_object().expect("data") {
        let text = text.as_str().expect("text").replace(MOUNT, &prefix);
        std::fs::write(folder.path().join(name), text).expect("write a hook file");
    }
    let runner = locate(Binary::Runner).expect("sluice-runner is built");
    let path = format!(
        "{}:{}",
        runner.parent().expect("a folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = tokio::process::Command::new("sh")
        .arg(folder.path().join("test.sh"))
        .env("PATH", path)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("TIMEOUT_SECONDS", "60")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), script)
        .await
        .expect("the hook script ends within its own timeout")
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the hook script failed:\n{stdout}\n{stderr}\noperator log:\n{}",
        operator.logs()
    );
    let run_name = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("WorkflowRun ")?
                .strip_suffix(" succeeded")
        })
        .unwrap_or_else(|| panic!("the script names the run it waited for:\n{stdout}"));

    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    let run = runs.get(run_name).await.expect("the hook's run");
    let status = run.status.expect("a status");
    assert_eq!(status.phase, Some(RunPhase::Succeeded));
    assert_eq!(
        serde_json::to_value(&status.output).expect("output")["greet"]["greeting"],
        Value::from("hello from helm test"),
        "{:?}",
        status.output
    );
    operator.kill().await;
    cluster.finish().await.expect("finish the cluster");
}

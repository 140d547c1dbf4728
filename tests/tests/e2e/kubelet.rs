//! Jobs run to completion: by the kubelet emulator (default) or by the
//! cluster's nodes (`SLUICE_E2E_KUBELET=cluster`). The assertions only read
//! Job and Pod objects, so they hold for both.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sluice_e2e::binaries::{Binary, locate};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::kubelet::SIMULATE_ANNOTATION;

use crate::support::eventually;

const SHELL_IMAGE: &str = "busybox:1.36";

/// A Job running `command`, with `backoffLimit: 0` unless `extra` says otherwise.
fn job(name: &str, image: &str, command: &[&str], extra: Value) -> Job {
    let mut value = json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": image, "command": command}],
            }},
        },
    });
    json_patch::merge(&mut value, &extra);
    serde_json::from_value(value).expect("a valid Job")
}

fn condition(job: &Job, kind: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == kind && condition.status == "True")
        .map(|condition| {
            (
                condition.type_.clone(),
                condition.reason.clone().unwrap_or_default(),
            )
        })
}

async fn run_job(cluster: &TestCluster, job: &Job) -> (Job, Vec<Pod>) {
    let jobs: Api<Job> = Api::namespaced(cluster.client(), cluster.namespace());
    let name = job.name_any();
    jobs.create(&PostParams::default(), job).await.unwrap();
    let finished = eventually(&format!("job {name} to finish"), || {
        let jobs = jobs.clone();
        let name = name.clone();
        async move {
            let job = jobs.get(&name).await.ok()?;
            (condition(&job, "Complete").is_some() || condition(&job, "Failed").is_some())
                .then_some(job)
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), cluster.namespace());
    let mut owned = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap()
        .items;
    owned.sort_by_key(|pod| pod.creation_timestamp());
    (finished, owned)
}

fn terminated(pod: &Pod) -> (i32, String) {
    let state = pod
        .status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .and_then(|statuses| statuses.first())
        .and_then(|status| status.state.as_ref())
        .and_then(|state| state.terminated.as_ref())
        .unwrap_or_else(|| panic!("pod {} has no terminated container", pod.name_any()));
    (state.exit_code, state.reason.clone().unwrap_or_default())
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|status| status.phase.clone())
}

#[tokio::test]
async fn shell_script_job_sees_env_and_mounted_files_and_completes() {
    let cluster = TestCluster::start("kubelet-shell").await.unwrap();
    let params = PostParams::default();
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), cluster.namespace());
    secrets
        .create(
            &params,
            &serde_json::from_value(
                json!({"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    config_maps
        .create(
            &params,
            &serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello", "file.txt": "from configmap"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let script = r#"test "$(cat /etc/creds/token)" = s3cret || exit 3
test "$GREETING" = hello || exit 4
test "$(cat /config/file.txt)" = "from configmap" || exit 5
test -n "$POD_NAME" || exit 6
echo "script done in $POD_NAME""#;
    let extra = json!({"spec": {"template": {"spec": {
        "containers": [{
            "name": "main", "image": SHELL_IMAGE, "command": ["sh", "-c", script],
            "env": [
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "volumeMounts": [
                {"name": "creds", "mountPath": "/etc/creds", "readOnly": true},
                {"name": "config", "mountPath": "/config"},
            ],
        }],
        "volumes": [
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "config", "configMap": {"name": "settings"}},
        ],
    }}}});
    let (finished, pods) = run_job(&cluster, &job("shell", SHELL_IMAGE, &[], extra)).await;
    let status = finished.status.clone().unwrap();
    assert_eq!(
        condition(&finished, "Complete").map(|(_, reason)| reason),
        Some("CompletionsReached".into()),
        "{status:?}"
    );
    assert_eq!((status.succeeded, status.failed.unwrap_or(0)), (Some(1), 0));
    assert!(
        status.start_time.is_some() && status.completion_time.is_some(),
        "{status:?}"
    );
    assert_eq!(pods.len(), 1);
    assert_eq!(phase(&pods[0]).as_deref(), Some("Succeeded"));
    assert_eq!(terminated(&pods[0]), (0, "Completed".to_string()));
    if let Some(kubelet) = cluster.kubelet() {
        let logs = kubelet
            .logs(cluster.namespace(), &pods[0].name_any())
            .unwrap_or_default();
        assert!(
            logs.contains(&format!("script done in {}", pods[0].name_any())),
            "{logs}"
        );
    }
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn job_whose_command_exits_non_zero_fails() {
    let cluster = TestCluster::start("kubelet-fail").await.unwrap();
    let command = ["sh", "-c", "echo failing >&2; exit 3"];
    let (finished, pods) =
        run_job(&cluster, &job("failing", SHELL_IMAGE, &command, json!({}))).await;
    let status = finished.status.clone().unwrap();
    assert_eq!(
        condition(&finished, "Failed").map(|(_, reason)| reason),
        Some("BackoffLimitExceeded".into())
    );
    assert_eq!((status.failed, status.succeeded.unwrap_or(0)), (Some(1), 0));
    assert!(status.completion_time.is_none());
    assert_eq!(pods.len(), 1);
    assert_eq!(phase(&pods[0]).as_deref(), Some("Failed"));
    assert_eq!(terminated(&pods[0]), (3, "Error".to_string()));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn failed_pods_are_retried_up_to_the_backoff_limit() {
    let cluster = TestCluster::start("kubelet-retry").await.unwrap();
    let command = ["sh", "-c", "exit 1"];
    let (finished, pods) = run_job(
        &cluster,
        &job(
            "retried",
            SHELL_IMAGE,
            &command,
            json!({"spec": {"backoffLimit": 1}}),
        ),
    )
    .await;
    assert_eq!(
        condition(&finished, "Failed").map(|(_, reason)| reason),
        Some("BackoffLimitExceeded".into())
    );
    assert_eq!(finished.status.unwrap().failed, Some(2));
    assert_eq!(pods.len(), 2);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn active_deadline_kills_the_process() {
    let cluster = TestCluster::start("kubelet-deadline").await.unwrap();
    let command = ["sh", "-c", "sleep 60"];
    let extra = json!({"spec": {"activeDeadlineSeconds": 1}});
    let (finished, pods) = run_job(&cluster, &job("slow", SHELL_IMAGE, &command, extra)).await;
    assert_eq!(
        condition(&finished, "Failed").map(|(_, reason)| reason),
        Some("DeadlineExceeded".into())
    );
    assert!(!pods.is_empty());
    assert_eq!(phase(&pods[0]).as_deref(), Some("Failed"));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn oom_killed_container_fails_the_job() {
    let cluster = TestCluster::start("kubelet-oom").await.unwrap();
    // On a node this really runs out of its 16Mi; the emulator simulates it
    // (and never starts the process) because of the annotation.
    let command = ["sh", "-c", "x=a; while true; do x=\"$x$x\"; done"];
    let extra = json!({
        "metadata": {"annotations": {SIMULATE_ANNOTATION: "OOMKilled"}},
        "spec": {"template": {"spec": {"containers": [{
            "name": "main", "image": SHELL_IMAGE, "command": command,
            "resources": {"limits": {"memory": "16Mi"}},
        }]}}},
    });
    let (finished, pods) = run_job(&cluster, &job("hungry", SHELL_IMAGE, &command, extra)).await;
    assert_eq!(
        condition(&finished, "Failed").map(|(_, reason)| reason),
        Some("BackoffLimitExceeded".into())
    );
    assert_eq!(terminated(&pods[0]), (137, "OOMKilled".to_string()));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn sluice_runner_help_job_succeeds() {
    let runner = locate(Binary::Runner).unwrap_or_else(|error| panic!("{error}"));
    assert!(runner.is_file());
    let cluster = TestCluster::start("kubelet-runner").await.unwrap();
    let image =
        std::env::var("SLUICE_E2E_RUNNER_IMAGE").unwrap_or_else(|_| "sluice-runner:e2e".into());
    let (finished, pods) = run_job(
        &cluster,
        &job(
            "runner-help",
            &image,
            &["sluice-runner", "--help"],
            json!({}),
        ),
    )
    .await;
    assert_eq!(
        condition(&finished, "Complete").map(|(kind, _)| kind),
        Some("Complete".into()),
        "{:?}",
        finished.status
    );
    assert_eq!(terminated(&pods[0]).0, 0);
    cluster.finish().await.unwrap();
}

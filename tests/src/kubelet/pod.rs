//! One emulated Pod of a Job: the Pod object, its status through its
//! life, and its process (prepared by `setup.rs`, which documents how
//! files, paths and the environment are laid out).
use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::setup::{io_error, kube_error, write_file};
use super::{KubeletError, KubeletOptions, now};

/// How a pod ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOutcome {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit, OOM kill or a pod that could not start.
    Failed {
        /// The container's exit code.
        exit_code: i32,
        /// The container's termination reason.
        reason: String,
    },
    /// Killed because `activeDeadlineSeconds` passed.
    DeadlineExceeded,
}

/// Stops sidecars after the main container ended, last started first.
async fn stop_sidecars(sidecars: Vec<tokio::process::Child>) {
    for mut sidecar in sidecars.into_iter().rev() {
        let _ = sidecar.kill().await;
    }
}

/// Where a pod's container log is written.
pub fn log_path(root: &Path, namespace: &str, pod: &str) -> PathBuf {
    root.join(namespace)
        .join(pod)
        .join("logs")
        .join("container.log")
}

/// One pod run of a Job.
pub struct PodRun {
    /// Client for the API.
    pub client: kube::Client,
    /// Emulator options.
    pub options: KubeletOptions,
    /// The Job the pod belongs to.
    pub job: Job,
    /// When `activeDeadlineSeconds` runs out.
    pub deadline: Option<tokio::time::Instant>,
    /// `SIMULATE_ANNOTATION` of the Job.
    pub simulate: Option<String>,
}

fn container_status(container: &Container, state: Value, ready: bool) -> Value {
    json!([{
        "name": container.name,
        "image": container.image.clone().unwrap_or_default(),
        "imageID": "",
        "containerID": "emulated://sluice-e2e",
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    }])
}

fn pod_conditions(ready: bool) -> Value {
    let now = now();
    let status = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        {"type": "Ready", "status": status, "lastTransitionTime": now},
    ])
}

impl PodRun {
    fn build_pod(&self, name: &str) -> Result<Pod, KubeletError> {
        let job_name = self.job.metadata.name.clone().unwrap_or_default();
        let job_uid = self.job.metadata.uid.clone().unwrap_or_default();
        let template = self
            .job
            .spec
            .as_ref()
            .map(|spec| spec.template.clone())
            .unwrap_or_default();
        let template_metadata = template.metadata.unwrap_or_default();
        let mut labels = template_metadata.labels.unwrap_or_default();
        for (key, value) in [
            ("job-name", &job_name),
            ("batch.kubernetes.io/job-name", &job_name),
            ("controller-uid", &job_uid),
            ("batch.kubernetes.io/controller-uid", &job_uid),
        ] {
            labels.insert(key.to_string(), value.clone());
        }
        let mut spec =
            serde_json::to_value(template.spec.unwrap_or_default()).unwrap_or_else(|_| json!({}));
        spec["nodeName"] = json!("sluice-e2e-kubelet");
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": self.namespace(),
                "labels": labels,
                "annotations": template_metadata.annotations.unwrap_or_default(),
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid,
                    "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": spec,
        }))
        .map_err(|error| KubeletError::Unsupported(format!("invalid pod template: {error}")))
    }

    async fn write_status(
        &self,
        pods: &Api<Pod>,
        name: &str,
        status: Value,
    ) -> Result<(), KubeletError> {
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(kube_error(format!("write status of pod {name}")))?;
        Ok(())
    }

    /// Creates the pod, runs its process and reports how it ended.
    pub async fn run(self) -> Result<PodOutcome, KubeletError> {
        let job_name = self.job.metadata.name.clone().unwrap_or_default();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut base = job_name.clone();
        base.truncate(57);
        let name = format!("{base}-{}", &suffix[..5]);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
        let pod = pods
            .create(&PostParams::default(), &self.build_pod(&name)?)
            .await
            .map_err(kube_error(format!("create pod {name}")))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(container) = spec.containers.first().cloned() else {
            return Err(KubeletError::Unsupported(format!(
                "pod {name} has no container"
            )));
        };
        let folder = self.options.root.join(self.namespace()).join(&name);
        let log = log_path(&self.options.root, &self.namespace(), &name);
        let prepared = match self.prepare(&pod, &spec, &container, &folder).await {
            Ok(prepared) => prepared,
            Err(KubeletError::Unsupported(message)) => {
                return self
                    .finish(
                        &pods,
                        &name,
                        &container,
                        None,
                        128,
                        "ContainerCannotRun",
                        Some(&message),
                    )
                    .await;
            }
            Err(error) => return Err(error),
        };
        write_file(&log, b"")?;
        let started_at = now();
        let running = json!({
            "phase": "Running",
            "startTime": started_at,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": pod_conditions(true),
            "containerStatuses": container_status(&container, json!({"running": {"startedAt": started_at}}), true),
        });
        match self.simulate.as_deref() {
            Some("OOMKilled") => {
                self.write_status(&pods, &name, running).await?;
                return self
                    .finish(
                        &pods,
                        &name,
                        &container,
                        Some(&started_at),
                        137,
                        "OOMKilled",
                        None,
                    )
                    .await;
            }
            Some("DeadlineExceeded") => {
                self.write_status(&pods, &name, running).await?;
                return self
                    .finish(
                        &pods,
                        &name,
                        &container,
                        Some(&started_at),
                        137,
                        "DeadlineExceeded",
                        None,
                    )
                    .await;
            }
            _ => {}
        }
        // Native sidecars (init containers with restartPolicy Always) start
        // in order before the main container and are killed after it ends.
        let sidecars = match self.start_sidecars(&pod, &spec, &folder).await {
            Ok(sidecars) => sidecars,
            Err(KubeletError::Unsupported(message)) => {
                return self
                    .finish(
                        &pods,
                        &name,
                        &container,
                        None,
                        128,
                        "ContainerCannotRun",
                        Some(&message),
                    )
                    .await;
            }
            Err(error) => return Err(error),
        };
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .map_err(io_error("open", &log))?;
        let error_file = log_file.try_clone().map_err(io_error("open", &log))?;
        let spawned = tokio::process::Command::new(&prepared.program)
            .args(&prepared.args)
            .env_clear()
            .envs(&prepared.env)
            .current_dir(&prepared.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(error_file))
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let message = format!("failed to start {}: {error}", prepared.program);
                return self
                    .finish(
                        &pods,
                        &name,
                        &container,
                        None,
                        128,
                        "ContainerCannotRun",
                        Some(&message),
                    )
                    .await;
            }
        };
        self.write_status(&pods, &name, running).await?;
        let deadline_passed = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let exit = tokio::select! {
            exit = child.wait() => exit.map_err(io_error("wait for", Path::new(&prepared.program)))?,
            () = deadline_passed => {
                let _ = child.kill().await;
                stop_sidecars(sidecars).await;
                return self.finish(&pods, &name, &container, Some(&started_at), 137, "DeadlineExceeded", None).await;
            }
        };
        stop_sidecars(sidecars).await;
        let exit_code = exit.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + exit.signal().unwrap_or(9)
        });
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.finish(
            &pods,
            &name,
            &container,
            Some(&started_at),
            exit_code,
            reason,
            None,
        )
        .await
    }

    /// Starts the pod's native sidecars (init containers whose
    /// `restartPolicy` is `Always`) in spec order, each as a local process
    /// prepared like the main container and logging to
    /// `logs/<container>.log`. The emulator neither restarts a sidecar that
    /// exits nor waits for probes: the runner's own health check waits
    /// for a sidecar to answer.
    async fn start_sidecars(
        &self,
        pod: &Pod,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        folder: &Path,
    ) -> Result<Vec<tokio::process::Child>, KubeletError> {
        let mut children = Vec::new();
        for init in spec.init_containers.iter().flatten() {
            if init.restart_policy.as_deref() != Some("Always") {
                return Err(KubeletError::Unsupported(format!(
                    "init container {:?} is not a native sidecar (restartPolicy: Always): the emulator runs only those",
                    init.name
                )));
            }
            let prepared = self.prepare(pod, spec, init, folder).await?;
            let log = folder.join("logs").join(format!("{}.log", init.name));
            write_file(&log, b"")?;
            let log_file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .map_err(io_error("open", &log))?;
            let error_file = log_file.try_clone().map_err(io_error("open", &log))?;
            let child = tokio::process::Command::new(&prepared.program)
                .args(&prepared.args)
                .env_clear()
                .envs(&prepared.env)
                .current_dir(&prepared.working_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log_file))
                .stderr(Stdio::from(error_file))
                .kill_on_drop(true)
                .spawn()
                .map_err(|error| {
                    KubeletError::Unsupported(format!(
                        "failed to start sidecar {:?} ({}): {error}",
                        init.name, prepared.program
                    ))
                })?;
            children.push(child);
        }
        Ok(children)
    }

    /// Writes the terminated status; `reason` `DeadlineExceeded` marks the
    /// pod (not the container) as killed for its deadline.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        pods: &Api<Pod>,
        name: &str,
        container: &Container,
        started_at: Option<&str>,
        exit_code: i32,
        reason: &str,
        message: Option<&str>,
    ) -> Result<PodOutcome, KubeletError> {
        let finished_at = now();
        let deadline = reason == "DeadlineExceeded";
        let container_reason = if deadline { "Error" } else { reason };
        let mut terminated = json!({
            "exitCode": exit_code,
            "reason": container_reason,
            "startedAt": started_at.unwrap_or(&finished_at),
            "finishedAt": finished_at,
        });
        if let Some(message) = message {
            terminated["message"] = json!(message);
        }
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        let mut status = json!({
            "phase": phase,
            "startTime": started_at.unwrap_or(&finished_at),
            "conditions": pod_conditions(false),
            "containerStatuses": container_status(container, json!({"terminated": terminated}), false),
        });
        if deadline {
            status["reason"] = json!("DeadlineExceeded");
            status["message"] =
                json!("Pod was active on the node longer than the specified deadline");
        }
        self.write_status(pods, name, status).await?;
        Ok(if deadline {
            PodOutcome::DeadlineExceeded
        } else if exit_code == 0 {
            PodOutcome::Succeeded
        } else {
            PodOutcome::Failed {
                exit_code,
                reason: reason.to_string(),
            }
        })
    }
}

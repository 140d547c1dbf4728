//! A kubelet and Job-controller emulator that talks to the API only
//! through `kube::Client`, so it works against the stand-in and against a
//! real cluster alike.
//!
//! It watches Jobs (in one namespace, or all), and for each new Job runs
//! one Pod at a time until one succeeds or `backoffLimit` failures are
//! reached: it creates the Pod object (owned by the Job), runs the first
//! container's command as a local process (see `setup.rs` for files, env
//! and path rewriting), keeps the Pod status true (Pending → Running →
//! Succeeded/Failed with the container's exit code) and writes the Job's
//! status: `startTime`, `active`, `succeeded`/`failed` counts, and the
//! `SuccessCriteriaMet`+`Complete` or `FailureTarget`+`Failed` conditions
//! with the real reasons (`BackoffLimitExceeded`, `DeadlineExceeded`),
//! `completionTime` on success. `activeDeadlineSeconds` is enforced by
//! killing the process. Retries happen without the real back-off delay.
//! A suspended Job (`spec.suspend: true`) is left alone until resumed.
//!
//! Tests ask for failures the host cannot produce with the Job annotation
//! [`SIMULATE_ANNOTATION`]: `OOMKilled` (the pod goes Running and then
//! terminates with exit code 137, reason `OOMKilled`) or `DeadlineExceeded`
//! (handled as if `activeDeadlineSeconds` had just passed). In both cases
//! the process is never started, so a test can give the Job a command that
//! really exhausts memory on a real node. When the Job is created by
//! someone else (the operator), tests ask through [`Kubelet::simulate`]
//! instead: the same failures, keyed by the Job's name.
//!
//! Native sidecars (init containers with `restartPolicy: Always`, as the
//! operator adds for custom node types) run as local processes too, as
//! Kubernetes runs them: started in spec order before the main container,
//! killed after it ends; each logs to `logs/<container>.log`.
//!
//! Not emulated: parallelism/completions above one, plain init containers
//! (a pod with one cannot start), restarts of a sidecar that exits, probes,
//! images (the command must be explicit), resource limits, pod failure
//! policies, and Pods not created by a Job.

pub mod pod;
mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::task::{AbortHandle, JoinSet};

use pod::{PodOutcome, PodRun};

/// Job annotation that makes the emulator simulate a failure:
/// `OOMKilled` or `DeadlineExceeded`.
pub const SIMULATE_ANNOTATION: &str = "e2e.sluice.dev/simulate";
/// Field manager of the emulator's writes.
pub const FIELD_MANAGER: &str = "sluice-e2e-kubelet";

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A kube request failed.
    #[error("failed to {action}")]
    Kube {
        /// What the emulator was doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A local file operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What the emulator was doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Job or Pod cannot be run by the emulator.
    #[error("cannot run pod: {0}")]
    Unsupported(String),
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    /// Folder for pods' files and logs.
    pub root: PathBuf,
    /// Only Jobs in this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Programs by command name (`sluice-runner` → its path in the target dir).
    pub programs: HashMap<String, PathBuf>,
    /// Failures to simulate by Job name, like [`SIMULATE_ANNOTATION`]
    /// (shared with [`Kubelet::simulate`]).
    pub simulated: Arc<Mutex<HashMap<String, String>>>,
}

impl KubeletOptions {
    /// Options rooted at `root`, every namespace, no program mapping.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            namespace: None,
            programs: HashMap::new(),
            simulated: Arc::default(),
        }
    }

    /// Watch only one namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Run `path` when a container's command is `name`.
    pub fn program(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.programs.insert(name.to_string(), path.into());
        self
    }
}

/// The running emulator; stops (and kills its processes) when dropped.
#[derive(Debug)]
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    root: PathBuf,
    simulated: Arc<Mutex<HashMap<String, String>>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    /// Starts watching Jobs.
    pub fn start(client: kube::Client, options: KubeletOptions) -> Self {
        let root = options.root.clone();
        let simulated = options.simulated.clone();
        let task = tokio::spawn(run(client, options));
        Self {
            task,
            root,
            simulated,
        }
    }

    /// Simulates `failure` (`OOMKilled` or `DeadlineExceeded`, as with
    /// [`SIMULATE_ANNOTATION`]) for the Job named `job` once it appears:
    /// for Jobs a test does not create itself, e.g. the operator's.
    pub fn simulate(&self, job: &str, failure: &str) {
        self.simulated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(job.to_string(), failure.to_string());
    }

    /// What a pod's container wrote to stdout and stderr so far.
    pub fn logs(&self, namespace: &str, pod: &str) -> Option<String> {
        std::fs::read_to_string(pod::log_path(&self.root, namespace, pod)).ok()
    }
}

fn jobs_api(client: &kube::Client, namespace: Option<&str>) -> Api<Job> {
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|condition| {
                (condition.type_ == "Complete" || condition.type_ == "Failed")
                    && condition.status == "True"
            })
        })
}

async fn run(client: kube::Client, options: KubeletOptions) {
    let jobs = jobs_api(&client, options.namespace.as_deref());
    let mut events = std::pin::pin!(watcher(jobs, watcher::Config::default()).default_backoff());
    let mut running: JoinSet<()> = JoinSet::new();
    let mut handles: HashMap<String, AbortHandle> = HashMap::new();
    while let Some(event) = events.next().await {
        while running.try_join_next().is_some() {}
        let job = match event {
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => job,
            Ok(watcher::Event::Delete(job)) => {
                if let Some(handle) = job
                    .metadata
                    .uid
                    .as_ref()
                    .and_then(|uid| handles.remove(uid))
                {
                    handle.abort();
                }
                continue;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "kubelet emulator: job watch failed");
                continue;
            }
        };
        let Some(uid) = job.metadata.uid.clone() else {
            continue;
        };
        if job.metadata.deletion_timestamp.is_some() {
            if let Some(handle) = handles.remove(&uid) {
                handle.abort();
            }
            continue;
        }
        let suspended = job
            .spec
            .as_ref()
            .and_then(|spec| spec.suspend)
            .unwrap_or(false);
        if handles.contains_key(&uid) || is_finished(&job) || suspended {
            continue;
        }
        let handle = running.spawn(run_job(client.clone(), options.clone(), job));
        handles.insert(uid, handle);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = now();
    json!({
        "type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now,
    })
}

/// The final Job status after the last pod.
fn finished_status(outcome: &PodOutcome, succeeded: i32, failed: i32, start_time: &str) -> Value {
    match outcome {
        PodOutcome::Succeeded => json!({
            "startTime": start_time, "active": 0, "ready": 0, "succeeded": succeeded, "failed": failed,
            "completionTime": now(),
            "conditions": [
                condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
            ],
        }),
        PodOutcome::DeadlineExceeded => json!({
            "startTime": start_time, "active": 0, "ready": 0, "succeeded": succeeded, "failed": failed,
            "conditions": [
                condition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"),
                condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
            ],
        }),
        PodOutcome::Failed { .. } => json!({
            "startTime": start_time, "active": 0, "ready": 0, "succeeded": succeeded, "failed": failed,
            "conditions": [
                condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            ],
        }),
    }
}

async fn write_job_status(jobs: &Api<Job>, name: &str, status: Value) -> Result<(), KubeletError> {
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(|source| KubeletError::Kube {
        action: format!("write status of job {name}"),
        source,
    })?;
    Ok(())
}

async fn run_job(client: kube::Client, options: KubeletOptions, job: Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = drive_job(&client, &options, &jobs, &job).await {
        tracing::warn!(%error, job = %name, "kubelet emulator: job failed to run");
        let message = format!("kubelet emulator: {error}");
        let status = json!({
            "active": 0,
            "conditions": [condition("FailureTarget", "KubeletEmulatorError", &message), condition("Failed", "KubeletEmulatorError", &message)],
        });
        let _ = write_job_status(&jobs, &name, status).await;
    }
}

async fn drive_job(
    client: &kube::Client,
    options: &KubeletOptions,
    jobs: &Api<Job>,
    job: &Job,
) -> Result<(), KubeletError> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let started = tokio::time::Instant::now();
    let deadline = spec
        .active_deadline_seconds
        .map(|seconds| started + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
    let simulate = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(SIMULATE_ANNOTATION))
        .cloned()
        .or_else(|| {
            options
                .simulated
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(&name)
                .cloned()
        });
    let start_time = now();
    write_job_status(
        jobs,
        &name,
        json!({"startTime": start_time, "active": 1, "ready": 0}),
    )
    .await?;
    let mut failed = 0;
    loop {
        let run = PodRun {
            client: client.clone(),
            options: options.clone(),
            job: job.clone(),
            deadline,
            simulate: simulate.clone(),
        };
        let outcome = run.run().await?;
        let finished = match &outcome {
            PodOutcome::Succeeded => true,
            PodOutcome::DeadlineExceeded => {
                failed += 1;
                true
            }
            PodOutcome::Failed { .. } => {
                failed += 1;
                failed > backoff_limit
            }
        };
        if finished {
            let succeeded = i32::from(matches!(outcome, PodOutcome::Succeeded));
            return write_job_status(
                jobs,
                &name,
                finished_status(&outcome, succeeded, failed, &start_time),
            )
            .await;
        }
        write_job_status(jobs, &name, json!({"active": 1, "failed": failed})).await?;
    }
}

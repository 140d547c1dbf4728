//! What the Job and its Pod say about a run the runner could not finish
//! itself: out of memory, past its deadline, an image that cannot be
//! pulled, an eviction, or a runner that exited without reporting. Pure:
//! observed objects in, an outcome (or none yet) out.
//!
//! The runner's own report wins: this is consulted only while the run API
//! has not received the run's final event. `ErrImagePull` alone is treated
//! as transient (the kubelet retries); `ImagePullBackOff`, an invalid image
//! name and container configuration errors end the run.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Reasons a run can fail for outside the engine, as set in
/// `status.reason` and Events.
pub mod reason {
    /// The runner container exceeded its memory limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// The run exceeded `spec.activeDeadlineSeconds`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The runner image cannot be pulled.
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    /// The runner container could not be created.
    pub const CONTAINER_CONFIG_ERROR: &str = "ContainerConfigError";
    /// The node evicted the runner pod.
    pub const EVICTED: &str = "Evicted";
    /// The runner exited without reporting the run's end.
    pub const RUNNER_LOST: &str = "RunnerLost";
}

/// Why a run ended, according to its Job and Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    /// One of [`reason`].
    pub reason: &'static str,
    /// What happened and what to do about it.
    pub message: String,
}

/// The outcome of `job` (with its `pods`), or `None` while it is still
/// running normally.
pub fn observe_job_outcome(job: &Job, pods: &[Pod]) -> Option<JobOutcome> {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    for pod in pods {
        let status = pod.status.as_ref();
        if status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
            let detail = status.and_then(|s| s.message.clone()).unwrap_or_default();
            return Some(JobOutcome {
                reason: reason::EVICTED,
                message: format!("the node evicted the runner pod: {detail}"),
            });
        }
        let containers = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        if let Some(outcome) = containers
            .iter()
            .find_map(|c| container_outcome(c, &job_name))
        {
            return Some(outcome);
        }
    }

    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let is_true = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if let Some(failed) = is_true("Failed") {
        if failed.reason.as_deref() == Some("DeadlineExceeded") {
            let seconds = job
                .spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default();
            return Some(JobOutcome {
                reason: reason::DEADLINE_EXCEEDED,
                message: format!(
                    "the run exceeded its deadline of {seconds}s and was stopped: raise spec.activeDeadlineSeconds or speed up the slow nodes"
                ),
            });
        }
        let detail = failed.message.clone().unwrap_or_default();
        return Some(JobOutcome {
            reason: reason::RUNNER_LOST,
            message: format!(
                "the runner pod failed without reporting the run's end ({detail}): see `kubectl logs job/{job_name}`"
            ),
        });
    }
    if is_true("Complete").is_some() {
        return Some(JobOutcome {
            reason: reason::RUNNER_LOST,
            message: format!(
                "the runner exited without reporting the run's end: see `kubectl logs job/{job_name}`"
            ),
        });
    }
    None
}

fn container_outcome(container: &ContainerStatus, job_name: &str) -> Option<JobOutcome> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let detail = waiting.message.clone().unwrap_or_default();
        let image = &container.image;
        return match waiting.reason.as_deref() {
            Some("ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull") => {
                Some(JobOutcome {
                    reason: reason::IMAGE_PULL_FAILED,
                    message: format!(
                        "the runner image {image:?} cannot be pulled ({detail}): check the image name, the registry and imagePullSecrets"
                    ),
                })
            }
            Some("CreateContainerConfigError" | "CreateContainerError") => Some(JobOutcome {
                reason: reason::CONTAINER_CONFIG_ERROR,
                message: format!("the runner container could not be created: {detail}"),
            }),
            _ => None,
        };
    }
    let terminated = state.terminated.as_ref()?;
    if terminated.reason.as_deref() == Some("OOMKilled") {
        return Some(JobOutcome {
            reason: reason::OOM_KILLED,
            message: format!(
                "the runner was killed for exceeding its memory limit: raise spec.runner.resources.limits.memory (see `kubectl describe job/{job_name}`)"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
    };

    fn job(condition: Option<(&str, &str)>) -> Job {
        let mut job = Job::default();
        job.metadata.name = Some("run-1".to_owned());
        job.spec = Some(JobSpec {
            active_deadline_seconds: Some(60),
            ..JobSpec::default()
        });
        job.status = Some(JobStatus {
            conditions: condition.map(|(type_, reason)| {
                vec![JobCondition {
                    type_: type_.to_owned(),
                    status: "True".to_owned(),
                    reason: Some(reason.to_owned()),
                    message: Some("Job has reached the specified backoff limit".to_owned()),
                    ..JobCondition::default()
                }]
            }),
            ..JobStatus::default()
        });
        job
    }

    fn pod_with(state: ContainerState) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "runner".to_owned(),
                    image: "ghcr.io/sluice-dev/sluice-runner:nope".to_owned(),
                    state: Some(state),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: Some("not found".to_owned()),
            }),
            ..ContainerState::default()
        }
    }

    fn terminated(reason: &str, exit_code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some(reason.to_owned()),
                exit_code,
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    #[test]
    fn a_running_job_has_no_outcome_yet() {
        let running = pod_with(ContainerState::default());
        assert_eq!(observe_job_outcome(&job(None), &[running]), None);
        assert_eq!(
            observe_job_outcome(&job(None), &[pod_with(waiting("ErrImagePull"))]),
            None
        );
    }

    #[test]
    fn an_oom_kill_names_the_memory_limit_to_raise() {
        let outcome = observe_job_outcome(
            &job(Some(("Failed", "BackoffLimitExceeded"))),
            &[pod_with(terminated("OOMKilled", 137))],
        )
        .unwrap();
        assert_eq!(outcome.reason, reason::OOM_KILLED);
        assert!(outcome.message.contains("limits.memory"));
    }

    #[test]
    fn a_deadline_names_the_field_and_the_seconds() {
        let outcome = observe_job_outcome(&job(Some(("Failed", "DeadlineExceeded"))), &[]).unwrap();
        assert_eq!(outcome.reason, reason::DEADLINE_EXCEEDED);
        assert!(
            outcome.message.contains("60s") && outcome.message.contains("activeDeadlineSeconds")
        );
    }

    #[test]
    fn an_unpullable_image_fails_the_run_with_the_image_name() {
        let outcome =
            observe_job_outcome(&job(None), &[pod_with(waiting("ImagePullBackOff"))]).unwrap();
        assert_eq!(outcome.reason, reason::IMAGE_PULL_FAILED);
        assert!(outcome.message.contains("sluice-runner:nope"));
    }

    #[test]
    fn an_eviction_is_reported() {
        let mut pod = pod_with(ContainerState::default());
        let status = pod.status.as_mut().unwrap();
        status.reason = Some("Evicted".to_owned());
        status.message = Some("The node was low on resource: memory.".to_owned());
        let outcome = observe_job_outcome(&job(None), &[pod]).unwrap();
        assert_eq!(outcome.reason, reason::EVICTED);
        assert!(outcome.message.contains("low on resource"));
    }

    #[test]
    fn a_runner_that_ends_without_reporting_is_lost() {
        for condition in [("Failed", "BackoffLimitExceeded"), ("Complete", "")] {
            let outcome =
                observe_job_outcome(&job(Some(condition)), &[pod_with(terminated("Error", 1))])
                    .unwrap();
            assert_eq!(outcome.reason, reason::RUNNER_LOST, "{condition:?}");
            assert!(outcome.message.contains("kubectl logs job/run-1"));
        }
    }
}

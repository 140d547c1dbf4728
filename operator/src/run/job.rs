//! Builds the Job that executes one run. Pure: the run, its workflow and
//! the operator's defaults in, a `batch/v1` Job out; the reconcile shell
//! applies it with server-side apply.
//!
//! The pod follows DESIGN §6: non-root, read-only root filesystem, no
//! privilege escalation, all capabilities dropped, seccomp RuntimeDefault,
//! resource requests and limits, `backoffLimit: 0` (retries belong to the
//! engine) and the workflow's `activeDeadlineSeconds`. The runner gets the
//! run API address, its own credential (a Secret mounted as a file) and the
//! Secrets of exactly the connections its nodes name, each read-only under
//! `CONNECTIONS_DIR/<connection>/` (for an OAuth2 Connection: only the
//! `accessToken` key of its operator-managed token Secret).

use crate::names;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, KeyToPath, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sluice_crds::connection::{CONNECTIONS_DIR, CONNECTIONS_DIR_ENV};
use sluice_crds::{Workflow, WorkflowRun};
use std::collections::BTreeMap;

/// Label on every object the operator creates for a run: the run's name.
pub const RUN_LABEL: &str = "sluice.dev/run";
/// Label with the name of the run's workflow.
pub const WORKFLOW_LABEL: &str = "sluice.dev/workflow";
/// Where the runner finds its run API credential.
pub const TOKEN_DIR: &str = "/var/run/sluice/token";
/// Key of the credential in its Secret (and file name under [`TOKEN_DIR`]).
pub const TOKEN_KEY: &str = "token";
pub use sluice_crds::run_api::env;

/// UID the runner container runs as (the distroless "nonroot" user).
const RUNNER_UID: i64 = 65532;

/// Operator-wide defaults of runner pods; a workflow's `spec.runner`
/// overrides them field by field.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerDefaults {
    /// Runner image.
    pub image: String,
    /// Command that starts the runner in `exec` mode.
    pub command: Vec<String>,
    /// Requests and limits of the runner container.
    pub resources: ResourceRequirements,
    /// ServiceAccount of runner pods, when the workflow names none.
    pub service_account_name: Option<String>,
    /// Base URL of the run API as runner pods reach it.
    pub run_api_url: String,
}

/// A connection the run's nodes use, with the Secret that backs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountedConnection {
    /// Connection name (the folder under `CONNECTIONS_DIR`).
    pub connection: String,
    /// Name of its Secret.
    pub secret: String,
    /// The keys mounted (empty: all). An OAuth2 Connection mounts only the
    /// access token of its operator-managed Secret, never the refresh token.
    pub keys: Vec<String>,
    /// The pod starts without the Secret (an OAuth2 token not obtained yet:
    /// the node then fails saying so, instead of the pod hanging).
    pub optional: bool,
}

/// Builds the Job for `run` of `workflow`. The run must have a uid (it was
/// read from the API server).
pub fn build_job(
    run: &WorkflowRun,
    workflow: &Workflow,
    defaults: &RunnerDefaults,
    connections: &[MountedConnection],
) -> Job {
    let run_name = run.name_any();
    let job_name = names::job_name(&run_name);
    let overrides = workflow.spec.runner.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (RUN_LABEL.to_owned(), names::fit_label(&run_name)),
        (
            WORKFLOW_LABEL.to_owned(),
            names::fit_label(&workflow.name_any()),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "sluice-operator".to_owned(),
        ),
    ]);

    let mut volumes = vec![
        Volume {
            name: "token".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::run_credential_secret_name(&run_name)),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        read_only_mount("token", TOKEN_DIR),
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        },
    ];
    for (index, mounted) in connections.iter().enumerate() {
        let volume = connection_volume_name(index);
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(mounted.secret.clone()),
                default_mode: Some(0o400),
                optional: mounted.optional.then_some(true),
                items: (!mounted.keys.is_empty()).then(|| {
                    mounted
                        .keys
                        .iter()
                        .map(|key| KeyToPath {
                            key: key.clone(),
                            path: key.clone(),
                            mode: None,
                        })
                        .collect()
                }),
            }),
            ..Volume::default()
        });
        mounts.push(read_only_mount(
            &volume,
            &format!("{CONNECTIONS_DIR}/{}", mounted.connection),
        ));
    }

    let env = [
        (env::RUN_API_URL, defaults.run_api_url.clone()),
        (env::RUN_NAMESPACE, run.namespace().unwrap_or_default()),
        (env::RUN_NAME, run_name.clone()),
        (env::RUN_TOKEN_FILE, format!("{TOKEN_DIR}/{TOKEN_KEY}")),
        (CONNECTIONS_DIR_ENV, CONNECTIONS_DIR.to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    })
    .collect();

    let container = Container {
        name: "runner".to_owned(),
        image: Some(
            overrides
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        command: Some(defaults.command.clone()),
        env: Some(env),
        resources: Some(
            overrides
                .resources
                .clone()
                .unwrap_or_else(|| defaults.resources.clone()),
        ),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let pod = PodSpec {
        restart_policy: Some("Never".to_owned()),
        service_account_name: overrides
            .service_account_name
            .clone()
            .or_else(|| defaults.service_account_name.clone()),
        automount_service_account_token: Some(overrides.service_account_name.is_some()),
        node_selector: (!overrides.node_selector.is_empty())
            .then(|| overrides.node_selector.clone()),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUNNER_UID),
            run_as_group: Some(RUNNER_UID),
            fs_group: Some(RUNNER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: run.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![controller_reference(run)]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: workflow.spec.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// The name of the pod volume holding the Secret of the `index`th mounted
/// connection (custom node sidecars mount the same volumes).
pub fn connection_volume_name(index: usize) -> String {
    format!("connection-{index}")
}

fn read_only_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The owner reference making `run` the controller of a child object, so
/// deleting the run deletes its Job (and the Job's pod).
pub fn controller_reference(run: &WorkflowRun) -> OwnerReference {
    OwnerReference {
        api_version: WorkflowRun::api_version(&()).into_owned(),
        kind: WorkflowRun::kind(&()).into_owned(),
        name: run.name_any(),
        uid: run.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The connections `workflow`'s nodes name, in name order, without repeats.
pub fn referenced_connections(workflow: &Workflow) -> Vec<String> {
    let mut names: Vec<String> = workflow
        .spec
        .nodes
        .iter()
        .filter_map(|node| {
            node.http
                .as_ref()
                .and_then(|http| http.connection.clone())
                .or_else(|| node.postgres.as_ref().map(|pg| pg.connection.clone()))
                .or_else(|| node.notify.as_ref().map(|notify| notify.connection.clone()))
                .or_else(|| {
                    node.custom
                        .as_ref()
                        .and_then(|custom| custom.connection.clone())
                })
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use sluice_crds::NodeSpec;
    use sluice_crds::nodes::{NotifyNode, PostgresNode};
    use sluice_crds::workflow::RunnerOverrides;

    fn defaults() -> RunnerDefaults {
        RunnerDefaults {
            image: "ghcr.io/sluice-dev/sluice-runner:0.1.0".to_owned(),
            command: vec!["sluice-runner".to_owned(), "exec".to_owned()],
            resources: ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity("256Mi".to_owned()),
                )])),
                ..ResourceRequirements::default()
            },
            service_account_name: None,
            run_api_url: "http://sluice-operator.sluice-system:8081".to_owned(),
        }
    }

    fn run() -> WorkflowRun {
        let mut run = WorkflowRun::fixture("triage-x7k2p", "triage");
        run.metadata.uid = Some("6f1c".to_owned());
        run
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn the_job_is_owned_by_the_run_and_never_retried_by_kubernetes() {
        let workflow =
            Workflow::fixture("triage").with_spec(|s| s.active_deadline_seconds = Some(600));
        let job = build_job(&run(), &workflow, &defaults(), &[]);
        assert_eq!(job.metadata.name.as_deref(), Some("triage-x7k2p"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("WorkflowRun", "6f1c", Some(true))
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(pod(&job).restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn the_pod_is_locked_down() {
        let job = build_job(&run(), &Workflow::fixture("triage"), &defaults(), &[]);
        let pod = pod(&job);
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let container = &pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(
            container.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "no API token unless the workflow asks for a ServiceAccount"
        );
        assert!(
            pod.containers[0]
                .resources
                .as_ref()
                .unwrap()
                .limits
                .is_some()
        );
    }

    #[test]
    fn workflow_overrides_win_over_operator_defaults() {
        let workflow = Workflow::fixture("triage").with_spec(|s| {
            s.runner = Some(RunnerOverrides {
                image: Some("registry.local/runner:dev".to_owned()),
                service_account_name: Some("deployer".to_owned()),
                node_selector: BTreeMap::from([("pool".to_owned(), "batch".to_owned())]),
                ..RunnerOverrides::default()
            })
        });
        let job = build_job(&run(), &workflow, &defaults(), &[]);
        let pod = pod(&job);
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("registry.local/runner:dev")
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("deployer"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "batch");
    }

    #[test]
    fn exactly_the_referenced_connections_are_mounted_read_only() {
        let connections = [MountedConnection {
            connection: "crm-api".to_owned(),
            secret: "crm-api-token".to_owned(),
            keys: vec![],
            optional: false,
        }];
        let job = build_job(
            &run(),
            &Workflow::fixture("triage"),
            &defaults(),
            &connections,
        );
        let container = &pod(&job).containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == format!("{CONNECTIONS_DIR}/crm-api"))
            .expect("the connection's folder is mounted");
        assert_eq!(mount.read_only, Some(true));
        let volume = pod(&job)
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("crm-api-token")
        );
        let env: BTreeMap<_, _> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(env[env::RUN_NAME], "triage-x7k2p");
        assert_eq!(env[CONNECTIONS_DIR_ENV], CONNECTIONS_DIR);
    }

    #[test]
    fn referenced_connections_are_collected_once_each() {
        let workflow = Workflow::fixture("w")
            .with_node(
                NodeSpec::http_get("a", "/x")
                    .with(|n| n.http.as_mut().unwrap().connection = Some("crm".into())),
            )
            .with_node(
                NodeSpec::http_get("b", "/y")
                    .with(|n| n.http.as_mut().unwrap().connection = Some("crm".into())),
            )
            .with_node(NodeSpec::named("q").with(|n| {
                n.postgres = Some(PostgresNode {
                    connection: "db".into(),
                    query: "select 1".into(),
                    ..PostgresNode::default()
                })
            }))
            .with_node(NodeSpec::named("n").with(|n| {
                n.notify = Some(NotifyNode {
                    connection: "slack".into(),
                    text: "hi".into(),
                    ..NotifyNode::default()
                })
            }))
            .with_node(NodeSpec::http_get("plain", "https://example.com"));
        assert_eq!(referenced_connections(&workflow), ["crm", "db", "slack"]);
    }
}

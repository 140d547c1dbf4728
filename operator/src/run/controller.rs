//! The WorkflowRun controller's shell. Each reconcile looks at the run's
//! phase and does one step:
//!
//! - waiting (no phase, Pending, Queued): check the workflow and the input,
//!   then admit under the workflow's concurrency ([`super::admission`]); an
//!   admitted run gets its frozen snapshot (a ConfigMap), its runner
//!   credential (a Secret) and its Job ([`super::job`]), all owned by the run;
//! - Running: cancel on `spec.cancel`, or end the run from what the Job and
//!   Pod say ([`super::outcome`]) when the runner cannot report;
//! - finished: record it once (condition, Event, metrics, mirror) and apply
//!   the workflow's history limits.
//!
//! The controller caches only runs' metadata and reads each run fresh when
//! it reconciles it: every run kept by history limits stays in the cache.
//!
//! Runs carry the `sluice.dev/mirror` finalizer while a database is
//! configured; it is removed only after the mirror has committed the run's
//! final state, so deleting a run (or a history limit) never loses it.

use super::admission::{Admission, RunView, plan_admission};
use super::job::{
    MountedConnection, RUN_LABEL, TOKEN_KEY, build_job, controller_reference,
    referenced_connections,
};
use super::outcome::observe_job_outcome;
use super::progress::seed_nodes;
use super::resume::{RESUME_INVALID, ResumeSource, plan_resume, requested_input};
use super::resume_source::observe_resume_source;
use crate::context::{Context, Error};
use crate::names;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use sluice_crds::common::{condition_type, find_condition, set_condition};
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{
    Condition, ConditionStatus, Connection, NodePhase, RunPhase, Workflow, WorkflowRun,
    WorkflowRunStatus,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "run";
/// Finalizer held while a run's history is not yet in PostgreSQL.
pub const FINALIZER: &str = "sluice.dev/mirror";
/// Pod template annotation naming the run, so Pod events find their run
/// even when the run's name was shortened for the label.
pub const RUN_NAME_ANNOTATION: &str = "sluice.dev/run-name";
/// Key of the frozen snapshot in its ConfigMap.
pub const SNAPSHOT_KEY: &str = "snapshot.json";
/// Label selecting what the operator creates.
const MANAGED: &str = "app.kubernetes.io/managed-by=sluice-operator";

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let runs: Api<PartialObjectMeta<WorkflowRun>> = crate::namespaced_api(&context);
    let jobs: Api<Job> = crate::namespaced_api(&context);
    let pods: Api<Pod> = crate::namespaced_api(&context);
    crate::watch::lean_controller(
        runs,
        watcher::Config::default(),
        context.config.reconcile_concurrency,
    )
    .owns(jobs, watcher::Config::default().labels(MANAGED))
    .watches(
        pods,
        watcher::Config::default().labels(MANAGED),
        |pod: Pod| {
            let name = pod.annotations().get(RUN_NAME_ANNOTATION)?.clone();
            Some(ObjectRef::new(&name).within(&pod.namespace()?))
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, context)
    .for_each(|_| async {})
    .await;
}

/// Name of the ConfigMap holding a run's frozen snapshot.
pub fn snapshot_name(run_name: &str) -> String {
    names::fit_label(&format!("{run_name}-snapshot"))
}

/// Moves one run one step forward.
pub async fn reconcile(
    cached: Arc<PartialObjectMeta<WorkflowRun>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    context.metrics.reconciled(CONTROLLER);
    let namespace = cached
        .namespace()
        .ok_or_else(|| Error::MissingField(cached.name_any(), "metadata.namespace"))?;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    let Some(run) = runs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let has_finalizer = run.finalizers().iter().any(|f| f == FINALIZER);

    if run.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            if !mirror_committed(&context, &run).await {
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            remove_finalizer(&runs, &run).await?;
        }
        return Ok(Action::await_change());
    }
    if context.mirror.is_some() && !has_finalizer {
        add_finalizer(&runs, &run).await?;
        return Ok(Action::requeue(Duration::ZERO));
    }

    let phase = run.status.as_ref().and_then(|s| s.phase);
    match phase {
        None | Some(RunPhase::Pending) | Some(RunPhase::Queued) => {
            admit(&run, &context, &namespace).await
        }
        Some(RunPhase::Running) => supervise(&run, &context, &namespace).await,
        Some(_) => super::finish::finish(&run, &context, &namespace).await,
    }
}

async fn admit(run: &WorkflowRun, context: &Context, namespace: &str) -> Result<Action, Error> {
    let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), namespace);
    let workflow_name = &run.spec.workflow_ref.name;
    if run.spec.cancel == Some(true) {
        return end(
            run,
            context,
            RunPhase::Cancelled,
            "Cancelled",
            "cancelled before it started".to_owned(),
        )
        .await;
    }
    let Some(workflow) = workflows.get_opt(workflow_name).await? else {
        let message = format!(
            "workflow {workflow_name:?} not found in namespace {namespace}: create it or fix spec.workflowRef.name"
        );
        return end(run, context, RunPhase::Failed, "WorkflowNotFound", message).await;
    };
    if crate::mirror_map::workflow_uid(run).is_none() {
        adopt(run, &workflow, context, namespace).await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let workflow_status = workflow.status.clone().unwrap_or_default();
    if workflow_status.observed_generation != workflow.metadata.generation {
        // The workflow controller has not looked at this spec yet.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    if let Some(ready) = find_condition(&workflow_status.conditions, condition_type::READY)
        && ready.status != ConditionStatus::True
    {
        let reason = match ready.reason.as_str() {
            "Suspended" => "WorkflowSuspended",
            "ConnectionMissing" => "ConnectionMissing",
            _ => "WorkflowInvalid",
        };
        let detail = find_condition(&workflow_status.conditions, condition_type::VALID)
            .filter(|valid| valid.status == ConditionStatus::False)
            .unwrap_or(ready);
        let message = format!(
            "workflow {workflow_name:?} is not ready: {}",
            detail.message
        );
        return end(run, context, RunPhase::Failed, reason, message).await;
    }
    let resume = match &run.spec.resume_from {
        Some(_) => match observe_resume_source(run, context, namespace).await? {
            Ok(source) => Some(source),
            Err(message) => {
                return end(run, context, RunPhase::Failed, RESUME_INVALID, message).await;
            }
        },
        None => None,
    };
    let requested = match &resume {
        Some(source) => requested_input(run, source),
        None => run.spec.input.clone(),
    }
    .unwrap_or(serde_json::Value::Null);
    let input = match sluice_runner::input::prepare(workflow.spec.input.as_ref(), requested) {
        Ok(input) => input,
        Err(errors) => {
            let message = sluice_runner::input::mismatch_message(workflow_name, &errors);
            return end(run, context, RunPhase::Failed, "InvalidInput", message).await;
        }
    };

    // Without a concurrency limit every run starts: no siblings to read, and
    // no reason to admit this workflow's runs one at a time.
    if workflow.spec.concurrency.is_none() {
        return start(run, &workflow, input, resume.as_ref(), context, namespace).await;
    }
    let lock = context.admission_lock(namespace, workflow_name);
    let _admitting = lock.lock().await;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let siblings: Vec<RunView> = runs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|other| other.spec.workflow_ref.name == *workflow_name)
        .map(run_view)
        .collect();
    match plan_admission(
        workflow.spec.concurrency.as_ref(),
        &run_view(run),
        &siblings,
    ) {
        Admission::Start => start(run, &workflow, input, resume.as_ref(), context, namespace).await,
        Admission::StartReplacing { cancel } => {
            for victim in cancel {
                let patch = serde_json::json!({"spec": {"cancel": true}});
                runs.patch(&victim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            start(run, &workflow, input, resume.as_ref(), context, namespace).await
        }
        Admission::Queue { position } => {
            let mut status = run.status.clone().unwrap_or_default();
            let changed = status.phase != Some(RunPhase::Queued)
                || status.queue_position != Some(position as i32);
            if changed {
                status.phase = Some(RunPhase::Queued);
                status.queue_position = Some(position as i32);
                status.reason = Some("ConcurrencyLimit".to_owned());
                status.message = Some(format!(
                    "waiting for a concurrency slot: position {position} in the queue"
                ));
                write_status(run, context, status).await?;
                crate::mirror_map::offer_run(context, run);
            }
            Ok(Action::requeue(Duration::from_secs(2)))
        }
        Admission::Refuse { message } => {
            end(run, context, RunPhase::Failed, "ConcurrencyLimit", message).await
        }
    }
}

/// Makes the workflow an owner of the run (not its controller), so deleting
/// a workflow deletes its runs after the mirror has stored them.
async fn adopt(
    run: &WorkflowRun,
    workflow: &Workflow,
    context: &Context,
    namespace: &str,
) -> Result<(), Error> {
    let uid = workflow
        .uid()
        .ok_or_else(|| Error::MissingField(workflow.name_any(), "metadata.uid"))?;
    let mut owners = run.owner_references().to_vec();
    owners.push(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: sluice_crds::API_VERSION.to_owned(),
            kind: "Workflow".to_owned(),
            name: workflow.name_any(),
            uid,
            controller: None,
            block_owner_deletion: None,
        },
    );
    let patch = serde_json::json!({"metadata": {"ownerReferences": owners, "resourceVersion": run.resource_version()}});
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    runs.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

fn run_view(run: &WorkflowRun) -> RunView {
    RunView {
        name: run.name_any(),
        phase: run.status.as_ref().and_then(|s| s.phase),
        priority: run.spec.priority.unwrap_or(0),
        created: run
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0))
            .unwrap_or_default(),
        cancelling: run.spec.cancel == Some(true) || run.metadata.deletion_timestamp.is_some(),
    }
}

async fn start(
    run: &WorkflowRun,
    workflow: &Workflow,
    input: serde_json::Value,
    resume: Option<&ResumeSource>,
    context: &Context,
    namespace: &str,
) -> Result<Action, Error> {
    let run_name = run.name_any();
    let resumed = match resume.map(|source| plan_resume(source, &workflow.spec, &input)) {
        Some(Ok(plan)) => Some(plan),
        Some(Err(message)) => {
            return end(run, context, RunPhase::Failed, RESUME_INVALID, message).await;
        }
        None => None,
    };
    let uid = run
        .uid()
        .ok_or_else(|| Error::MissingField(run_name.clone(), "metadata.uid"))?;
    let workflow_status = workflow.status.clone().unwrap_or_default();

    let connection_api: Api<Connection> = Api::namespaced(context.client.clone(), namespace);
    let mut connections = BTreeMap::new();
    let mut mounted = vec![];
    for name in referenced_connections(workflow) {
        if let Some(connection) = connection_api.get_opt(&name).await? {
            if let Some(secret) = &connection.spec.secret_ref {
                mounted.push(MountedConnection {
                    connection: name.clone(),
                    secret: secret.name.clone(),
                });
            }
            connections.insert(name, connection.spec);
        }
    }
    let snapshot = RunSnapshot {
        namespace: namespace.to_owned(),
        name: run_name.clone(),
        uid: uid.clone(),
        workflow: workflow.name_any(),
        workflow_revision: workflow_status.revision.unwrap_or(1),
        workflow_hash: workflow_status.spec_hash.clone().unwrap_or_default(),
        spec: workflow.spec.clone(),
        input,
        connections,
        output_cap_bytes: context.config.output_cap_bytes,
        reused_outputs: resumed
            .as_ref()
            .map(|plan| plan.reused.clone())
            .unwrap_or_default(),
    };
    let owner = controller_reference(run);
    let labels = BTreeMap::from([
        (RUN_LABEL.to_owned(), names::fit_label(&run_name)),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "sluice-operator".to_owned(),
        ),
    ]);

    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(snapshot_name(&run_name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            SNAPSHOT_KEY.to_owned(),
            serde_json::to_string(&snapshot)?,
        )])),
        ..ConfigMap::default()
    };
    create_once(
        &Api::namespaced(context.client.clone(), namespace),
        &config_map,
    )
    .await?;

    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(names::run_credential_secret_name(&run_name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(context.token_key.token_for(&uid).into_bytes()),
        )])),
        ..Secret::default()
    };
    create_once(&Api::namespaced(context.client.clone(), namespace), &secret).await?;

    let mut job = build_job(run, workflow, &context.runner_defaults, &mounted);
    if let Some(template) = job.spec.as_mut().map(|spec| &mut spec.template) {
        template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RUN_NAME_ANNOTATION.to_owned(), run_name.clone());
    }
    create_once(&Api::namespaced(context.client.clone(), namespace), &job).await?;

    let now = Utc::now();
    let mut status = run.status.clone().unwrap_or_default();
    status.phase = Some(RunPhase::Running);
    status.reason = None;
    status.message = None;
    status.queue_position = None;
    status.start_time = Some(now);
    status.workflow_revision = snapshot.workflow_revision.into();
    status.workflow_hash = Some(snapshot.workflow_hash.clone());
    status.job_name = job.metadata.name.clone();
    seed_nodes(&mut status, &workflow.spec);
    set_condition(
        &mut status.conditions,
        Condition::new(
            condition_type::STARTED,
            ConditionStatus::True,
            "JobCreated",
            format!(
                "job {} runs the workflow at revision {}",
                status.job_name.clone().unwrap_or_default(),
                snapshot.workflow_revision
            ),
            run.metadata.generation,
            now,
        ),
    );
    write_status(run, context, status).await?;
    tracing::info!(
        namespace,
        run = %run_name,
        job = job.metadata.name.as_deref().unwrap_or_default(),
        revision = snapshot.workflow_revision,
        "run started"
    );
    context
        .publish(
            run,
            false,
            "Started",
            "Start",
            format!("created job {}", job.metadata.name.unwrap_or_default()),
        )
        .await;
    if let (Some(plan), Some(source)) = (&resumed, &run.spec.resume_from) {
        context
            .publish(run, false, "Resumed", "Start", plan.summary(source))
            .await;
    }
    crate::mirror_map::offer_run(context, run);
    Ok(Action::requeue(Duration::from_secs(30)))
}

async fn supervise(run: &WorkflowRun, context: &Context, namespace: &str) -> Result<Action, Error> {
    let status = run.status.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), namespace);
    let job_name = status
        .job_name
        .clone()
        .unwrap_or_else(|| names::job_name(&run.name_any()));
    if run.spec.cancel == Some(true) {
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        if let Err(error) = jobs.delete(&job_name, &background).await
            && !is_not_found(&error)
        {
            return Err(error.into());
        }
        return end(
            run,
            context,
            RunPhase::Cancelled,
            "Cancelled",
            "cancelled by spec.cancel".to_owned(),
        )
        .await;
    }
    let Some(job) = jobs.get_opt(&job_name).await? else {
        let message = format!("the run's job {job_name} was deleted before the run ended");
        return end(
            run,
            context,
            RunPhase::Failed,
            super::outcome::reason::RUNNER_LOST,
            message,
        )
        .await;
    };
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
    let selector = format!("{RUN_LABEL}={}", names::fit_label(&run.name_any()));
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    match observe_job_outcome(&job, &pods) {
        Some(outcome) => {
            end(
                run,
                context,
                RunPhase::Failed,
                outcome.reason,
                outcome.message,
            )
            .await
        }
        None => Ok(Action::requeue(Duration::from_secs(60))),
    }
}

/// Ends a run that has not finished: sets the terminal phase with a reason.
async fn end(
    run: &WorkflowRun,
    context: &Context,
    phase: RunPhase,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    let mut status = run.status.clone().unwrap_or_default();
    let now = Utc::now();
    status.phase = Some(phase);
    status.reason = Some(reason.to_owned());
    status.message = Some(message.clone());
    status.queue_position = None;
    status.completion_time = Some(now);
    let final_phase = if phase == RunPhase::Cancelled {
        NodePhase::Cancelled
    } else {
        NodePhase::Failed
    };
    for node in &mut status.nodes {
        if node.phase == NodePhase::Running {
            node.phase = final_phase;
            node.end_time = Some(now);
        }
    }
    write_status(run, context, status).await?;
    tracing::info!(run = %run.name_any(), ?phase, reason, "run ended by the operator");
    context
        .publish(run, phase == RunPhase::Failed, reason, "End", message)
        .await;
    Ok(Action::requeue(Duration::ZERO))
}

/// Whether the mirror holds the run's final state (trivially true without a mirror).
async fn mirror_committed(context: &Context, run: &WorkflowRun) -> bool {
    let Some(mirror) = &context.mirror else {
        return true;
    };
    let Some(record) = crate::mirror_map::workflow_uid(run)
        .and_then(|uid| crate::mirror_map::execution_record(run, uid, None))
    else {
        // Never admitted, so never tied to a workflow row: nothing to keep.
        return true;
    };
    match mirror.offer_tracked(crate::mirror::MirrorEvent::Execution(record)) {
        Ok(commit) => matches!(
            tokio::time::timeout(Duration::from_secs(10), commit.wait()).await,
            Ok(Ok(()))
        ),
        Err(_) => false,
    }
}

async fn add_finalizer(runs: &Api<WorkflowRun>, run: &WorkflowRun) -> Result<(), Error> {
    let mut finalizers = run.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
    runs.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn remove_finalizer(runs: &Api<WorkflowRun>, run: &WorkflowRun) -> Result<(), Error> {
    let finalizers: Vec<&String> = run
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
    match runs
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

pub(super) async fn write_status(
    run: &WorkflowRun,
    context: &Context,
    status: WorkflowRunStatus,
) -> Result<(), Error> {
    let runs: Api<WorkflowRun> =
        Api::namespaced(context.client.clone(), &run.namespace().unwrap_or_default());
    let mut updated = run.clone();
    let mut status = status;
    status.observed_generation = run.metadata.generation;
    updated.status = Some(status);
    runs.replace_status(&run.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(())
}

/// Creates `object`; an existing one (a previous attempt) is fine.
async fn create_once<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

pub(super) fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

fn error_policy(
    run: Arc<PartialObjectMeta<WorkflowRun>>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    context.reconcile_error(CONTROLLER, &*run, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_fit_a_label() {
        assert_eq!(snapshot_name("r1"), "r1-snapshot");
        assert!(snapshot_name(&"r".repeat(80)).len() <= 63);
    }
}

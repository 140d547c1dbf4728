//! The WorkflowRun controller's shell: it reads a run, asks
//! [`super::plan`] for the next step and applies it. The design (two
//! lanes, and a finalizer that lives only while it protects something) is
//! in [`super::plan`]'s docs. Steps:
//!
//! - waiting (no phase, Pending, Queued): check the workflow, claim the run
//!   (owner and finalizer in one patch), check the input, then admit under
//!   the namespace's plan ([`crate::quota`]) and the workflow's concurrency
//!   ([`super::admission`]), each under its lock (namespace first), and
//!   start ([`super::start`]);
//! - Running: cancel on `spec.cancel`, or end the run from what the Job and
//!   Pod say ([`super::outcome`]) when the runner cannot report;
//! - finished: record it once ([`super::finish`]), then hand it to the
//!   keeping lane ([`super::keeper`]) until its final state is stored.
//!
//! One watch of full runs feeds the controller's cache (runs' metadata
//! only: every run kept by history limits stays in it), the index of each
//! Workflow's runs and the index of each namespace's runs that quota
//! admission counts ([`super::index`]); a reconcile reads its run fresh.
//! Admission under a plan counts from that index, never from a list of the
//! namespace's runs; only a workflow's own concurrency limit lists them.
//! A run that is finished, recorded and free of the finalizer is settled
//! from the cache and the index alone, with no API call, so a new leader
//! reaches the waiting runs at once however many finished runs are kept.

use super::admission::{Admission, RunView, plan_admission};
use super::finish::end;
use super::index::{NamespaceIndex, RunIndex};
use super::job::RUN_LABEL;
use super::keeper::{Keeper, Kept};
use super::outcome::observe_job_outcome;
use super::plan::{Settings, Step, keep_recheck, kept, plan_step, settled};
use super::resume::{RESUME_INVALID, requested_input};
use super::resume_source::observe_resume_source;
use super::shared::{
    FINALIZER, MANAGED, RUN_NAME_ANNOTATION, add_finalizer, is_not_found, remove_finalizer,
    write_status,
};
use super::start::start;
use crate::context::{Context, Error};
use crate::names;
use crate::quota::plan::{QuotaDecision, decide, refuse_input};
use crate::quota::{Subscription, observe_departed};
use crate::workflow::last_run::Summaries;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PropagationPolicy};
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use sluice_crds::common::{condition_type, find_condition};
use sluice_crds::plan::QUOTA_EXCEEDED;
use sluice_crds::{ConditionStatus, RunPhase, Workflow, WorkflowRun};
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "run";
/// The soonest a run handed to the keeping lane is looked at again.
const KEEP_RETRY: Duration = Duration::from_secs(5);

/// The controller's state: the shared context, the index of each
/// Workflow's runs and of each namespace's, the keeping lane and the
/// Workflows' run summaries.
pub struct State {
    pub context: Arc<Context>,
    pub index: Arc<RunIndex>,
    pub namespaces: Arc<NamespaceIndex>,
    pub keeper: Arc<Keeper>,
    pub summaries: Arc<Summaries>,
}

/// The metadata-only view of a watch event, for the controller's cache.
fn metadata_event(
    event: watcher::Event<WorkflowRun>,
) -> watcher::Event<PartialObjectMeta<WorkflowRun>> {
    let lean = |run: WorkflowRun| {
        let mut meta = run.metadata.into_request_partial::<WorkflowRun>();
        crate::watch::slim(&mut meta);
        meta
    };
    match event {
        watcher::Event::Apply(run) => watcher::Event::Apply(lean(run)),
        watcher::Event::Delete(run) => watcher::Event::Delete(lean(run)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(run) => watcher::Event::InitApply(lean(run)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let runs = context.watch::<WorkflowRun>(watcher::Config::default());
    let job_queue = context.clone();
    let jobs = context
        .watch::<PartialObjectMeta<Job>>(watcher::Config::default().labels(MANAGED))
        .default_backoff()
        .touched_objects()
        .inspect_ok(move |job| {
            if let (Some(namespace), Some(owner)) =
                (job.namespace(), run_of(job.owner_references()))
            {
                job_queue.reconcile_queue.enter(&namespace, owner);
            }
        });
    let pods = context
        .watch::<Pod>(watcher::Config::default().labels(MANAGED))
        .default_backoff()
        .touched_objects();
    let index = Arc::new(RunIndex::default());
    let namespaces = Arc::new(NamespaceIndex::default());
    let summaries = Arc::new(Summaries::new(context.clone(), index.clone()));
    let state = Arc::new(State {
        keeper: Arc::new(Keeper::new(context.clone())),
        context: context.clone(),
        index: index.clone(),
        namespaces: namespaces.clone(),
        summaries: summaries.clone(),
    });
    tokio::spawn(summaries.clone().write_loop());
    // The indexes are updated before the event reaches the controller.
    let (reader, writer) = reflector::store();
    let queue = context.clone();
    let events = runs
        .default_backoff()
        .inspect_ok(move |event| {
            summaries.touch(index.apply(event));
            namespaces.apply(event);
            count_trigger(&queue.reconcile_queue, event);
        })
        .map_ok(metadata_event);
    let stream = reflector(writer, events).applied_objects();
    let pod_queue = context.clone();
    Controller::for_stream(stream, reader)
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(context.config.reconcile_concurrency),
        )
        .owns_stream(jobs)
        .watches_stream(pods, move |pod: Pod| {
            let name = pod.annotations().get(RUN_NAME_ANNOTATION)?.clone();
            let namespace = pod.namespace()?;
            pod_queue.reconcile_queue.enter(&namespace, &name);
            Some(ObjectRef::new(&name).within(&namespace))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// Counts a run's watch event in the reconcile queue: a change waits for a
/// reconcile, a deletion takes the run out (no reconcile will come).
fn count_trigger(
    queue: &crate::reconcile_queue::ReconcileQueue,
    event: &watcher::Event<WorkflowRun>,
) {
    match event {
        watcher::Event::Apply(run) | watcher::Event::InitApply(run) => {
            if let Some(namespace) = run.namespace() {
                queue.enter(&namespace, &run.name_any());
            }
        }
        watcher::Event::Delete(run) => {
            if let Some(namespace) = run.namespace() {
                queue.leave(&namespace, &run.name_any());
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// The run owning a Job (its controller owner of kind WorkflowRun).
fn run_of(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Option<&str> {
    owners
        .iter()
        .find(|owner| owner.kind == "WorkflowRun" && owner.controller == Some(true))
        .map(|owner| owner.name.as_str())
}

/// Moves one run one step forward.
pub async fn reconcile(
    cached: Arc<PartialObjectMeta<WorkflowRun>>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let context = &state.context;
    context.metrics.reconciled(CONTROLLER);
    let namespace = cached
        .namespace()
        .ok_or_else(|| Error::MissingField(cached.name_any(), "metadata.namespace"))?;
    context
        .reconcile_queue
        .leave(&namespace, &cached.name_any());
    let has_finalizer = cached.finalizers().iter().any(|f| f == FINALIZER);
    let entry = state.index.entry(&namespace, &cached.name_any());
    let deleted = cached.meta().deletion_timestamp.as_ref();
    if settled(deleted.is_some(), has_finalizer, entry.as_ref()) {
        return Ok(Action::await_change());
    }
    let settings = Settings {
        mirror: context.mirror.is_some(),
        grace: context.config.mirror_grace_period,
        now: chrono::Utc::now(),
    };
    let deleted_at = deleted.and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0));
    let recheck = keep_recheck(deleted_at, settings);
    // A run whose grace is over is read and let go below: its keeper task
    // may be waiting for a commit that never comes.
    if kept(deleted.is_some(), has_finalizer, entry.as_ref()) && !recheck.is_zero() {
        return Ok(hand_over(&state, &cached.metadata, recheck));
    }
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    let Some(run) = runs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match plan_step(&run, settings) {
        Step::Nothing => Ok(Action::await_change()),
        Step::AddFinalizer => {
            add_finalizer(&runs, &run).await?;
            Ok(Action::requeue(Duration::ZERO))
        }
        Step::ReleaseFinalizer => {
            remove_finalizer(&runs, &run).await?;
            Ok(Action::await_change())
        }
        Step::Admit => {
            state.keeper.admitting();
            admit(&run, &state, &namespace).await
        }
        Step::Supervise => supervise(&run, context, &namespace).await,
        Step::Record => {
            super::finish::record(&run, context, &state.index, &namespace).await?;
            Ok(Action::requeue(Duration::ZERO))
        }
        Step::Keep { recheck } => Ok(hand_over(&state, &run.metadata, recheck)),
        Step::ReleaseLost => {
            state.keeper.let_go(&run).await?;
            Ok(Action::await_change())
        }
    }
}

/// Hands a run to the keeping lane and looks again after `recheck` (at
/// least [`KEEP_RETRY`]: a failed attempt is retried then).
fn hand_over(state: &State, metadata: &ObjectMeta, recheck: Duration) -> Action {
    if let Some(kept) = Kept::of(metadata) {
        state.keeper.keep(kept);
    }
    Action::requeue(recheck.max(KEEP_RETRY))
}

async fn admit(run: &WorkflowRun, state: &State, namespace: &str) -> Result<Action, Error> {
    let context = &*state.context;
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
    let claimed = claim(run, &workflow, context, namespace).await?;
    let run = claimed.as_ref().unwrap_or(run);
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

    let subscribed = match context
        .quotas
        .subscription(namespace, context.config.default_plan.as_deref())
    {
        // The plans and namespaces are not listed yet (a new leader).
        Subscription::Unknown => return Ok(Action::requeue(Duration::from_millis(500))),
        Subscription::Free => None,
        Subscription::On(subscribed) => Some(subscribed),
    };
    let counted = subscribed
        .as_ref()
        .filter(|subscribed| subscribed.limits.counts_runs());
    // Without a limit to count every run starts: no siblings to read, and
    // no reason to admit this namespace's or workflow's runs one at a time.
    if counted.is_none() && workflow.spec.concurrency.is_none() {
        if let Some(QuotaDecision::Refuse { message, .. }) = subscribed
            .as_ref()
            .and_then(|subscribed| refuse_input(subscribed, input_bytes(&input)))
        {
            return end(run, context, RunPhase::Failed, QUOTA_EXCEEDED, message).await;
        }
        return start(
            run,
            &workflow,
            input,
            resume.as_ref(),
            subscribed.as_ref(),
            context,
            namespace,
        )
        .await;
    }
    // The namespace's lock first, then the workflow's: always in this
    // order, so two admissions never wait on each other.
    let namespace_lock = counted.map(|_| context.namespace_admission_lock(namespace));
    let counting = match &namespace_lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let workflow_lock = workflow
        .spec
        .concurrency
        .as_ref()
        .map(|_| context.admission_lock(namespace, workflow_name));
    let _admitting = match &workflow_lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let candidate = RunView::of(run);
    if let Some(subscribed) = &subscribed {
        let now = chrono::Utc::now();
        let decision = match counted {
            Some(_) => {
                // A new leader counts nothing before its watch listed every run.
                if !state.namespaces.listed() {
                    return Ok(Action::requeue(Duration::from_millis(500)));
                }
                let cached = state.namespaces.runs_of(namespace);
                let uids: Vec<uuid::Uuid> = cached.iter().filter_map(|run| run.uid).collect();
                let departed = observe_departed(context, namespace, &uids, now).await;
                let views: Vec<RunView> = cached.into_iter().map(|run| run.view).collect();
                let (decision, kept) = decide(
                    subscribed,
                    &views,
                    &context.quotas.admitted(namespace),
                    departed,
                    &candidate,
                    input_bytes(&input),
                    now,
                );
                context.quotas.keep_admitted(namespace, kept);
                decision
            }
            None => refuse_input(subscribed, input_bytes(&input)).unwrap_or(QuotaDecision::Admit),
        };
        match decision {
            QuotaDecision::Admit => {}
            QuotaDecision::Refuse { message, .. } => {
                return end(run, context, RunPhase::Failed, QUOTA_EXCEEDED, message).await;
            }
            QuotaDecision::Hold { position, message } => {
                return hold(run, context, position, QUOTA_EXCEEDED, message).await;
            }
        }
    }
    // From here the run starts unless its workflow's concurrency holds it:
    // each start is recorded first, under the namespace's lock, so the next
    // admission counts it before the watch shows it started.
    let admitted = || {
        if counted.is_some() {
            context
                .quotas
                .note_admitted(namespace, &candidate.name, chrono::Utc::now());
        }
    };
    let Some(concurrency) = workflow.spec.concurrency.as_ref() else {
        admitted();
        // Recorded: the next admission counts this run from the record, so
        // the namespace's lock is not held while the Job is created.
        drop(counting);
        return start(
            run,
            &workflow,
            input,
            resume.as_ref(),
            subscribed.as_ref(),
            context,
            namespace,
        )
        .await;
    };
    let listed = runs.list(&ListParams::default()).await?.items;
    let siblings: Vec<RunView> = listed
        .iter()
        .filter(|other| other.spec.workflow_ref.name == *workflow_name)
        .map(RunView::of)
        .collect();
    match plan_admission(Some(concurrency), &candidate, &siblings) {
        Admission::Start => {
            admitted();
            start(
                run,
                &workflow,
                input,
                resume.as_ref(),
                subscribed.as_ref(),
                context,
                namespace,
            )
            .await
        }
        Admission::StartReplacing { cancel } => {
            for victim in cancel {
                let patch = serde_json::json!({"spec": {"cancel": true}});
                runs.patch(&victim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            admitted();
            start(
                run,
                &workflow,
                input,
                resume.as_ref(),
                subscribed.as_ref(),
                context,
                namespace,
            )
            .await
        }
        Admission::Queue { position } => {
            let message =
                format!("waiting for a concurrency slot: position {position} in the queue");
            hold(run, context, position, "ConcurrencyLimit", message).await
        }
        Admission::Refuse { message } => {
            end(run, context, RunPhase::Failed, "ConcurrencyLimit", message).await
        }
    }
}

/// Bytes of a run's input as JSON (what a plan's `maxInputBytes` limits).
fn input_bytes(input: &serde_json::Value) -> u64 {
    serde_json::to_vec(input).map_or(0, |bytes| bytes.len() as u64)
}

/// Keeps a run waiting in Queued at `position`, for `reason`; the status
/// is written, and an Event published, only when they change.
async fn hold(
    run: &WorkflowRun,
    context: &Context,
    position: usize,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    let mut status = run.status.clone().unwrap_or_default();
    let reason_changed = status.reason.as_deref() != Some(reason);
    let changed = status.phase != Some(RunPhase::Queued)
        || status.queue_position != Some(position as i32)
        || reason_changed;
    if changed {
        status.phase = Some(RunPhase::Queued);
        status.queue_position = Some(position as i32);
        status.reason = Some(reason.to_owned());
        status.message = Some(message.clone());
        write_status(run, context, status).await?;
        crate::mirror_map::offer_run(context, run);
        if reason_changed && reason == QUOTA_EXCEEDED {
            context.publish(run, true, reason, "Admit", message).await;
        }
    }
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// Claims a waiting run for admission in one patch (nothing when both are
/// there already): the workflow becomes an owner of the run (not its
/// controller), so deleting a workflow deletes its runs after the mirror
/// has stored them, and with a mirror the run gets the finalizer that keeps
/// it until its final state is stored. Returns the run as patched, so
/// admission goes on without another read.
async fn claim(
    run: &WorkflowRun,
    workflow: &Workflow,
    context: &Context,
    namespace: &str,
) -> Result<Option<WorkflowRun>, Error> {
    let needs_owner = crate::mirror_map::workflow_uid(run).is_none();
    let needs_finalizer =
        context.mirror.is_some() && !run.finalizers().iter().any(|f| f == FINALIZER);
    if !needs_owner && !needs_finalizer {
        return Ok(None);
    }
    let mut metadata = serde_json::json!({"resourceVersion": run.resource_version()});
    if needs_owner {
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
        metadata["ownerReferences"] = serde_json::json!(owners);
    }
    if needs_finalizer {
        let mut finalizers = run.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        metadata["finalizers"] = serde_json::json!(finalizers);
    }
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let patch = serde_json::json!({ "metadata": metadata });
    let claimed = runs
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Some(claimed))
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

fn error_policy(
    run: Arc<PartialObjectMeta<WorkflowRun>>,
    error: &Error,
    state: Arc<State>,
) -> Action {
    state.context.reconcile_error(CONTROLLER, &*run, error)
}

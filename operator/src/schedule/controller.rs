//! The Schedule controller's shell: observe (a fresh read of the Schedule,
//! its runs from [`super::runs`]), plan ([`super::plan`]), apply (create the slots' runs,
//! cancel runs, write status, Events, mirror) and requeue for the next slot.
//! No polling loop: a reconcile happens at the next slot (plus its jitter),
//! on spec changes, and when one of the schedule's runs changes.
//!
//! Each slot's run has the name [`names::scheduled_run_name`] derives from
//! the slot, so a second attempt (a retry, a restart, another replica)
//! gets AlreadyExists and the slot fires exactly once.

use super::plan::{Observed, SchedulePlan, plan_schedule};
use super::runs::RunIndex;
use crate::context::{Context, Error, FIELD_MANAGER};
use crate::names;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use sluice_crds::workflow_run::{RunTrigger, TriggerType};
use sluice_crds::{Schedule, WorkflowRun, WorkflowRunSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Label naming (fitted to a label) the Schedule that created a run.
pub const SCHEDULE_LABEL: &str = "sluice.dev/schedule";
const CONTROLLER: &str = "schedule";

/// The controller's state: the shared context and when it started leading.
pub struct State {
    context: Arc<Context>,
    leading_since: DateTime<Utc>,
    runs: Arc<RunIndex>,
}

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let schedules = context.watch::<PartialObjectMeta<Schedule>>(watcher::Config::default());
    let runs = context.watch::<WorkflowRun>(watcher::Config::default().labels(SCHEDULE_LABEL));
    let index = Arc::new(RunIndex::default());
    let state = Arc::new(State {
        context,
        leading_since: Utc::now(),
        runs: index.clone(),
    });
    // The index is updated before the run's event triggers its Schedule.
    let run_events = runs
        .default_backoff()
        .inspect_ok(move |event| {
            index.apply(event);
        })
        .touched_objects();
    crate::watch::lean_controller(schedules, state.context.config.reconcile_concurrency)
        .watches_stream(run_events, |run: WorkflowRun| {
            let owner = run
                .owner_references()
                .iter()
                .find(|owner| owner.kind == "Schedule")?;
            Some(ObjectRef::new(&owner.name).within(&run.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// The run of `schedule` for the slot at `slot`: named after the slot,
/// labelled and owned by the schedule, with the schedule's input.
pub fn build_run(schedule: &Schedule, owner: OwnerReference, slot: DateTime<Utc>) -> WorkflowRun {
    let schedule_name = schedule.name_any();
    WorkflowRun {
        metadata: ObjectMeta {
            name: Some(names::scheduled_run_name(&schedule_name, slot)),
            namespace: schedule.namespace(),
            labels: Some(BTreeMap::from([(
                SCHEDULE_LABEL.to_owned(),
                names::fit_label(&schedule_name),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: WorkflowRunSpec {
            workflow_ref: schedule.spec.workflow_ref.clone(),
            input: schedule.spec.input.clone(),
            trigger: Some(RunTrigger {
                type_: TriggerType::Schedule,
                source: Some(schedule_name),
                scheduled_time: Some(slot),
                data: None,
            }),
            ..WorkflowRunSpec::default()
        },
        status: None,
    }
}

/// Fires due slots of one Schedule and writes its status.
pub async fn reconcile(
    schedule: Arc<PartialObjectMeta<Schedule>>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let context = &state.context;
    context.metrics.reconciled(CONTROLLER);
    if schedule.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = schedule
        .namespace()
        .ok_or_else(|| Error::MissingField(schedule.name_any(), "metadata.namespace"))?;
    let schedules: Api<Schedule> = Api::namespaced(context.client.clone(), &namespace);
    // The cache holds only metadata ([`crate::watch`]); and a watch event
    // may lag our last status write, while the plan must start from the
    // slots already decided.
    let Some(schedule) = schedules.get_opt(&schedule.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let observed = Observed {
        runs: state
            .runs
            .runs_of(schedule.uid().as_deref().unwrap_or_default()),
        now: Utc::now(),
        leading_since: state.leading_since,
    };
    let plan = plan_schedule(&schedule, &observed);
    apply_runs(&state, &schedule, &namespace, &plan).await?;
    if plan.status_changed {
        let mut updated = schedule.clone();
        updated.status = Some(plan.status.clone());
        // Carries the resourceVersion read above: a concurrent writer makes
        // this a Conflict and the next reconcile plans again.
        schedules
            .replace_status(&schedule.name_any(), &PostParams::default(), &updated)
            .await?;
        crate::mirror_map::offer_schedule(context, &schedule, &plan.status);
    }
    for event in &plan.events {
        context
            .publish(
                &schedule,
                event.warning,
                event.reason,
                "Schedule",
                event.message.clone(),
            )
            .await;
    }
    Ok(match plan.requeue_after {
        Some(delay) => Action::requeue(delay.max(Duration::from_millis(1))),
        None => Action::await_change(),
    })
}

/// Creates the runs of the slots to fire (AlreadyExists: the slot already
/// fired) and asks the runs CancelOther replaces to cancel.
async fn apply_runs(
    state: &State,
    schedule: &Schedule,
    namespace: &str,
    plan: &SchedulePlan,
) -> Result<(), Error> {
    let context = &state.context;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    if !plan.fire.is_empty() {
        let uid = schedule
            .uid()
            .ok_or_else(|| Error::MissingField(schedule.name_any(), "metadata.uid"))?;
        let owner = OwnerReference {
            api_version: sluice_crds::API_VERSION.to_owned(),
            kind: "Schedule".to_owned(),
            name: schedule.name_any(),
            uid,
            controller: Some(true),
            block_owner_deletion: None,
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        for slot in &plan.fire {
            let run = build_run(schedule, owner.clone(), *slot);
            let run_name = run.name_any();
            match runs.create(&params, &run).await {
                Ok(created) => {
                    state.runs.created(&created);
                    let lag = Utc::now() - super::plan::due_time(schedule, *slot);
                    context.metrics.schedule_fired(lag.as_seconds_f64());
                    tracing::info!(schedule = %schedule.name_any(), run = %run_name, lag_ms = lag.num_milliseconds(), "fired slot");
                    context
                        .publish(
                            schedule,
                            false,
                            "Fired",
                            "Fire",
                            format!("fired the slot at {} as run {run_name}", slot.to_rfc3339()),
                        )
                        .await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let cancel = serde_json::json!({"spec": {"cancel": true}});
    for run_name in &plan.cancel {
        match runs
            .patch(run_name, &PatchParams::default(), &Patch::Merge(&cancel))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn error_policy(
    schedule: Arc<PartialObjectMeta<Schedule>>,
    error: &Error,
    state: Arc<State>,
) -> Action {
    state.context.reconcile_error(CONTROLLER, &*schedule, error)
}

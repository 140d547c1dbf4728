//! The end of a run's life in the run controller: [`end`] sets the
//! terminal phase of a run the operator ends (cancelled, refused, its Job
//! lost); [`record`] records a finished run's end once: cancelling the
//! child runs its runner could not cancel, deleting the workflow's oldest
//! finished runs beyond its history limits (read from the index: no LIST),
//! then the duration, the Completed condition, metrics and the Event.
//! Storing the run in PostgreSQL is the keeper's ([`super::keeper`]).

use super::index::{RunIndex, expired_runs, group};
use super::shared::{is_not_found, write_status};
use crate::context::{Context, Error};
use crate::names;
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use sluice_crds::common::{condition_type, find_condition, set_condition};
use sluice_crds::{Condition, ConditionStatus, NodePhase, RunPhase, Workflow, WorkflowRun};
use std::time::Duration;

/// Ends a run that has not finished: sets the terminal phase with a reason.
pub(super) async fn end(
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

/// Records a finished run's end once (see the module docs). History
/// limits and child runs come first: a failure there is retried before the
/// end is recorded.
pub(super) async fn record(
    run: &WorkflowRun,
    context: &Context,
    index: &RunIndex,
    namespace: &str,
) -> Result<(), Error> {
    cancel_children(run, context, namespace).await?;
    let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), namespace);
    if let Some(workflow) = workflows.get_opt(&run.spec.workflow_ref.name).await? {
        apply_history_limits(context, index, namespace, &workflow).await?;
    }
    let mut status = run.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    if find_condition(&status.conditions, condition_type::COMPLETED).is_some() {
        return Ok(());
    }
    let now = Utc::now();
    let seconds = status
        .start_time
        .zip(status.completion_time)
        .map(|(start, end)| (end - start).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
    if let Some(seconds) = seconds {
        status.duration = Some(format_duration(seconds));
    }
    let reason = format!("{phase:?}");
    set_condition(
        &mut status.conditions,
        Condition::new(
            condition_type::COMPLETED,
            ConditionStatus::True,
            &reason,
            status
                .message
                .clone()
                .unwrap_or_else(|| format!("the run {}", reason.to_lowercase())),
            run.metadata.generation,
            now,
        ),
    );
    super::progress::refresh(&mut status);
    let stored = write_status(run, context, status).await?;
    index.observed(&stored);
    context.metrics.run_finished(&reason, seconds);
    tracing::info!(run = %run.name_any(), phase = %reason, seconds, "run finished");
    if phase == RunPhase::Succeeded {
        context
            .publish(
                run,
                false,
                "Succeeded",
                "Finish",
                "the run succeeded".to_owned(),
            )
            .await;
    }
    Ok(())
}

/// Cancels the unfinished child runs (of `workflow` nodes) of a run that
/// has ended: its runner may have been stopped (cancel, deadline, OOM)
/// before it could cancel them itself.
async fn cancel_children(
    run: &WorkflowRun,
    context: &Context,
    namespace: &str,
) -> Result<(), Error> {
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let selector = format!(
        "{}={}",
        crate::run_api::children::PARENT_RUN_LABEL,
        names::fit_label(&run.name_any())
    );
    let children = runs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    for child in children {
        let finished = child
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(RunPhase::is_terminal);
        if finished
            || child.spec.cancel == Some(true)
            || !crate::run_api::children::belongs_to(&child, run)
        {
            continue;
        }
        let patch = serde_json::json!({"spec": {"cancel": true}});
        runs.patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

/// Deletes the oldest finished runs of `workflow` beyond its history
/// limits: one DELETE per expired run, none when nothing expired.
async fn apply_history_limits(
    context: &Context,
    index: &RunIndex,
    namespace: &str,
    workflow: &Workflow,
) -> Result<(), Error> {
    let runs_of_workflow = index.runs_of(&group(namespace, &workflow.name_any()));
    let expired = expired_runs(&runs_of_workflow, workflow.spec.history_limits.as_ref());
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    for name in expired {
        match runs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn format_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        // Short runs keep their microseconds: 850µs, 2.5ms, 340ms.
        return sluice_runner::report::format_millis(seconds * 1000.0);
    }
    let total = seconds.round() as u64;
    match total {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{}s", total / 60, total % 60),
        _ => format!("{}h{}m", total / 3600, (total % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(format_duration(1.25), "1.2s");
        assert_eq!(format_duration(0.000_153), "153µs");
        assert_eq!(format_duration(0.0025), "2.5ms");
        assert_eq!(format_duration(0.34), "340ms");
        assert_eq!(format_duration(75.0), "1m15s");
        assert_eq!(format_duration(7300.0), "2h1m");
    }
}

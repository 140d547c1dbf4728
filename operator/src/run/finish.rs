//! The last step of a run's life in the run controller: recording its end
//! once (duration, Completed condition, metrics, Event, mirror), cancelling
//! the child runs its runner could not cancel, and deleting the workflow's
//! oldest finished runs beyond its history limits (behind the mirror
//! finalizer, so PostgreSQL keeps them).

use super::controller::{is_not_found, write_status};
use crate::context::{Context, Error};
use crate::names;
use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use sluice_crds::common::{condition_type, find_condition, set_condition};
use sluice_crds::workflow::HistoryLimits;
use sluice_crds::{Condition, ConditionStatus, RunPhase, Workflow, WorkflowRun};

/// Finished runs of each outcome kept when a workflow sets no limit.
const DEFAULT_HISTORY: u32 = 10;

/// Records a finished run once, then applies history limits.
pub(super) async fn finish(
    run: &WorkflowRun,
    context: &Context,
    namespace: &str,
) -> Result<Action, Error> {
    let mut status = run.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    if find_condition(&status.conditions, condition_type::COMPLETED).is_none() {
        let now = Utc::now();
        let seconds = status
            .start_time
            .zip(status.completion_time)
            .map(|(start, end)| (end - start).num_milliseconds() as f64 / 1000.0);
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
        write_status(run, context, status.clone()).await?;
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
    }
    cancel_children(run, context, namespace).await?;
    let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), namespace);
    if let Some(workflow) = workflows.get_opt(&run.spec.workflow_ref.name).await? {
        crate::mirror_map::offer_run(context, run);
        apply_history_limits(context, namespace, &workflow).await?;
    }
    Ok(Action::await_change())
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

/// Deletes the oldest finished runs of `workflow` beyond its history limits.
async fn apply_history_limits(
    context: &Context,
    namespace: &str,
    workflow: &Workflow,
) -> Result<(), Error> {
    let limits: HistoryLimits = workflow.spec.history_limits.clone().unwrap_or_default();
    let keep_succeeded = limits.successful.unwrap_or(DEFAULT_HISTORY) as usize;
    let keep_failed = limits.failed.unwrap_or(DEFAULT_HISTORY) as usize;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let mut finished: Vec<WorkflowRun> = runs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|run| {
            run.spec.workflow_ref.name == workflow.name_any()
                && run.metadata.deletion_timestamp.is_none()
        })
        .filter(|run| {
            run.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(RunPhase::is_terminal)
        })
        .collect();
    finished
        .sort_by_key(|run| std::cmp::Reverse(run.status.as_ref().and_then(|s| s.completion_time)));
    let (succeeded, failed): (Vec<_>, Vec<_>) = finished
        .iter()
        .partition(|run| run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded));
    let expired = succeeded
        .into_iter()
        .skip(keep_succeeded)
        .chain(failed.into_iter().skip(keep_failed));
    for run in expired {
        match runs.delete(&run.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn format_duration(seconds: f64) -> String {
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
        assert_eq!(format_duration(75.0), "1m15s");
        assert_eq!(format_duration(7300.0), "2h1m");
    }
}

//! The next step of a run (pure: the run, whether a mirror is configured,
//! the grace period and the clock → one [`Step`]). The shell
//! ([`super::controller`]) applies it.
//!
//! Two lanes, so that nothing about old runs ever delays a new one:
//! - the **admission lane** (the controller's reconciles): admit, start,
//!   supervise, record a run's end. Each step does a bounded number of API
//!   calls and never waits on PostgreSQL, but for one bounded read (at most
//!   2 s, then the last count) when a namespace's plan counts runs that
//!   history limits deleted ([`crate::quota::observe_departed`]).
//! - the **keeping lane** ([`super::keeper`]): hand a finished or deleted
//!   run's final state to the mirror and, once it is committed, remove the
//!   `sluice.dev/mirror` finalizer. A reconcile only hands a run over
//!   ([`Step::Keep`]) and returns; waiting for the commit happens in the
//!   keeper's own tasks, never in a reconcile slot.
//!
//! The finalizer protects exactly the runs whose final state is not stored
//! yet: it is added to unfinished runs and removed as soon as the final
//! state is committed, not at deletion. Deleting finished runs (or their
//! namespace) then needs no operator. A run being deleted whose state
//! cannot be stored within the grace period is let go with a visible loss
//! ([`Step::ReleaseLost`]) instead of holding its namespace for good.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use sluice_crds::common::{condition_type, find_condition};
use sluice_crds::{RunPhase, WorkflowRun};
use std::time::Duration;

use super::index::RunEntry;
use super::shared::FINALIZER;

/// How often a finished run still holding the finalizer is handed to the
/// keeper again (it is handed over at once on every change anyway).
pub const KEEP_RECHECK: Duration = Duration::from_secs(60);

/// What the plan needs besides the run.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// A PostgreSQL mirror is configured.
    pub mirror: bool,
    /// How long a run being deleted may wait for the mirror.
    pub grace: Duration,
    pub now: DateTime<Utc>,
}

/// One step of a run's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until the run changes.
    Nothing,
    /// Add the mirror finalizer (a running run without it, a mirror
    /// configured; waiting runs get it when admission claims them).
    AddFinalizer,
    /// Remove the finalizer: nothing is left to store (no mirror, or a
    /// run that never ran a workflow revision).
    ReleaseFinalizer,
    /// Check the workflow and admit under its concurrency.
    Admit,
    /// Watch the Job of a running run; cancel on `spec.cancel`.
    Supervise,
    /// Record the end of a finished run once: history limits, the
    /// `Completed` condition, metrics, the Event.
    Record,
    /// Hand the run to the keeper; look again after `recheck`.
    Keep { recheck: Duration },
    /// The grace period is over: release the finalizer and record the loss.
    ReleaseLost,
}

/// Whether a run needs no step at all, from the cached metadata and the
/// index alone (no API call): finished, recorded, no finalizer left.
pub fn settled(deleting: bool, has_finalizer: bool, entry: Option<&RunEntry>) -> bool {
    !deleting && !has_finalizer && entry.is_some_and(|entry| entry.finished() && entry.recorded)
}

/// Whether a run belongs to the keeping lane, from the cached metadata and
/// the index alone (no API call): it holds the finalizer and is being
/// deleted, or is finished with its end recorded. The admission lane then
/// hands it over without reading it; the keeper reads it at its own pace
/// and plans it with [`plan_step`].
pub fn kept(deleting: bool, has_finalizer: bool, entry: Option<&RunEntry>) -> bool {
    has_finalizer && (deleting || entry.is_some_and(|entry| entry.finished() && entry.recorded))
}

/// When the controller looks again at a run handed to the keeper: at the
/// end of the grace period of a run being deleted, else after
/// [`KEEP_RECHECK`].
pub fn keep_recheck(deleted: Option<DateTime<Utc>>, settings: Settings) -> Duration {
    let Some(deleted) = deleted else {
        return KEEP_RECHECK;
    };
    let deadline = deleted + chrono::Duration::from_std(settings.grace).unwrap_or_default();
    (deadline - settings.now).to_std().unwrap_or_default()
}

/// Whether the run ever got a workflow to run (admission adopts it): only
/// such a run has history to store.
pub fn has_history(run: &WorkflowRun) -> bool {
    run.owner_references()
        .iter()
        .any(|owner| owner.kind == "Workflow")
}

/// The next step of `run`.
pub fn plan_step(run: &WorkflowRun, settings: Settings) -> Step {
    let has_finalizer = run.finalizers().iter().any(|f| f == FINALIZER);
    let status = run.status.clone().unwrap_or_default();
    let finished = status.phase.is_some_and(RunPhase::is_terminal);

    if let Some(deleted) = &run.metadata.deletion_timestamp {
        if !has_finalizer {
            return Step::Nothing;
        }
        if !settings.mirror || !has_history(run) {
            return Step::ReleaseFinalizer;
        }
        let deleted = DateTime::from_timestamp(deleted.0.as_second(), 0).unwrap_or(settings.now);
        return match keep_recheck(Some(deleted), settings) {
            left if left.is_zero() => Step::ReleaseLost,
            left => Step::Keep { recheck: left },
        };
    }
    if finished {
        if find_condition(&status.conditions, condition_type::COMPLETED).is_none() {
            return Step::Record;
        }
        return match (has_finalizer, settings.mirror && has_history(run)) {
            (false, _) => Step::Nothing,
            (true, false) => Step::ReleaseFinalizer,
            (true, true) => Step::Keep {
                recheck: KEEP_RECHECK,
            },
        };
    }
    let running = status.phase == Some(RunPhase::Running);
    match (settings.mirror, has_finalizer) {
        // A waiting run gets the finalizer from admission, in the same patch
        // as its owner; only a running run found without it gets it here.
        (true, false) if running => Step::AddFinalizer,
        (false, true) => Step::ReleaseFinalizer,
        _ if running => Step::Supervise,
        _ => Step::Admit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use sluice_crds::{Condition, ConditionStatus, WorkflowRunStatus};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    fn settings(mirror: bool) -> Settings {
        Settings {
            mirror,
            grace: Duration::from_secs(900),
            now: now(),
        }
    }

    fn run(phase: Option<RunPhase>, finalizer: bool, recorded: bool) -> WorkflowRun {
        let mut run = WorkflowRun::fixture("r", "w");
        run.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Workflow".into(),
            name: "w".into(),
            uid: "6f9619ff-8b86-d011-b42d-00cf4fc964ff".into(),
            api_version: sluice_crds::API_VERSION.into(),
            ..OwnerReference::default()
        }]);
        if finalizer {
            run.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        let mut status = WorkflowRunStatus {
            phase,
            ..WorkflowRunStatus::default()
        };
        if recorded {
            status.conditions.push(Condition::new(
                condition_type::COMPLETED,
                ConditionStatus::True,
                "Succeeded",
                "done",
                None,
                now(),
            ));
        }
        run.status = Some(status);
        run
    }

    fn deleted(mut run: WorkflowRun, seconds_ago: i64) -> WorkflowRun {
        let at = now() - chrono::Duration::seconds(seconds_ago);
        run.metadata.deletion_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(at.timestamp()).expect("a valid time"),
        ));
        run
    }

    #[test]
    fn admission_adds_the_finalizer_with_the_owner_in_one_patch() {
        assert_eq!(
            plan_step(&run(None, false, false), settings(true)),
            Step::Admit,
            "a waiting run is claimed (owner and finalizer) by admission"
        );
        assert_eq!(
            plan_step(&run(Some(RunPhase::Running), false, false), settings(true)),
            Step::AddFinalizer,
            "a running run found without the finalizer gets it back"
        );
        assert_eq!(
            plan_step(&run(None, true, false), settings(true)),
            Step::Admit
        );
        assert_eq!(
            plan_step(&run(Some(RunPhase::Queued), true, false), settings(true)),
            Step::Admit
        );
        assert_eq!(
            plan_step(&run(Some(RunPhase::Running), true, false), settings(true)),
            Step::Supervise
        );
        assert_eq!(
            plan_step(&run(None, false, false), settings(false)),
            Step::Admit
        );
        assert_eq!(
            plan_step(&run(None, true, false), settings(false)),
            Step::ReleaseFinalizer,
            "no mirror: nothing will ever store it"
        );
    }

    #[test]
    fn a_finished_run_is_recorded_once_then_kept_until_the_finalizer_goes() {
        let succeeded = Some(RunPhase::Succeeded);
        assert_eq!(
            plan_step(&run(succeeded, true, false), settings(true)),
            Step::Record
        );
        assert_eq!(
            plan_step(&run(succeeded, true, true), settings(true)),
            Step::Keep {
                recheck: KEEP_RECHECK
            }
        );
        assert_eq!(
            plan_step(&run(succeeded, false, true), settings(true)),
            Step::Nothing
        );
        assert_eq!(
            plan_step(&run(succeeded, true, true), settings(false)),
            Step::ReleaseFinalizer
        );
        let mut never_ran = run(succeeded, true, true);
        never_ran.metadata.owner_references = None;
        assert_eq!(
            plan_step(&never_ran, settings(true)),
            Step::ReleaseFinalizer
        );
    }

    #[test]
    fn a_deleted_run_is_kept_until_the_grace_ends_then_let_go() {
        let finished = run(Some(RunPhase::Failed), true, true);
        assert_eq!(
            plan_step(&deleted(finished.clone(), 60), settings(true)),
            Step::Keep {
                recheck: Duration::from_secs(840)
            }
        );
        assert_eq!(
            plan_step(&deleted(finished.clone(), 900), settings(true)),
            Step::ReleaseLost
        );
        let running = run(Some(RunPhase::Running), true, false);
        assert_eq!(
            plan_step(&deleted(running, 1_000), settings(true)),
            Step::ReleaseLost,
            "an unfinished run is let go too"
        );
        assert_eq!(
            plan_step(&deleted(run(None, false, false), 5), settings(true)),
            Step::Nothing
        );
        assert_eq!(
            plan_step(&deleted(finished, 5), settings(false)),
            Step::ReleaseFinalizer
        );
    }

    #[test]
    fn deleted_and_recorded_runs_holding_the_finalizer_go_to_the_keeper_from_the_cache() {
        let done = RunEntry {
            phase: Some(RunPhase::Succeeded),
            recorded: true,
            ..RunEntry::default()
        };
        let running = RunEntry {
            phase: Some(RunPhase::Running),
            ..RunEntry::default()
        };
        assert!(kept(false, true, Some(&done)));
        assert!(kept(true, true, Some(&running)), "deleted while running");
        assert!(kept(true, true, None), "deleted, unknown to the index");
        assert!(!kept(false, true, Some(&running)));
        assert!(
            !kept(
                false,
                true,
                Some(&RunEntry {
                    recorded: false,
                    ..done.clone()
                })
            ),
            "its end is recorded first"
        );
        assert!(!kept(true, false, Some(&done)), "nothing left to keep");
        assert_eq!(
            keep_recheck(None, settings(true)),
            KEEP_RECHECK,
            "not deleted"
        );
        let deleted = now() - chrono::Duration::seconds(100);
        assert_eq!(
            keep_recheck(Some(deleted), settings(true)),
            Duration::from_secs(800)
        );
        let long_ago = now() - chrono::Duration::seconds(1000);
        assert_eq!(keep_recheck(Some(long_ago), settings(true)), Duration::ZERO);
    }

    #[test]
    fn only_recorded_finished_runs_without_finalizer_are_settled() {
        let entry = |phase, recorded| RunEntry {
            phase,
            recorded,
            ..RunEntry::default()
        };
        let done = entry(Some(RunPhase::Succeeded), true);
        assert!(settled(false, false, Some(&done)));
        assert!(!settled(false, true, Some(&done)));
        assert!(!settled(true, false, Some(&done)));
        assert!(!settled(false, false, None), "unknown to the index");
        assert!(!settled(
            false,
            false,
            Some(&entry(Some(RunPhase::Succeeded), false))
        ));
        assert!(!settled(
            false,
            false,
            Some(&entry(Some(RunPhase::Running), false))
        ));
    }
}

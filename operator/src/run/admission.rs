//! Concurrency admission: given a workflow's `spec.concurrency` and every
//! run of that workflow, decide what happens to one run that is waiting to
//! start. Pure: no client, no clock.
//!
//! Waiting runs start in descending `priority`, then creation order, then
//! name (a total order, so every replica agrees). A run counts as active
//! from the moment it is admitted (phase Running) until it ends.
//!
//! Admission must be decided for one workflow at a time: two waiting runs
//! admitted concurrently could both see the same free slot. The reconcile
//! shell serialises admissions per workflow.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use sluice_crds::workflow::{ConcurrencyPolicy, ConcurrencySpec};
use sluice_crds::{RunPhase, WorkflowRun};
use std::cmp::Ordering;

/// What admission needs to know about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    /// Name of the run.
    pub name: String,
    /// Its phase; `None` for a run not yet observed by the controller.
    pub phase: Option<RunPhase>,
    /// `spec.priority`, default 0.
    pub priority: i32,
    /// `metadata.creationTimestamp`.
    pub created: DateTime<Utc>,
    /// Whether `spec.cancel` is set or the run is being deleted.
    pub cancelling: bool,
    /// `status.startTime`: when admission started it.
    pub started: Option<DateTime<Utc>>,
    /// `status.completionTime`.
    pub ended: Option<DateTime<Utc>>,
}

impl RunView {
    /// What admission needs of `run`.
    pub fn of(run: &WorkflowRun) -> Self {
        let status = run.status.as_ref();
        RunView {
            name: run.name_any(),
            phase: status.and_then(|status| status.phase),
            priority: run.spec.priority.unwrap_or(0),
            created: run
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                .unwrap_or_default(),
            cancelling: run.spec.cancel == Some(true) || run.metadata.deletion_timestamp.is_some(),
            started: status.and_then(|status| status.start_time),
            ended: status.and_then(|status| status.completion_time),
        }
    }

    /// Admitted and not being cancelled: it holds a slot.
    pub fn is_active(&self) -> bool {
        self.phase == Some(RunPhase::Running) && !self.cancelling
    }

    /// Not admitted yet, and not withdrawn.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.phase,
            None | Some(RunPhase::Pending) | Some(RunPhase::Queued)
        ) && !self.cancelling
    }

    /// Start order among waiting runs: higher priority first, then older.
    pub fn start_order(&self, other: &Self) -> Ordering {
        other
            .priority
            .cmp(&self.priority)
            .then(self.created.cmp(&other.created))
            .then(self.name.cmp(&other.name))
    }
}

/// The decision for one waiting run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Start it now.
    Start,
    /// Keep it waiting; `position` 1 starts next.
    Queue {
        /// Place in the workflow's queue.
        position: usize,
    },
    /// Refuse it: the workflow's policy is Forbid and the limit is reached.
    Refuse {
        /// Why, for status and events.
        message: String,
    },
    /// Start it after cancelling these active runs (policy Replace), oldest first.
    StartReplacing {
        /// Runs to cancel.
        cancel: Vec<String>,
    },
}

/// Decides what happens to the waiting run `candidate`, given every run of
/// the same workflow (`runs`, which may include `candidate` itself).
pub fn plan_admission(
    concurrency: Option<&ConcurrencySpec>,
    candidate: &RunView,
    runs: &[RunView],
) -> Admission {
    let Some(concurrency) = concurrency else {
        return Admission::Start;
    };
    let limit = concurrency.limit.max(1) as usize;
    let others = runs.iter().filter(|run| run.name != candidate.name);
    let mut active: Vec<&RunView> = others.clone().filter(|run| run.is_active()).collect();
    let free = limit.saturating_sub(active.len());

    match concurrency.policy.unwrap_or_default() {
        ConcurrencyPolicy::Queue => {
            let ahead = others
                .filter(|run| run.is_waiting())
                .filter(|run| run.start_order(candidate) == Ordering::Less)
                .count();
            if ahead < free {
                Admission::Start
            } else {
                Admission::Queue {
                    position: ahead - free + 1,
                }
            }
        }
        ConcurrencyPolicy::Forbid => {
            if free > 0 {
                Admission::Start
            } else {
                Admission::Refuse {
                    message: format!(
                        "{} runs of this workflow are already active (concurrency.limit {limit}, policy Forbid): retry when one ends",
                        active.len()
                    ),
                }
            }
        }
        ConcurrencyPolicy::Replace => {
            if free > 0 {
                return Admission::Start;
            }
            active.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
            let excess = active.len() + 1 - limit;
            Admission::StartReplacing {
                cancel: active
                    .iter()
                    .take(excess)
                    .map(|run| run.name.clone())
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(name: &str, phase: Option<RunPhase>, priority: i32, second: u32) -> RunView {
        RunView {
            name: name.to_owned(),
            phase,
            priority,
            created: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap(),
            cancelling: false,
            started: None,
            ended: None,
        }
    }

    fn limit(limit: u32, policy: ConcurrencyPolicy) -> ConcurrencySpec {
        ConcurrencySpec {
            limit,
            policy: Some(policy),
        }
    }

    #[test]
    fn without_a_limit_every_run_starts() {
        let candidate = run("c", None, 0, 9);
        let busy: Vec<RunView> = (0..50)
            .map(|i| run(&format!("r{i}"), Some(RunPhase::Running), 0, 1))
            .collect();
        assert_eq!(plan_admission(None, &candidate, &busy), Admission::Start);
    }

    #[test]
    fn queue_starts_while_a_slot_is_free() {
        let runs = [
            run("a", Some(RunPhase::Running), 0, 1),
            run("b", Some(RunPhase::Pending), 0, 2),
        ];
        assert_eq!(
            plan_admission(Some(&limit(2, ConcurrencyPolicy::Queue)), &runs[1], &runs),
            Admission::Start
        );
    }

    #[test]
    fn queue_waits_in_priority_then_creation_order() {
        let spec = limit(1, ConcurrencyPolicy::Queue);
        let runs = [
            run("active", Some(RunPhase::Running), 0, 0),
            run("old-low", Some(RunPhase::Queued), 0, 1),
            run("new-high", Some(RunPhase::Queued), 5, 3),
            run("mid-low", Some(RunPhase::Queued), 0, 2),
        ];
        let position = |name: &str| {
            let candidate = runs.iter().find(|r| r.name == name).unwrap();
            plan_admission(Some(&spec), candidate, &runs)
        };
        assert_eq!(position("new-high"), Admission::Queue { position: 1 });
        assert_eq!(position("old-low"), Admission::Queue { position: 2 });
        assert_eq!(position("mid-low"), Admission::Queue { position: 3 });
    }

    #[test]
    fn when_the_slot_frees_the_first_in_order_starts_and_the_rest_wait() {
        let spec = limit(1, ConcurrencyPolicy::Queue);
        let runs = [
            run("done", Some(RunPhase::Succeeded), 0, 0),
            run("first", Some(RunPhase::Queued), 0, 1),
            run("second", Some(RunPhase::Queued), 0, 2),
        ];
        assert_eq!(
            plan_admission(Some(&spec), &runs[1], &runs),
            Admission::Start
        );
        assert_eq!(
            plan_admission(Some(&spec), &runs[2], &runs),
            Admission::Queue { position: 1 }
        );
    }

    #[test]
    fn cancelling_runs_neither_hold_a_slot_nor_a_place_in_line() {
        let spec = limit(1, ConcurrencyPolicy::Queue);
        let mut stopping = run("stopping", Some(RunPhase::Running), 0, 0);
        stopping.cancelling = true;
        let mut withdrawn = run("withdrawn", Some(RunPhase::Queued), 9, 1);
        withdrawn.cancelling = true;
        let candidate = run("c", Some(RunPhase::Queued), 0, 2);
        let runs = [stopping, withdrawn, candidate.clone()];
        assert_eq!(
            plan_admission(Some(&spec), &candidate, &runs),
            Admission::Start
        );
    }

    #[test]
    fn forbid_refuses_beyond_the_limit_with_a_reason() {
        let spec = limit(1, ConcurrencyPolicy::Forbid);
        let runs = [
            run("a", Some(RunPhase::Running), 0, 1),
            run("b", None, 0, 2),
        ];
        match plan_admission(Some(&spec), &runs[1], &runs) {
            Admission::Refuse { message } => {
                assert!(message.contains("policy Forbid"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let idle = [run("b", None, 0, 2)];
        assert_eq!(
            plan_admission(Some(&spec), &idle[0], &idle),
            Admission::Start
        );
    }

    #[test]
    fn replace_cancels_the_oldest_active_runs() {
        let spec = limit(2, ConcurrencyPolicy::Replace);
        let runs = [
            run("newer", Some(RunPhase::Running), 0, 5),
            run("oldest", Some(RunPhase::Running), 0, 1),
            run("c", None, 0, 9),
        ];
        assert_eq!(
            plan_admission(Some(&spec), &runs[2], &runs),
            Admission::StartReplacing {
                cancel: vec!["oldest".into()]
            }
        );
    }
}

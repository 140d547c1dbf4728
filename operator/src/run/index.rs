//! The runs of each Workflow as the run controller's watch sees them (a
//! [`crate::run_index`] grouping by `namespace/workflow`), the runs of each
//! namespace that quota admission counts ([`ByNamespace`]), and the pure
//! reads over them: which finished runs history limits expire, and the
//! Workflow's `status.lastRun` and `status.runs`.
//!
//! Everything here is computed from the index: no API call grows with the
//! runs a namespace keeps.

use crate::run_index::Indexing;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use sluice_crds::common::{condition_type, find_condition};
use sluice_crds::workflow::{HistoryLimits, LastRun, RunCounts};
use sluice_crds::{RunPhase, WorkflowRun};

/// The index of each Workflow's runs.
pub type RunIndex = crate::run_index::RunIndex<ByWorkflow>;

/// The index of each namespace's runs, as quota admission counts them.
pub type NamespaceIndex = crate::run_index::RunIndex<ByNamespace>;

/// Groups runs by namespace.
pub struct ByNamespace;

/// What quota admission keeps of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRun {
    /// `metadata.uid`: PostgreSQL's id of the run.
    pub uid: Option<uuid::Uuid>,
    pub view: crate::run::admission::RunView,
}

impl Indexing for ByNamespace {
    type Entry = NamespaceRun;

    fn index(run: &WorkflowRun) -> Option<(String, NamespaceRun)> {
        Some((
            run.namespace()?,
            NamespaceRun {
                uid: run.uid().and_then(|uid| uuid::Uuid::parse_str(&uid).ok()),
                view: crate::run::admission::RunView::of(run),
            },
        ))
    }
}

/// Finished runs of each outcome kept when a workflow sets no limit.
pub const DEFAULT_HISTORY: u32 = 10;

/// Groups runs by `namespace/workflow`.
pub struct ByWorkflow;

/// What the run controller keeps of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunEntry {
    pub name: String,
    pub phase: Option<RunPhase>,
    pub created: Option<DateTime<Utc>>,
    pub start_time: Option<DateTime<Utc>>,
    pub completion_time: Option<DateTime<Utc>>,
    /// The run's end is recorded (its `Completed` condition is set).
    pub recorded: bool,
    /// Deletion has been requested.
    pub deleting: bool,
}

impl RunEntry {
    /// Finished: Succeeded, Failed or Cancelled.
    pub fn finished(&self) -> bool {
        self.phase.is_some_and(RunPhase::is_terminal)
    }
}

/// The group of runs of `workflow` in `namespace`.
pub fn group(namespace: &str, workflow: &str) -> String {
    format!("{namespace}/{workflow}")
}

impl Indexing for ByWorkflow {
    type Entry = RunEntry;

    fn index(run: &WorkflowRun) -> Option<(String, RunEntry)> {
        Some((
            group(&run.namespace()?, &run.spec.workflow_ref.name),
            entry(run),
        ))
    }
}

/// What the index keeps of `run`.
pub fn entry(run: &WorkflowRun) -> RunEntry {
    let status = run.status.clone().unwrap_or_default();
    RunEntry {
        name: run.name_any(),
        phase: status.phase,
        created: run.metadata.creation_timestamp.as_ref().and_then(|t| {
            DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond() as u32)
        }),
        start_time: status.start_time,
        completion_time: status.completion_time,
        recorded: find_condition(&status.conditions, condition_type::COMPLETED).is_some(),
        deleting: run.metadata.deletion_timestamp.is_some(),
    }
}

/// The finished runs beyond the workflow's history limits, oldest
/// completions first to go: the names to delete.
pub fn expired_runs(runs: &[RunEntry], limits: Option<&HistoryLimits>) -> Vec<String> {
    let limits = limits.cloned().unwrap_or_default();
    let keep_succeeded = limits.successful.unwrap_or(DEFAULT_HISTORY) as usize;
    let keep_failed = limits.failed.unwrap_or(DEFAULT_HISTORY) as usize;
    let mut finished: Vec<&RunEntry> = runs
        .iter()
        .filter(|run| run.finished() && !run.deleting)
        .collect();
    finished.sort_by(|a, b| {
        b.completion_time
            .cmp(&a.completion_time)
            .then_with(|| b.name.cmp(&a.name))
    });
    let (succeeded, failed): (Vec<_>, Vec<_>) = finished
        .into_iter()
        .partition(|run| run.phase == Some(RunPhase::Succeeded));
    succeeded
        .into_iter()
        .skip(keep_succeeded)
        .chain(failed.into_iter().skip(keep_failed))
        .map(|run| run.name.clone())
        .collect()
}

/// A Workflow's `status.lastRun` and `status.runs` from its runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub last_run: Option<LastRun>,
    pub runs: RunCounts,
}

/// The most recently created run (ties broken by name) and the counts by
/// outcome of the runs still in the cluster and not being deleted.
pub fn build_run_summary(runs: &[RunEntry]) -> RunSummary {
    let present: Vec<&RunEntry> = runs.iter().filter(|run| !run.deleting).collect();
    let mut counts = RunCounts::default();
    for run in &present {
        match run.phase {
            Some(RunPhase::Succeeded) => counts.succeeded += 1,
            Some(RunPhase::Failed) => counts.failed += 1,
            Some(RunPhase::Cancelled) => counts.cancelled += 1,
            None | Some(RunPhase::Pending | RunPhase::Queued | RunPhase::Running) => {
                counts.active += 1
            }
        }
    }
    let last = present
        .iter()
        .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    RunSummary {
        last_run: last.map(|run| LastRun {
            name: run.name.clone(),
            phase: run.phase,
            start_time: run.start_time,
        }),
        runs: counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap())
    }

    fn finished(name: &str, phase: RunPhase, minute: u32) -> RunEntry {
        RunEntry {
            name: name.into(),
            phase: Some(phase),
            created: at(minute),
            start_time: at(minute),
            completion_time: at(minute),
            recorded: true,
            deleting: false,
        }
    }

    #[test]
    fn history_limits_expire_the_oldest_of_each_outcome() {
        let mut runs: Vec<RunEntry> = (0..5)
            .map(|i| finished(&format!("ok-{i}"), RunPhase::Succeeded, i))
            .collect();
        runs.extend((0..3).map(|i| finished(&format!("bad-{i}"), RunPhase::Failed, i)));
        runs.push(RunEntry {
            name: "running".into(),
            phase: Some(RunPhase::Running),
            ..RunEntry::default()
        });
        let mut gone = finished("ok-old-deleting", RunPhase::Succeeded, 0);
        gone.deleting = true;
        runs.push(gone);
        let limits = HistoryLimits {
            successful: Some(2),
            failed: Some(1),
        };
        assert_eq!(
            expired_runs(&runs, Some(&limits)),
            ["ok-2", "ok-1", "ok-0", "bad-1", "bad-0"]
        );
        assert!(
            expired_runs(&runs, None).is_empty(),
            "10 of each by default"
        );
    }

    #[test]
    fn the_summary_names_the_newest_run_and_counts_by_outcome() {
        let mut runs = vec![
            finished("a", RunPhase::Succeeded, 1),
            finished("b", RunPhase::Failed, 2),
            finished("c", RunPhase::Cancelled, 3),
            RunEntry {
                name: "d".into(),
                phase: Some(RunPhase::Queued),
                created: at(4),
                ..RunEntry::default()
            },
        ];
        let mut deleting = finished("e", RunPhase::Succeeded, 5);
        deleting.deleting = true;
        runs.push(deleting);
        let summary = build_run_summary(&runs);
        assert_eq!(
            summary.last_run,
            Some(LastRun {
                name: "d".into(),
                phase: Some(RunPhase::Queued),
                start_time: None
            })
        );
        assert_eq!(
            summary.runs,
            RunCounts {
                active: 1,
                succeeded: 1,
                failed: 1,
                cancelled: 1
            }
        );
        assert_eq!(build_run_summary(&[]), RunSummary::default());
    }

    #[test]
    fn an_entry_records_whether_the_end_was_recorded() {
        let mut run = WorkflowRun::fixture("r", "w");
        assert_eq!(
            ByWorkflow::index(&run).map(|(group, _)| group),
            Some("default/w".to_owned())
        );
        assert!(!entry(&run).recorded);
        run.status = Some(sluice_crds::WorkflowRunStatus {
            phase: Some(RunPhase::Succeeded),
            conditions: vec![sluice_crds::Condition::new(
                condition_type::COMPLETED,
                sluice_crds::ConditionStatus::True,
                "Succeeded",
                "done",
                None,
                Utc::now(),
            )],
            ..Default::default()
        });
        assert!(entry(&run).recorded && entry(&run).finished());
    }

    #[test]
    fn the_namespace_index_keeps_what_quota_admission_counts() {
        let mut run = WorkflowRun::fixture("r", "w");
        run.metadata.uid = Some("00000000-0000-0000-0000-000000000007".into());
        let (group, kept) = ByNamespace::index(&run).expect("a namespaced run");
        assert_eq!(group, "default");
        assert_eq!(kept.uid, Some(uuid::Uuid::from_u128(7)));
        assert_eq!(kept.view, crate::run::admission::RunView::of(&run));
    }
}

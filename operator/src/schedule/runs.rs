//! The runs Schedules created, indexed by the Schedule that owns them
//! (a [`crate::run_index`] grouping): a reconcile reads its Schedule's runs
//! here instead of listing them from the API server. Exactly-once does not
//! rest on this index: a slot's run has a derived name, so a second create
//! of it is AlreadyExists.

use super::plan::ObservedRun;
use crate::run_index::Indexing;
use kube::ResourceExt;
use sluice_crds::WorkflowRun;

/// The index of each Schedule's runs.
pub type RunIndex = crate::run_index::RunIndex<BySchedule>;

/// Groups runs by the UID of the Schedule that owns them.
pub struct BySchedule;

impl Indexing for BySchedule {
    type Entry = ObservedRun;

    fn index(run: &WorkflowRun) -> Option<(String, ObservedRun)> {
        observe(run)
    }
}

/// The owning Schedule's UID of a run and what the plan needs of it.
pub fn observe(run: &WorkflowRun) -> Option<(String, ObservedRun)> {
    let owner = run
        .owner_references()
        .iter()
        .find(|owner| owner.kind == "Schedule")?;
    let status = run.status.clone().unwrap_or_default();
    Some((
        owner.uid.clone(),
        ObservedRun {
            scheduled_time: run.spec.trigger.as_ref().and_then(|t| t.scheduled_time),
            phase: status.phase,
            cancel_requested: run.spec.cancel == Some(true),
            completion_time: status.completion_time,
            name: run.name_any(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::watcher::Event;
    use sluice_crds::RunPhase;

    fn run(name: &str, owner: &str, phase: Option<RunPhase>) -> WorkflowRun {
        let mut run = WorkflowRun::fixture(name, "wf");
        run.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Schedule".into(),
            uid: owner.into(),
            name: "s".into(),
            api_version: sluice_crds::API_VERSION.into(),
            ..OwnerReference::default()
        }]);
        run.status = Some(sluice_crds::WorkflowRunStatus {
            phase,
            ..Default::default()
        });
        run
    }

    fn names(index: &RunIndex, uid: &str) -> Vec<String> {
        index.runs_of(uid).into_iter().map(|run| run.name).collect()
    }

    #[test]
    fn follows_applies_and_deletes_per_schedule() {
        let index = RunIndex::default();
        index.apply(&Event::Apply(run("a-1", "a", None)));
        index.apply(&Event::Apply(run("a-2", "a", None)));
        index.apply(&Event::Apply(run("b-1", "b", None)));
        index.apply(&Event::Apply(run("a-1", "a", Some(RunPhase::Succeeded))));
        assert_eq!(names(&index, "a"), ["a-1", "a-2"]);
        assert_eq!(index.runs_of("a")[0].phase, Some(RunPhase::Succeeded));
        index.apply(&Event::Delete(run("a-1", "a", None)));
        assert_eq!(names(&index, "a"), ["a-2"]);
        assert_eq!(names(&index, "b"), ["b-1"]);
    }

    #[test]
    fn runs_without_a_schedule_owner_are_ignored() {
        let index = RunIndex::default();
        index.apply(&Event::Apply(WorkflowRun::fixture("manual", "wf")));
        assert!(index.is_empty());
    }

    #[test]
    fn a_created_run_is_visible_before_its_watch_event() {
        let index = RunIndex::default();
        index.created(&run("a-1", "a", None));
        assert_eq!(names(&index, "a"), ["a-1"]);
    }
}

//! The runs Schedules created, indexed by the Schedule that owns them, as
//! the controller's watch last saw them plus the runs the controller itself
//! just created.
//!
//! A reconcile reads its Schedule's runs here instead of listing them from
//! the API server: with 10,000 Schedules firing every minute, a label-selected
//! LIST per reconcile made the server scan every run ~170 times a second.
//! The watch updates the index before it triggers the reconcile, and a run
//! the controller creates is recorded at once, so the plan never misses a
//! run because the watch is a moment behind. (Exactly-once does not rest on
//! this index anyway: a slot's run has a derived name, so a second create
//! of it is AlreadyExists.)

use super::plan::ObservedRun;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use sluice_crds::WorkflowRun;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Schedule UID → run name → what the plan needs of the run.
type ByOwner = HashMap<String, BTreeMap<String, ObservedRun>>;

/// The index; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct RunIndex {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    current: ByOwner,
    /// A relist in progress: it replaces `current` when complete.
    relisting: Option<ByOwner>,
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

fn insert(index: &mut ByOwner, run: &WorkflowRun) {
    if let Some((owner, observed)) = observe(run) {
        index
            .entry(owner)
            .or_default()
            .insert(observed.name.clone(), observed);
    }
}

impl RunIndex {
    /// Folds one watch event into the index.
    pub fn apply(&self, event: &Event<WorkflowRun>) {
        let mut state = self.lock();
        match event {
            Event::Apply(run) => insert(&mut state.current, run),
            Event::Delete(run) => {
                if let Some((owner, observed)) = observe(run)
                    && let Some(runs) = state.current.get_mut(&owner)
                {
                    runs.remove(&observed.name);
                    if runs.is_empty() {
                        state.current.remove(&owner);
                    }
                }
            }
            Event::Init => state.relisting = Some(ByOwner::new()),
            Event::InitApply(run) => insert(state.relisting.get_or_insert_default(), run),
            Event::InitDone => {
                if let Some(relisted) = state.relisting.take() {
                    state.current = relisted;
                }
            }
        }
    }

    /// Records a run the controller has just created, unless the watch
    /// already delivered a newer view of it.
    pub fn created(&self, run: &WorkflowRun) {
        if let Some((owner, observed)) = observe(run) {
            self.lock()
                .current
                .entry(owner)
                .or_default()
                .entry(observed.name.clone())
                .or_insert(observed);
        }
    }

    /// The runs of the Schedule with `uid`.
    pub fn runs_of(&self, uid: &str) -> Vec<ObservedRun> {
        self.lock()
            .current
            .get(uid)
            .map(|runs| runs.values().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
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
        assert!(index.runs_of("unknown").is_empty());
    }

    #[test]
    fn runs_without_a_schedule_owner_are_ignored() {
        let index = RunIndex::default();
        index.apply(&Event::Apply(WorkflowRun::fixture("manual", "wf")));
        assert!(index.lock().current.is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let index = RunIndex::default();
        index.apply(&Event::Apply(run("gone", "a", None)));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(run("kept", "a", None)));
        assert_eq!(
            names(&index, "a"),
            ["gone"],
            "still the old view mid-relist"
        );
        index.apply(&Event::InitDone);
        assert_eq!(names(&index, "a"), ["kept"]);
    }

    #[test]
    fn a_created_run_is_visible_before_its_watch_event() {
        let index = RunIndex::default();
        index.created(&run("a-1", "a", None));
        assert_eq!(names(&index, "a"), ["a-1"]);
        index.apply(&Event::Apply(run("a-2", "a", Some(RunPhase::Running))));
        index.created(&run("a-2", "a", None));
        assert_eq!(index.runs_of("a")[1].phase, Some(RunPhase::Running));
    }
}

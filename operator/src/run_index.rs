//! Runs grouped by what a controller asks about them (the Schedule that
//! owns them, the Workflow they run), as a watch last saw them plus what
//! the controller itself just wrote.
//!
//! A controller reads a group here instead of listing runs from the API
//! server. Listing per reconcile grows with the runs kept: with 10,000
//! Schedules firing every minute, a label-selected LIST per reconcile made
//! the server scan every run ~170 times a second; history limits that
//! listed the namespace on every finished run grew with the square of the
//! runs kept, and slowed a new leader's catch-up to about one run a second.
//!
//! The watch updates the index before it triggers the reconcile, and what
//! a controller writes is recorded at once ([`RunIndex::created`],
//! [`RunIndex::observed`]), so a decision never misses its own last write
//! because the watch is a moment behind. Nothing here calls the API.
//!
//! What a group is, and what is kept of each run, is an [`Indexing`]:
//! [`crate::schedule::runs::BySchedule`] and [`crate::run::index::ByWorkflow`].

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use sluice_crds::WorkflowRun;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

/// What one index groups runs by and keeps of each.
pub trait Indexing {
    /// What the index keeps of a run: small, cheap to clone.
    type Entry: Clone;
    /// The run's group and entry; `None` leaves the run out.
    fn index(run: &WorkflowRun) -> Option<(String, Self::Entry)>;
}

/// The index; cheap to share behind an `Arc`.
pub struct RunIndex<I: Indexing> {
    state: Mutex<State<I::Entry>>,
}

impl<I: Indexing> Default for RunIndex<I> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                current: Groups::default(),
                relisting: None,
                listed: false,
            }),
        }
    }
}

struct State<E> {
    current: Groups<E>,
    /// A relist in progress: it replaces `current` when complete.
    relisting: Option<Groups<E>>,
    /// The watch has completed a list once: `current` holds every run.
    listed: bool,
}

struct Groups<E> {
    /// Group → run name → entry.
    members: HashMap<String, BTreeMap<String, E>>,
    /// `namespace/name` of a run → its group.
    group_of: HashMap<String, String>,
}

impl<E> Default for Groups<E> {
    fn default() -> Self {
        Self {
            members: HashMap::new(),
            group_of: HashMap::new(),
        }
    }
}

fn run_key(run: &WorkflowRun) -> String {
    format!("{}/{}", run.namespace().unwrap_or_default(), run.name_any())
}

impl<E> Groups<E> {
    /// Removes a run; returns the group it was in.
    fn remove(&mut self, key: &str, name: &str) -> Option<String> {
        let group = self.group_of.remove(key)?;
        if let Some(runs) = self.members.get_mut(&group) {
            runs.remove(name);
            if runs.is_empty() {
                self.members.remove(&group);
            }
        }
        Some(group)
    }

    /// Inserts (or, with `replace`, replaces) a run.
    fn insert(&mut self, key: String, name: String, group: String, entry: E, replace: bool) {
        if self.group_of.get(&key).is_some_and(|old| *old != group) {
            self.remove(&key, &name);
        }
        self.group_of.insert(key, group.clone());
        let runs = self.members.entry(group).or_default();
        if replace {
            runs.insert(name, entry);
        } else {
            runs.entry(name).or_insert(entry);
        }
    }

    fn groups(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }
}

impl<I: Indexing> RunIndex<I> {
    /// Folds one watch event into the index; returns the groups whose runs
    /// changed (every group, old and new, when a relist completes).
    pub fn apply(&self, event: &Event<WorkflowRun>) -> BTreeSet<String> {
        let mut state = self.lock();
        let mut touched = BTreeSet::new();
        match event {
            Event::Apply(run) => touched.extend(Self::upsert(&mut state.current, run, true)),
            Event::Delete(run) => {
                touched.extend(state.current.remove(&run_key(run), &run.name_any()));
            }
            Event::Init => state.relisting = Some(Groups::default()),
            Event::InitApply(run) => {
                Self::upsert(state.relisting.get_or_insert_default(), run, true);
            }
            Event::InitDone => {
                if let Some(relisted) = state.relisting.take() {
                    touched.extend(state.current.groups());
                    touched.extend(relisted.groups());
                    state.current = relisted;
                }
                state.listed = true;
            }
        }
        touched
    }

    fn upsert(groups: &mut Groups<I::Entry>, run: &WorkflowRun, replace: bool) -> Option<String> {
        let key = run_key(run);
        match I::index(run) {
            Some((group, entry)) => {
                groups.insert(key, run.name_any(), group.clone(), entry, replace);
                Some(group)
            }
            None => groups.remove(&key, &run.name_any()),
        }
    }

    /// Records a run the controller has just created, unless the watch
    /// already delivered a newer view of it.
    pub fn created(&self, run: &WorkflowRun) {
        Self::upsert(&mut self.lock().current, run, false);
    }

    /// Records what the controller has just written of a run (its status):
    /// newer than anything the watch delivered so far.
    pub fn observed(&self, run: &WorkflowRun) -> Option<String> {
        Self::upsert(&mut self.lock().current, run, true)
    }

    /// The runs of `group`, by name.
    pub fn runs_of(&self, group: &str) -> Vec<I::Entry> {
        self.lock()
            .current
            .members
            .get(group)
            .map(|runs| runs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The entry of run `name` in `namespace`.
    pub fn entry(&self, namespace: &str, name: &str) -> Option<I::Entry> {
        let state = self.lock();
        let group = state.current.group_of.get(&format!("{namespace}/{name}"))?;
        state.current.members.get(group)?.get(name).cloned()
    }

    /// Whether the watch has listed every run once (before that, a group
    /// may miss runs that exist).
    pub fn listed(&self) -> bool {
        self.lock().listed
    }

    /// Runs indexed.
    pub fn len(&self) -> usize {
        self.lock().current.group_of.len()
    }

    /// Whether no run is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<I::Entry>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::RunPhase;

    /// Groups runs by their workflow and keeps their phase.
    struct ByWorkflowName;

    impl Indexing for ByWorkflowName {
        type Entry = (String, Option<RunPhase>);
        fn index(run: &WorkflowRun) -> Option<(String, Self::Entry)> {
            let phase = run.status.as_ref().and_then(|s| s.phase);
            (run.spec.workflow_ref.name != "ignored")
                .then(|| (run.spec.workflow_ref.name.clone(), (run.name_any(), phase)))
        }
    }

    fn run(name: &str, workflow: &str, phase: Option<RunPhase>) -> WorkflowRun {
        let mut run = WorkflowRun::fixture(name, workflow);
        run.status = Some(sluice_crds::WorkflowRunStatus {
            phase,
            ..Default::default()
        });
        run
    }

    fn names(index: &RunIndex<ByWorkflowName>, group: &str) -> Vec<String> {
        index
            .runs_of(group)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn follows_applies_and_deletes_per_group_and_reports_what_changed() {
        let index = RunIndex::<ByWorkflowName>::default();
        assert_eq!(
            index.apply(&Event::Apply(run("a-1", "a", None))),
            BTreeSet::from(["a".to_owned()])
        );
        index.apply(&Event::Apply(run("a-2", "a", None)));
        index.apply(&Event::Apply(run("b-1", "b", None)));
        index.apply(&Event::Apply(run("a-1", "a", Some(RunPhase::Succeeded))));
        assert_eq!(names(&index, "a"), ["a-1", "a-2"]);
        assert_eq!(
            index.entry("default", "a-1").map(|(_, phase)| phase),
            Some(Some(RunPhase::Succeeded))
        );
        assert_eq!(
            index.apply(&Event::Delete(run("a-1", "a", None))),
            BTreeSet::from(["a".to_owned()])
        );
        assert_eq!(names(&index, "a"), ["a-2"]);
        assert_eq!(names(&index, "b"), ["b-1"]);
        assert!(index.runs_of("unknown").is_empty());
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn runs_left_out_by_the_indexing_are_ignored() {
        let index = RunIndex::<ByWorkflowName>::default();
        index.apply(&Event::Apply(run("x", "ignored", None)));
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_replaces_the_index_only_when_complete() {
        let index = RunIndex::<ByWorkflowName>::default();
        index.apply(&Event::Apply(run("gone", "a", None)));
        assert!(!index.listed());
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(run("kept", "b", None)));
        assert!(!index.listed(), "not listed before the list ends");
        assert_eq!(
            names(&index, "a"),
            ["gone"],
            "still the old view mid-relist"
        );
        let touched = index.apply(&Event::InitDone);
        assert_eq!(touched, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(index.listed());
        assert!(names(&index, "a").is_empty());
        assert_eq!(names(&index, "b"), ["kept"]);
        assert!(index.entry("default", "gone").is_none());
    }

    #[test]
    fn created_keeps_a_newer_watch_view_and_observed_replaces_it() {
        let index = RunIndex::<ByWorkflowName>::default();
        index.created(&run("a-1", "a", None));
        assert_eq!(names(&index, "a"), ["a-1"]);
        index.apply(&Event::Apply(run("a-2", "a", Some(RunPhase::Running))));
        index.created(&run("a-2", "a", None));
        assert_eq!(index.runs_of("a")[1].1, Some(RunPhase::Running));
        index.observed(&run("a-2", "a", Some(RunPhase::Failed)));
        assert_eq!(index.runs_of("a")[1].1, Some(RunPhase::Failed));
    }
}

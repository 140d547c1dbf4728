//! `spec.resumeFrom`: which nodes of an earlier run a new run reuses.
//!
//! Pure: the run it resumes from (its object, its frozen snapshot, the
//! outputs PostgreSQL holds whole) and the new run's spec and input → the
//! outputs to reuse, or why the run cannot resume. No client here.
//!
//! A node is reused when it succeeded in that run, its definition is the
//! same in both specs, every node it needs is reused too, and its whole
//! output is stored. Every other node runs again. Reuse is only sound with
//! the same input and `spec.env`: a different input is refused (leave
//! `spec.input` out to take the earlier run's), and a changed `spec.env`
//! runs every node again.

use serde_json::Value;
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::workflow::WorkflowSpec;
use sluice_crds::{NodePhase, RunPhase, WorkflowRun};
use std::collections::BTreeMap;

/// Reason of a run that cannot resume (status, condition and Event).
pub const RESUME_INVALID: &str = "ResumeInvalid";

/// What a resume reads about the run it resumes from.
#[derive(Clone, Debug)]
pub struct ResumeSource {
    /// The earlier run.
    pub run: WorkflowRun,
    /// Its frozen snapshot, if its ConfigMap is still there.
    pub snapshot: Option<RunSnapshot>,
    /// Outputs of its nodes that PostgreSQL holds whole, by node name.
    pub stored_outputs: BTreeMap<String, Value>,
}

/// The nodes a resumed run reuses, and why the others run again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResumePlan {
    /// Reused outputs, by node name.
    pub reused: BTreeMap<String, Value>,
    /// Nodes that succeeded in the earlier run but run again, with why.
    pub rerun: Vec<(String, String)>,
}

impl ResumePlan {
    /// One line for an Event: what is reused and what runs again.
    pub fn summary(&self, source: &str) -> String {
        let reused: Vec<&str> = self.reused.keys().map(String::as_str).collect();
        let mut line = if reused.is_empty() {
            format!("resuming from run {source}: no node output is reused")
        } else {
            format!(
                "resuming from run {source}: reusing the outputs of {}",
                reused.join(", ")
            )
        };
        for (node, why) in &self.rerun {
            line.push_str(&format!("; {node} runs again ({why})"));
        }
        line
    }
}

/// Why `run` cannot resume from `source` (absent: not found), if it cannot.
pub fn source_issue(run: &WorkflowRun, source: Option<&WorkflowRun>) -> Option<String> {
    let wanted = run.spec.resume_from.as_deref().unwrap_or_default();
    let workflow = &run.spec.workflow_ref.name;
    let Some(source) = source else {
        return Some(format!(
            "spec.resumeFrom: run {wanted:?} not found in this namespace: name a Failed or Cancelled run of workflow {workflow:?} that still exists"
        ));
    };
    if source.metadata.name == run.metadata.name {
        return Some(
            "spec.resumeFrom: a run cannot resume from itself: name an earlier run".into(),
        );
    }
    if source.spec.workflow_ref.name != *workflow {
        return Some(format!(
            "spec.resumeFrom: run {wanted:?} ran workflow {:?}, not {workflow:?}: name a run of the same workflow",
            source.spec.workflow_ref.name
        ));
    }
    let phase = source.status.as_ref().and_then(|status| status.phase);
    if !matches!(phase, Some(RunPhase::Failed | RunPhase::Cancelled)) {
        let phase = phase.map_or("not started".to_owned(), |phase| format!("{phase:?}"));
        return Some(format!(
            "spec.resumeFrom: run {wanted:?} is {phase}; only a Failed or Cancelled run can be resumed"
        ));
    }
    None
}

/// The input a resumed run asks for: its own, or else the earlier run's.
pub fn requested_input(run: &WorkflowRun, source: &ResumeSource) -> Option<Value> {
    run.spec.input.clone().or_else(|| {
        source
            .snapshot
            .as_ref()
            .map(|snapshot| snapshot.input.clone())
    })
}

/// The outputs a run with `spec` and (prepared) `input` reuses from `source`.
pub fn plan_resume(
    source: &ResumeSource,
    spec: &WorkflowSpec,
    input: &Value,
) -> Result<ResumePlan, String> {
    let name = source.run.metadata.name.clone().unwrap_or_default();
    let Some(snapshot) = &source.snapshot else {
        return Err(format!(
            "spec.resumeFrom: the frozen snapshot of run {name:?} is gone, so what it ran is unknown: start a fresh run"
        ));
    };
    if snapshot.input != *input {
        return Err(format!(
            "spec.resumeFrom: spec.input differs from run {name:?}'s input, so its outputs may not hold: leave spec.input out to reuse that input, or start a fresh run"
        ));
    }
    let reuse = Reuse {
        before: &snapshot.spec,
        now: spec,
        succeeded: source
            .run
            .status
            .iter()
            .flat_map(|status| &status.nodes)
            .filter(|node| node.phase == NodePhase::Succeeded)
            .map(|node| node.name.as_str())
            .collect(),
        stored: &source.stored_outputs,
        env_changed: serde_json::to_value(&snapshot.spec.env).ok()
            != serde_json::to_value(&spec.env).ok(),
    };
    let mut verdicts = BTreeMap::new();
    for name in &reuse.succeeded {
        reuse.decide(name, &mut verdicts);
    }
    let mut plan = ResumePlan::default();
    for (node, verdict) in verdicts {
        match verdict {
            Ok(output) => {
                plan.reused.insert(node.to_owned(), output.clone());
            }
            Err(why) if reuse.succeeded.contains(&node) => {
                plan.rerun.push((node.to_owned(), why));
            }
            Err(_) => {}
        }
    }
    Ok(plan)
}

/// What deciding whether a node is reused looks at.
struct Reuse<'a> {
    /// The spec the earlier run ran.
    before: &'a WorkflowSpec,
    /// The spec the new run runs.
    now: &'a WorkflowSpec,
    /// Nodes that succeeded in the earlier run.
    succeeded: Vec<&'a str>,
    /// Their outputs as PostgreSQL holds them whole.
    stored: &'a BTreeMap<String, Value>,
    env_changed: bool,
}

/// A node's verdict: its reused output, or why it runs again.
type Verdict<'a> = Result<&'a Value, String>;

impl<'a> Reuse<'a> {
    /// Whether node `name` is reused, deciding its needs first (the graph
    /// is acyclic: validation refused cycles).
    fn decide(&self, name: &'a str, verdicts: &mut BTreeMap<&'a str, Verdict<'a>>) -> bool {
        if let Some(verdict) = verdicts.get(name) {
            return verdict.is_ok();
        }
        let Some(node) = self.now.nodes.iter().find(|node| node.name == name) else {
            return false;
        };
        let before = self.before.nodes.iter().find(|node| node.name == name);
        let verdict = if !self.succeeded.contains(&name) {
            Err("it did not succeed".to_owned())
        } else if self.env_changed {
            Err("spec.env changed".to_owned())
        } else if before.map(serde_json::to_value).and_then(Result::ok)
            != serde_json::to_value(node).ok()
        {
            Err("its definition changed".to_owned())
        } else if let Some(need) = node.needs.iter().find(|need| !self.decide(need, verdicts)) {
            Err(format!("it needs {need}, which runs again"))
        } else {
            self.stored
                .get(name)
                .ok_or_else(|| "its whole output is not stored".to_owned())
        };
        let reused = verdict.is_ok();
        verdicts.insert(name, verdict);
        reused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_crds::workflow_run::NodeSummary;
    use sluice_crds::{NodeSpec, Workflow, WorkflowRunStatus};

    fn spec() -> WorkflowSpec {
        Workflow::fixture("w")
            .with_node(NodeSpec::transform("fetch", ".input"))
            .with_node(NodeSpec::transform("score", ".nodes.fetch.output").needs(&["fetch"]))
            .with_node(NodeSpec::transform("side", "1"))
            .with_node(NodeSpec::transform("notify", "2").needs(&["score", "side"]))
            .spec
    }

    fn failed_run(succeeded: &[&str]) -> WorkflowRun {
        let mut run = WorkflowRun::fixture("first", "w");
        run.status = Some(WorkflowRunStatus {
            phase: Some(RunPhase::Failed),
            nodes: spec()
                .nodes
                .iter()
                .map(|node| NodeSummary {
                    name: node.name.clone(),
                    phase: if succeeded.contains(&node.name.as_str()) {
                        NodePhase::Succeeded
                    } else {
                        NodePhase::Failed
                    },
                    attempts: 1,
                    start_time: None,
                    end_time: None,
                    items: None,
                    error: None,
                })
                .collect(),
            ..WorkflowRunStatus::default()
        });
        run
    }

    fn source(succeeded: &[&str]) -> ResumeSource {
        ResumeSource {
            run: failed_run(succeeded),
            snapshot: Some(RunSnapshot {
                namespace: "default".into(),
                name: "first".into(),
                uid: "u".into(),
                workflow: "w".into(),
                workflow_revision: 1,
                workflow_hash: String::new(),
                spec: spec(),
                input: json!({"email": "ada@example.com"}),
                connections: BTreeMap::new(),
                output_cap_bytes: 1024,
                reused_outputs: BTreeMap::new(),
                node_types: BTreeMap::new(),
            }),
            stored_outputs: succeeded
                .iter()
                .map(|node| ((*node).to_owned(), json!({"from": node})))
                .collect(),
        }
    }

    fn resumed() -> WorkflowRun {
        let mut run = WorkflowRun::fixture("second", "w");
        run.spec.resume_from = Some("first".into());
        run
    }

    fn input() -> Value {
        json!({"email": "ada@example.com"})
    }

    #[test]
    fn succeeded_nodes_are_reused_and_the_failed_one_runs_again() {
        let source = source(&["fetch", "score", "side"]);
        let plan = plan_resume(&source, &spec(), &input()).unwrap();
        assert_eq!(
            plan.reused.keys().collect::<Vec<_>>(),
            ["fetch", "score", "side"]
        );
        assert_eq!(plan.reused["score"], json!({"from": "score"}));
        assert!(plan.rerun.is_empty());
        assert_eq!(
            plan.summary("first"),
            "resuming from run first: reusing the outputs of fetch, score, side"
        );
    }

    #[test]
    fn a_changed_node_runs_again_and_so_does_everything_after_it() {
        let source = source(&["fetch", "score", "side"]);
        let mut changed = spec();
        changed.nodes[0] = NodeSpec::transform("fetch", ".input.email");
        let plan = plan_resume(&source, &changed, &input()).unwrap();
        assert_eq!(plan.reused.keys().collect::<Vec<_>>(), ["side"]);
        assert_eq!(
            plan.rerun,
            [
                ("fetch".to_owned(), "its definition changed".to_owned()),
                (
                    "score".to_owned(),
                    "it needs fetch, which runs again".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_node_whose_output_is_not_stored_whole_runs_again_with_its_dependants() {
        let mut source = source(&["fetch", "score", "side"]);
        source.stored_outputs.remove("fetch");
        let plan = plan_resume(&source, &spec(), &input()).unwrap();
        assert_eq!(plan.reused.keys().collect::<Vec<_>>(), ["side"]);
        assert_eq!(plan.rerun[0].1, "its whole output is not stored");
    }

    #[test]
    fn a_changed_env_reuses_nothing() {
        let source = source(&["fetch", "side"]);
        let mut changed = spec();
        changed.env = vec![sluice_crds::workflow::EnvVar {
            name: "REGION".into(),
            value: "eu".into(),
        }];
        let plan = plan_resume(&source, &changed, &input()).unwrap();
        assert!(plan.reused.is_empty());
        assert_eq!(plan.rerun.len(), 2);
    }

    #[test]
    fn a_different_input_or_a_missing_snapshot_is_refused_with_the_fix() {
        let source = source(&["fetch"]);
        let error =
            plan_resume(&source, &spec(), &json!({"email": "bob@example.com"})).unwrap_err();
        assert!(error.contains("leave spec.input out"), "{error}");
        let mut gone = source.clone();
        gone.snapshot = None;
        let error = plan_resume(&gone, &spec(), &input()).unwrap_err();
        assert!(
            error.contains("snapshot of run \"first\" is gone"),
            "{error}"
        );
    }

    #[test]
    fn the_input_defaults_to_the_earlier_runs() {
        let source = source(&["fetch"]);
        assert_eq!(requested_input(&resumed(), &source), Some(input()));
        let mut own = resumed();
        own.spec.input = Some(json!({"email": "x"}));
        assert_eq!(requested_input(&own, &source), Some(json!({"email": "x"})));
    }

    #[test]
    fn only_an_existing_failed_or_cancelled_run_of_the_same_workflow_can_be_resumed_from() {
        let run = resumed();
        let missing = source_issue(&run, None).unwrap();
        assert!(missing.contains("\"first\" not found"), "{missing}");

        let mut other = failed_run(&[]);
        other.spec.workflow_ref.name = "other".into();
        let wrong = source_issue(&run, Some(&other)).unwrap();
        assert!(wrong.contains("ran workflow \"other\""), "{wrong}");

        let mut running = failed_run(&[]);
        running.status.as_mut().unwrap().phase = Some(RunPhase::Running);
        let busy = source_issue(&run, Some(&running)).unwrap();
        assert!(busy.contains("is Running"), "{busy}");

        let mut itself = failed_run(&[]);
        itself.metadata.name = Some("second".into());
        assert!(
            source_issue(&run, Some(&itself))
                .unwrap()
                .contains("itself")
        );

        assert_eq!(source_issue(&run, Some(&failed_run(&[]))), None);
    }
}

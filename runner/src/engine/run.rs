//! The scheduling loop of one run: which node is ready, skipped or
//! started, when the run stops, and the run's outcome.

use super::execute::{Outcome, execute_node, millis_between};
use super::{Engine, RunRequest, RunResult};
use crate::budget::{MemoryBudget, json_len};
use crate::clock::{Clock, Jitter};
use crate::compiled::CompiledWorkflow;
use crate::expr::{json_to_val, val_to_json};
use crate::node::{LogLevel, LogSink, NodeContext};
use crate::report::{
    Event, EventKind, NodeResult, PhaseCounts, Reporter, RunSummary, reported_copy,
};
use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use jaq_json::{Map, Val};
use sluice_crds::workflow::RunWhen;
use sluice_crds::{NodePhase, RunPhase};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Numbers events and hands them to the reporter.
pub(super) struct Events {
    reporter: Arc<dyn Reporter>,
    clock: Arc<dyn Clock>,
    sequence: AtomicU64,
}

impl Events {
    pub(super) fn new(reporter: Arc<dyn Reporter>, clock: Arc<dyn Clock>) -> Self {
        Self {
            reporter,
            clock,
            sequence: AtomicU64::new(0),
        }
    }

    pub(super) fn emit(&self, kind: EventKind) {
        let event = Event {
            sequence: self.sequence.fetch_add(1, Ordering::SeqCst) + 1,
            time: self.clock.now(),
            kind,
        };
        self.reporter.report(&event);
    }
}

impl LogSink for Events {
    fn log(&self, node: &str, level: LogLevel, message: &str) {
        self.emit(EventKind::Log {
            node: node.to_owned(),
            level,
            message: message.to_owned(),
        });
    }
}

/// What every node execution of a run shares.
pub(super) struct Shared<'a> {
    pub engine: &'a Engine,
    pub workflow: &'a CompiledWorkflow,
    pub events: Arc<Events>,
    pub jitter: Mutex<Jitter>,
    pub semaphore: tokio::sync::Semaphore,
    /// What the run's node outputs may hold in total.
    pub budget: Arc<MemoryBudget>,
}

impl Shared<'_> {
    pub(super) fn clock(&self) -> &dyn Clock {
        self.engine.clock.as_ref()
    }

    pub(super) fn next_jitter(&self) -> f64 {
        self.jitter.lock().map_or(0.5, |mut j| j.next_unit())
    }
}

/// Per-node bookkeeping while the run goes.
struct Slot {
    phase: NodePhase,
    started_at: Option<DateTime<Utc>>,
    unfinished_needs: usize,
    result: Option<NodeResult>,
}

/// Why the loop stopped early.
enum Stop {
    Cancelled,
    Deadline,
}

pub(super) async fn run(shared: &Shared<'_>, request: RunRequest) -> RunResult {
    let workflow = shared.workflow;
    let clock = shared.clock();
    let started = clock.now();
    shared.events.emit(EventKind::RunStarted {
        workflow: request.info.workflow.clone(),
        run: request.info.name.clone(),
        node_count: workflow.nodes.len(),
    });
    let context = NodeContext {
        run: request.info.clone(),
        connections: request.connections.clone(),
        http: request.http.clone(),
        logs: shared.events.clone(),
        run_api: request.run_api.clone(),
        memory: shared.budget.clone(),
    };
    let base = BaseContext {
        input: json_to_val(&request.input),
        run: json_to_val(&serde_json::to_value(&request.info).unwrap_or_default()),
        env: json_to_val(&serde_json::Value::Object(workflow.env.clone())),
    };
    let mut nodes_val = Val::obj(Map::default());
    let mut slots: Vec<Slot> = workflow
        .nodes
        .iter()
        .map(|node| Slot {
            phase: NodePhase::Pending,
            started_at: None,
            unfinished_needs: node.needs.len(),
            result: None,
        })
        .collect();
    let mut ready: Vec<usize> = (0..slots.len())
        .rev()
        .filter(|&i| slots[i].unfinished_needs == 0)
        .collect();
    let mut failed_node: Option<(String, String)> = None;
    let mut running = FuturesUnordered::new();
    let mut deadline = match workflow.deadline {
        Some(limit) => clock.sleep(limit),
        None => Box::pin(futures::future::pending()),
    };
    let cancelled = request.cancel.clone();

    let stop = loop {
        // Decide every ready node: skip it, fail it, or start it.
        while let Some(index) = ready.pop() {
            let node = &workflow.nodes[index];
            let decision = decide(workflow, index, &slots, failed_node.as_ref());
            let reused = request.reused.get(&node.name).filter(|_| decision.is_ok());
            let finished = match decision {
                Ok(()) if reused.is_some() => Some(
                    Outcome::reused(reused.cloned().unwrap_or_default())
                        .hold(shared, index)
                        .into_result(shared, index, None, clock.now()),
                ),
                Err(reason) => Some(skipped(shared, index, reason)),
                Ok(()) => {
                    let context_val = base.with_nodes(&nodes_val);
                    match node
                        .condition
                        .as_ref()
                        .map(|c| c.truthy(context_val.clone()))
                    {
                        Some(Ok(false)) => {
                            Some(skipped(shared, index, "its if condition was false".into()))
                        }
                        Some(Err(error)) => Some(
                            Outcome::failed_before_start(format!(
                                "failed to evaluate if: {}",
                                error.message
                            ))
                            .into_result(
                                shared,
                                index,
                                None,
                                clock.now(),
                            ),
                        ),
                        Some(Ok(true)) | None => {
                            let now = clock.now();
                            slots[index].phase = NodePhase::Running;
                            slots[index].started_at = Some(now);
                            running.push(execute_node(shared, index, context_val, &context));
                            None
                        }
                    }
                }
            };
            if let Some((result, output)) = finished {
                finish(
                    shared,
                    index,
                    result,
                    output,
                    &mut slots,
                    &mut ready,
                    &mut nodes_val,
                    &mut failed_node,
                );
            }
        }
        if running.is_empty() {
            break None;
        }
        tokio::select! {
            biased;
            () = cancelled.cancelled() => break Some(Stop::Cancelled),
            () = &mut deadline => break Some(Stop::Deadline),
            Some((index, outcome)) = running.next() => {
                let started_at = slots[index].started_at;
                let (result, output) = outcome
                    .hold(shared, index)
                    .into_result(shared, index, started_at, clock.now());
                finish(shared, index, result, output, &mut slots, &mut ready, &mut nodes_val, &mut failed_node);
            }
        }
    };
    drop(running);

    if let Some(stop) = &stop {
        let reason = match stop {
            Stop::Cancelled => "the run was cancelled".to_owned(),
            Stop::Deadline => format!(
                "the run exceeded its deadline of {}s",
                workflow.deadline.map_or(0, |d| d.as_secs())
            ),
        };
        let now = clock.now();
        for (index, slot) in slots.iter_mut().enumerate() {
            if !slot.phase.is_terminal() {
                let (result, _) = Outcome::cancelled(reason.clone()).into_result(
                    shared,
                    index,
                    slot.started_at,
                    now,
                );
                shared.events.emit(EventKind::NodeFinished(result.clone()));
                slot.phase = NodePhase::Cancelled;
                slot.result = Some(result);
            }
        }
    }

    let nodes: Vec<NodeResult> = slots.into_iter().filter_map(|s| s.result).collect();
    let (summary, output) = summarize(
        shared,
        &base,
        &nodes_val,
        &nodes,
        stop,
        failed_node,
        started,
    );
    shared.events.emit(EventKind::RunFinished(summary.clone()));
    RunResult {
        summary,
        nodes,
        output,
    }
}

/// The parts of the expression context that do not change during a run.
struct BaseContext {
    input: Val,
    run: Val,
    env: Val,
}

impl BaseContext {
    fn with_nodes(&self, nodes: &Val) -> Val {
        let mut map = Map::default();
        map.insert(Val::utf8_str("input"), self.input.clone());
        map.insert(Val::utf8_str("nodes"), nodes.clone());
        map.insert(Val::utf8_str("item"), Val::Null);
        map.insert(Val::utf8_str("index"), Val::Null);
        map.insert(Val::utf8_str("run"), self.run.clone());
        map.insert(Val::utf8_str("env"), self.env.clone());
        Val::obj(map)
    }
}

/// Whether a node whose needs all finished may run, or why it is skipped.
fn decide(
    workflow: &CompiledWorkflow,
    index: usize,
    slots: &[Slot],
    failed_node: Option<&(String, String)>,
) -> Result<(), String> {
    let node = &workflow.nodes[index];
    if let Some((failed, _)) = failed_node
        && node.run_when != RunWhen::AllDone
    {
        return Err(format!("not started: the run failed at node {failed:?}"));
    }
    for &need in &node.needs {
        let phase = slots[need].phase;
        let blocked = match node.run_when {
            RunWhen::AllSucceeded => phase != NodePhase::Succeeded,
            RunWhen::NoneFailed => matches!(phase, NodePhase::Failed | NodePhase::Cancelled),
            RunWhen::AllDone => false,
        };
        if blocked {
            return Err(format!(
                "need {:?} {} (runWhen {:?})",
                workflow.nodes[need].name,
                match phase {
                    NodePhase::Skipped => "was skipped",
                    NodePhase::Failed => "failed",
                    NodePhase::Cancelled => "was cancelled",
                    _ => "did not succeed",
                },
                node.run_when
            ));
        }
    }
    Ok(())
}

fn skipped(
    shared: &Shared<'_>,
    index: usize,
    reason: String,
) -> (NodeResult, Option<serde_json::Value>) {
    Outcome::skipped(reason).into_result(shared, index, None, shared.clock().now())
}

/// Records a terminal node: reports it (with its reported copy), exposes
/// its whole `output` to expressions, and makes dependants whose needs all
/// finished ready.
#[allow(clippy::too_many_arguments)]
fn finish(
    shared: &Shared<'_>,
    index: usize,
    result: NodeResult,
    output: Option<serde_json::Value>,
    slots: &mut [Slot],
    ready: &mut Vec<usize>,
    nodes_val: &mut Val,
    failed_node: &mut Option<(String, String)>,
) {
    let node = &shared.workflow.nodes[index];
    shared.events.emit(EventKind::NodeFinished(result.clone()));
    if result.phase == NodePhase::Failed && !node.continue_on_error && failed_node.is_none() {
        *failed_node = Some((node.name.clone(), result.error.clone().unwrap_or_default()));
    }
    let mut entry = Map::default();
    entry.insert(
        Val::utf8_str("output"),
        output.as_ref().map_or(Val::Null, json_to_val),
    );
    drop(output);
    entry.insert(
        Val::utf8_str("phase"),
        Val::utf8_str(format!("{:?}", result.phase)),
    );
    if let Some(error) = &result.error {
        entry.insert(Val::utf8_str("error"), Val::utf8_str(error.clone()));
    }
    if let Val::Obj(map) = nodes_val {
        jaq_json::Rc::make_mut(map).insert(Val::utf8_str(node.name.clone()), Val::obj(entry));
    }
    slots[index].phase = result.phase;
    slots[index].result = Some(result);
    for &dependant in node.dependants.iter().rev() {
        slots[dependant].unfinished_needs -= 1;
        if slots[dependant].unfinished_needs == 0 {
            ready.push(dependant);
        }
    }
}

fn summarize(
    shared: &Shared<'_>,
    base: &BaseContext,
    nodes_val: &Val,
    nodes: &[NodeResult],
    stop: Option<Stop>,
    failed_node: Option<(String, String)>,
    started: DateTime<Utc>,
) -> (RunSummary, serde_json::Value) {
    let workflow = shared.workflow;
    let mut counts = PhaseCounts::default();
    for node in nodes {
        match node.phase {
            NodePhase::Succeeded => counts.succeeded += 1,
            NodePhase::Failed => counts.failed += 1,
            NodePhase::Skipped => counts.skipped += 1,
            NodePhase::Cancelled => counts.cancelled += 1,
            NodePhase::Pending | NodePhase::Running => {}
        }
    }
    let output = match &workflow.output {
        Some(program) => program
            .first(base.with_nodes(nodes_val))
            .map(|v| val_to_json(&v)),
        None => Ok(serde_json::Value::Object(
            workflow
                .nodes
                .iter()
                .filter(|node| node.dependants.is_empty())
                .map(|node| (node.name.clone(), whole_output(nodes_val, &node.name)))
                .collect(),
        )),
    };
    let (phase, reason, message, output) = match (stop, &failed_node, output) {
        (Some(Stop::Cancelled), _, _) => (
            RunPhase::Cancelled,
            "Cancelled",
            Some("the run was cancelled".to_owned()),
            serde_json::Value::Null,
        ),
        (Some(Stop::Deadline), _, _) => (
            RunPhase::Failed,
            "DeadlineExceeded",
            Some(format!(
                "the run exceeded its deadline of {}s (activeDeadlineSeconds)",
                workflow.deadline.map_or(0, |d| d.as_secs())
            )),
            serde_json::Value::Null,
        ),
        (None, Some((node, error)), _) => (
            RunPhase::Failed,
            "NodeFailed",
            Some(format!("node {node:?} failed: {error}")),
            serde_json::Value::Null,
        ),
        (None, None, Err(error)) => (
            RunPhase::Failed,
            "OutputFailed",
            Some(format!(
                "failed to compute the run output (spec.output): {}",
                error.message
            )),
            serde_json::Value::Null,
        ),
        (None, None, Ok(output)) => (RunPhase::Succeeded, "Succeeded", None, output),
    };
    let output_bytes = json_len(&output);
    let (reported, output_truncated) =
        reported_copy(&output, output_bytes, shared.engine.output_cap);
    let summary = RunSummary {
        phase,
        reason: reason.to_owned(),
        message,
        failed_node: failed_node.map(|(node, _)| node),
        output: reported,
        output_truncated,
        duration_ms: millis_between(started, shared.clock().now()),
        counts,
    };
    (summary, output)
}

/// The whole output of node `name` as its dependants see it (`null` when
/// it has none).
fn whole_output(nodes_val: &Val, name: &str) -> serde_json::Value {
    let Val::Obj(nodes) = nodes_val else {
        return serde_json::Value::Null;
    };
    match nodes.get(&Val::utf8_str(name.to_owned())) {
        Some(Val::Obj(entry)) => entry
            .get(&Val::utf8_str("output"))
            .map_or(serde_json::Value::Null, val_to_json),
        _ => serde_json::Value::Null,
    }
}

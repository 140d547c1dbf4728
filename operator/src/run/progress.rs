//! Folds the events a runner sends into the run's status: a one-line
//! summary per node, counts per phase, progress, the first failed node and
//! the capped output. Pure and idempotent: applying an event twice, or
//! events out of order, gives the same status, so the run API can accept
//! resent batches without remembering which it has seen.
//!
//! Status stays small: no node inputs or outputs, errors cut to one line
//! of at most [`MAX_NODE_ERROR_LEN`] characters, the run output capped at
//! [`STATUS_OUTPUT_CAP`] bytes and then marked as shortened, with
//! `outputTruncated` (the full payloads go to PostgreSQL).

use chrono::{DateTime, Utc};
use sluice_crds::run_api::{RunEvent, RunEventKind};
use sluice_crds::workflow_run::{MAX_NODE_ERROR_LEN, NodeCounts, NodeSummary};
use sluice_crds::{NodePhase, RunPhase, WorkflowRunStatus, WorkflowSpec};

/// Largest run output, in bytes of JSON, kept in status.
pub const STATUS_OUTPUT_CAP: usize = 4096;

/// Makes sure every node of `spec` has a summary (Pending until heard of).
pub fn seed_nodes(status: &mut WorkflowRunStatus, spec: &WorkflowSpec) {
    for node in &spec.nodes {
        if !status.nodes.iter().any(|summary| summary.name == node.name) {
            status.nodes.push(NodeSummary {
                name: node.name.clone(),
                ..NodeSummary::default()
            });
        }
    }
    refresh(status);
}

/// Applies `events` to `status`.
pub fn apply_events(status: &mut WorkflowRunStatus, events: &[RunEvent]) {
    for event in events {
        apply_event(status, event);
    }
    refresh(status);
}

fn apply_event(status: &mut WorkflowRunStatus, event: &RunEvent) {
    match &event.kind {
        RunEventKind::NodeStarted { node, attempt, .. } => {
            let (name, item) = split_item(node);
            let summary = summary_mut(status, name);
            summary.start_time = earliest(summary.start_time, event.time);
            if item.is_none() {
                summary.attempts = summary.attempts.max(*attempt as i32);
            }
            if !summary.phase.is_terminal() {
                summary.phase = NodePhase::Running;
            }
        }
        RunEventKind::NodeFinished {
            node,
            phase,
            attempts,
            started_at,
            error,
            ..
        } => {
            let (name, item) = split_item(node);
            if item.is_some() {
                // forEach items are summarised by their node's own event.
                let summary = summary_mut(status, name);
                if let Some(started) = started_at {
                    summary.start_time = earliest(summary.start_time, *started);
                }
                return;
            }
            let summary = summary_mut(status, name);
            summary.phase = *phase;
            summary.attempts = summary.attempts.max(*attempts as i32);
            if let Some(started) = started_at {
                summary.start_time = earliest(summary.start_time, *started);
            }
            summary.end_time = Some(event.time);
            summary.error = error.as_deref().map(one_line);
        }
        RunEventKind::Log { .. } => {}
        RunEventKind::RunFinished {
            phase,
            output,
            output_truncated,
            error,
            failed_node,
        } => {
            status.phase = Some(*phase);
            status.completion_time = Some(event.time);
            status.first_failed_node = failed_node.clone();
            if let Some(error) = error {
                status.message = Some(one_line(error));
            }
            let (output, cut) = cap_output(output.clone());
            status.output = output;
            status.output_truncated = (*output_truncated || cut).then_some(true);
        }
    }
}

/// Recomputes counts and progress from the node summaries.
pub fn refresh(status: &mut WorkflowRunStatus) {
    let mut counts = NodeCounts::default();
    for summary in &status.nodes {
        let slot = match summary.phase {
            NodePhase::Pending => &mut counts.pending,
            NodePhase::Running => &mut counts.running,
            NodePhase::Succeeded => &mut counts.succeeded,
            NodePhase::Failed => &mut counts.failed,
            NodePhase::Skipped => &mut counts.skipped,
            NodePhase::Cancelled => &mut counts.cancelled,
        };
        *slot += 1;
    }
    let finished = status
        .nodes
        .iter()
        .filter(|n| n.phase.is_terminal())
        .count();
    status.progress = Some(format!("{finished}/{}", status.nodes.len()));
    status.node_counts = Some(counts);
}

/// Whether the run's final event has been applied.
pub fn has_finished(status: &WorkflowRunStatus) -> bool {
    status.phase.is_some_and(RunPhase::is_terminal)
}

fn summary_mut<'a>(status: &'a mut WorkflowRunStatus, name: &str) -> &'a mut NodeSummary {
    let index = match status.nodes.iter().position(|summary| summary.name == name) {
        Some(index) => index,
        None => {
            status.nodes.push(NodeSummary {
                name: name.to_owned(),
                ..NodeSummary::default()
            });
            status.nodes.len() - 1
        }
    };
    &mut status.nodes[index]
}

/// `tag-each[3]` → (`tag-each`, Some(3)); `lookup` → (`lookup`, None).
fn split_item(node: &str) -> (&str, Option<usize>) {
    if let Some(open) = node.rfind('[')
        && let Some(index) = node[open + 1..]
            .strip_suffix(']')
            .and_then(|i| i.parse().ok())
    {
        return (&node[..open], Some(index));
    }
    (node, None)
}

fn earliest(current: Option<DateTime<Utc>>, candidate: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}

/// The first line of `text`, at most [`MAX_NODE_ERROR_LEN`] characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= MAX_NODE_ERROR_LEN {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(MAX_NODE_ERROR_LEN - 1).collect();
    cut.push('…');
    cut
}

/// The output if it fits the status cap; otherwise the runner's marker
/// (`{"$sluice": {"truncated": true, …}, "preview": …}`) and `true`.
fn cap_output(output: Option<serde_json::Value>) -> (Option<serde_json::Value>, bool) {
    let Some(output) = output else {
        return (None, false);
    };
    let bytes = sluice_runner::budget::json_len(&output);
    let (copy, cut) = sluice_runner::report::reported_copy(&output, bytes, STATUS_OUTPUT_CAP);
    (Some(copy), cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sluice_crds::{NodeSpec, Workflow};

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    fn event(seq: u64, second: u32, kind: RunEventKind) -> RunEvent {
        RunEvent {
            seq,
            time: at(second),
            kind,
        }
    }

    fn started(node: &str, attempt: u32) -> RunEventKind {
        RunEventKind::NodeStarted {
            node: node.into(),
            node_type: "http".into(),
            attempt,
            input: None,
        }
    }

    fn finished(node: &str, phase: NodePhase, attempts: u32, error: Option<&str>) -> RunEventKind {
        RunEventKind::NodeFinished {
            node: node.into(),
            node_type: "http".into(),
            phase,
            attempts,
            started_at: None,
            output: Some(serde_json::json!({"big": "payload"})),
            output_truncated: false,
            error: error.map(str::to_owned),
        }
    }

    fn seeded() -> WorkflowRunStatus {
        let workflow = Workflow::fixture("w")
            .with_node(NodeSpec::http_get("lookup", "/x"))
            .with_node(NodeSpec::transform("score", ".").needs(&["lookup"]));
        let mut status = WorkflowRunStatus::default();
        seed_nodes(&mut status, &workflow.spec);
        status
    }

    fn history() -> Vec<RunEvent> {
        vec![
            event(1, 1, started("lookup", 1)),
            event(2, 2, started("lookup", 2)),
            event(
                3,
                3,
                finished(
                    "lookup",
                    NodePhase::Failed,
                    2,
                    Some("HTTP 503 from crm\nbody: …"),
                ),
            ),
            event(4, 3, finished("score", NodePhase::Skipped, 0, None)),
            event(
                5,
                4,
                RunEventKind::RunFinished {
                    phase: RunPhase::Failed,
                    output: None,
                    output_truncated: false,
                    error: Some("node lookup failed: HTTP 503 from crm".into()),
                    failed_node: Some("lookup".into()),
                },
            ),
        ]
    }

    #[test]
    fn every_node_starts_pending() {
        let status = seeded();
        assert_eq!(status.progress.as_deref(), Some("0/2"));
        assert_eq!(status.node_counts.as_ref().unwrap().pending, 2);
    }

    #[test]
    fn events_become_one_line_node_summaries_without_payloads() {
        let mut status = seeded();
        apply_events(&mut status, &history());
        let lookup = &status.nodes[0];
        assert_eq!((lookup.phase, lookup.attempts), (NodePhase::Failed, 2));
        assert_eq!(lookup.error.as_deref(), Some("HTTP 503 from crm"));
        assert_eq!(
            (lookup.start_time, lookup.end_time),
            (Some(at(1)), Some(at(3)))
        );
        assert_eq!(status.phase, Some(RunPhase::Failed));
        assert_eq!(status.first_failed_node.as_deref(), Some("lookup"));
        assert_eq!(status.progress.as_deref(), Some("2/2"));
        let counts = status.node_counts.as_ref().unwrap();
        assert_eq!((counts.failed, counts.skipped), (1, 1));
        assert!(
            !serde_json::to_string(&status).unwrap().contains("payload"),
            "outputs stay out of status"
        );
        assert!(has_finished(&status));
    }

    #[test]
    fn replayed_and_reordered_events_give_the_same_status() {
        let mut once = seeded();
        apply_events(&mut once, &history());
        let mut shuffled = history();
        shuffled.reverse();
        shuffled.extend(history());
        let mut twice = seeded();
        apply_events(&mut twice, &shuffled);
        assert_eq!(once, twice);
    }

    #[test]
    fn for_each_items_do_not_create_summaries_of_their_own() {
        let mut status = seeded();
        apply_events(
            &mut status,
            &[
                event(1, 1, started("lookup[0]", 1)),
                event(2, 2, finished("lookup[0]", NodePhase::Succeeded, 1, None)),
            ],
        );
        assert_eq!(status.nodes.len(), 2);
        assert_eq!(status.nodes[0].phase, NodePhase::Running);
    }

    #[test]
    fn large_outputs_and_errors_are_capped() {
        let mut status = seeded();
        let long_error = "x".repeat(2000);
        let big = serde_json::json!({"rows": "y".repeat(10_000)});
        apply_events(
            &mut status,
            &[
                event(
                    1,
                    1,
                    finished("lookup", NodePhase::Failed, 1, Some(&long_error)),
                ),
                event(
                    2,
                    2,
                    RunEventKind::RunFinished {
                        phase: RunPhase::Succeeded,
                        output: Some(big),
                        output_truncated: false,
                        error: None,
                        failed_node: None,
                    },
                ),
            ],
        );
        assert_eq!(
            status.nodes[0].error.as_ref().unwrap().chars().count(),
            MAX_NODE_ERROR_LEN
        );
        assert_eq!(status.output_truncated, Some(true));
        let output = status.output.as_ref().unwrap();
        assert!(output.to_string().len() <= STATUS_OUTPUT_CAP);
        assert_eq!(
            sluice_runner::report::shortened(output),
            Some((10_011, STATUS_OUTPUT_CAP)),
            "the status copy is marked as shortened"
        );
    }
}

//! What a run tells the world while it executes: [`Event`]s (run started,
//! node started, node finished, log line, run finished), each with a
//! sequence number, delivered to a [`Reporter`].
//!
//! The engine only emits events; where they go is the reporter's business:
//! the terminal locally ([`TerminalReporter`], text or JSON lines), the
//! operator's run API inside a Job. Reporters must not block for long: they
//! are called from the engine's task.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_crds::run_api::RunEventKind;
use sluice_crds::{NodePhase, NodeType, RunPhase};
use std::io::Write;
use std::sync::Mutex;

pub use crate::node::LogLevel;

/// Receives a run's events, in sequence order.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn report(&self, event: &Event);
}

/// A reporter that drops every event.
#[derive(Debug, Default)]
pub struct NoReport;

impl Reporter for NoReport {
    fn report(&self, _: &Event) {}
}

/// A reporter that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// 1 for the first event of a run, then consecutive.
    pub sequence: u64,
    /// When it happened (by the engine's clock).
    pub time: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum EventKind {
    /// The run began.
    #[serde(rename_all = "camelCase")]
    RunStarted {
        /// Workflow name.
        workflow: String,
        /// Run name.
        run: String,
        /// Number of nodes.
        node_count: usize,
    },
    /// A node began executing (its first attempt).
    #[serde(rename_all = "camelCase")]
    NodeStarted {
        /// Node name.
        node: String,
        /// Node type.
        #[serde(rename = "type")]
        node_type: NodeType,
        /// Number of forEach items, when the node has forEach.
        #[serde(skip_serializing_if = "Option::is_none")]
        items: Option<usize>,
    },
    /// One attempt of a node (or of a forEach item, `name[index]`) began,
    /// with the rendered parameters it runs with.
    #[serde(rename_all = "camelCase")]
    AttemptStarted {
        /// Node name; `name[index]` for a forEach item.
        node: String,
        /// Node type.
        #[serde(rename = "type")]
        node_type: NodeType,
        /// 1 for the first attempt.
        attempt: u32,
        /// The rendered parameter block.
        input: serde_json::Value,
    },
    /// A node reached a terminal phase.
    NodeFinished(NodeResult),
    /// A log line from a node (or from the engine about a node, e.g. a retry).
    #[serde(rename_all = "camelCase")]
    Log {
        /// Node name (with forEach: `name[index]`).
        node: String,
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// The run ended.
    RunFinished(RunSummary),
}

/// The outcome of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    /// Node name.
    pub node: String,
    /// Node type.
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// Succeeded, Failed, Skipped or Cancelled.
    pub phase: NodePhase,
    /// Attempts made (with forEach: the most any item needed); 0 when it never ran.
    pub attempts: u32,
    /// When it started, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Milliseconds from start to finish, to the microsecond (0 when it
    /// never ran).
    pub duration_ms: f64,
    /// Its output, when it succeeded: whole up to the output cap, else a
    /// [`shortened`] marker with a preview (dependants still read it whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// One-line error, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped or cancelled, or (succeeded with 0 attempts) that
    /// its output was reused from the run this one resumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether this reported copy of the output was over the cap and
    /// replaced by a marker.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Size of the whole output as compact JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<usize>,
    /// Whether the node may fail without failing the run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Succeeded, Failed or Cancelled.
    pub phase: RunPhase,
    /// Machine-readable reason: Succeeded, NodeFailed, DeadlineExceeded,
    /// Cancelled, OutputFailed.
    pub reason: String,
    /// Human-readable explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first node whose failure failed the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_node: Option<String>,
    /// The run's output: whole up to the output cap, else a [`shortened`]
    /// marker with a preview.
    pub output: serde_json::Value,
    /// Whether `output` was over the cap and replaced by a marker.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
    /// Milliseconds from start to end, to the microsecond.
    pub duration_ms: f64,
    /// Nodes per phase.
    pub counts: PhaseCounts,
}

/// Nodes per terminal phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseCounts {
    /// Succeeded nodes.
    pub succeeded: usize,
    /// Failed nodes.
    pub failed: usize,
    /// Skipped nodes.
    pub skipped: usize,
    /// Cancelled nodes.
    pub cancelled: usize,
}

/// How the terminal reporter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalFormat {
    /// One human line per node start and end, on stderr.
    Text,
    /// One JSON object per event, on stdout.
    Json,
}

/// Prints events for a person (text on stderr) or a program (JSON lines on stdout).
#[derive(Debug)]
pub struct TerminalReporter {
    format: TerminalFormat,
}

impl TerminalReporter {
    /// A reporter writing in `format`.
    pub fn new(format: TerminalFormat) -> Self {
        Self { format }
    }
}

impl Reporter for TerminalReporter {
    fn report(&self, event: &Event) {
        match self.format {
            TerminalFormat::Json => {
                if let Ok(line) = serde_json::to_string(event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                }
            }
            TerminalFormat::Text => {
                if let Some(line) = text_line(event) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }
}

/// The human line for an event (none for run start and end: the CLI
/// prints the run's outcome itself).
pub fn text_line(event: &Event) -> Option<String> {
    match &event.kind {
        EventKind::RunStarted { .. }
        | EventKind::RunFinished(_)
        | EventKind::AttemptStarted { .. } => None,
        EventKind::NodeStarted {
            node,
            node_type,
            items,
        } => Some(match items {
            Some(count) => format!("▶ {node} ({node_type}, {count} items)"),
            None => format!("▶ {node} ({node_type})"),
        }),
        EventKind::Log {
            node,
            level,
            message,
        } => Some(format!("  {node} [{}] {message}", level_name(*level))),
        EventKind::NodeFinished(result) => {
            let mark = match result.phase {
                NodePhase::Succeeded => "✔",
                NodePhase::Failed => "✘",
                NodePhase::Skipped => "○",
                _ => "■",
            };
            let mut line = format!("{mark} {} {:?}", result.node, result.phase);
            if result.attempts > 0 {
                line.push_str(&format!(" in {}", format_millis(result.duration_ms)));
            }
            if result.attempts > 1 {
                line.push_str(&format!(" (attempt {})", result.attempts));
            }
            if let Some(error) = &result.error {
                line.push_str(&format!(": {error}"));
                if result.continue_on_error {
                    line.push_str(" (continueOnError)");
                }
            } else if let Some(reason) = &result.reason {
                line.push_str(&format!(": {reason}"));
            } else if let Some(output) = &result.output {
                line.push_str(&format!(" → {}", one_line(output, 100)));
            }
            if result.truncated {
                line.push_str(&format!(
                    " [output of {} shown shortened; dependants get it whole]",
                    crate::budget::human(result.output_bytes.unwrap_or_default())
                ));
            }
            Some(line)
        }
    }
}

/// The run API's wire form of an event kind (`sluice_crds::run_api`), for
/// reporters that send events to the operator. Run start and the
/// node-level start have no wire form (the wire's `nodeStarted` is per
/// attempt); such reporters number the events they send themselves.
pub fn to_wire(kind: &EventKind) -> Option<RunEventKind> {
    Some(match kind {
        EventKind::RunStarted { .. } | EventKind::NodeStarted { .. } => return None,
        EventKind::AttemptStarted {
            node,
            node_type,
            attempt,
            input,
        } => RunEventKind::NodeStarted {
            node: node.clone(),
            node_type: node_type.as_str().to_owned(),
            attempt: *attempt,
            input: Some(input.clone()),
        },
        EventKind::NodeFinished(result) => RunEventKind::NodeFinished {
            node: result.node.clone(),
            node_type: result.node_type.as_str().to_owned(),
            phase: result.phase,
            attempts: result.attempts,
            started_at: result.started_at,
            output: result.output.clone(),
            output_truncated: result.truncated,
            error: result.error.clone().or_else(|| result.reason.clone()),
        },
        EventKind::Log {
            node,
            level,
            message,
        } => RunEventKind::Log {
            node: Some(node.clone()),
            level: level_name(*level).to_owned(),
            message: message.clone(),
        },
        EventKind::RunFinished(summary) => RunEventKind::RunFinished {
            phase: summary.phase,
            output: Some(summary.output.clone()),
            output_truncated: summary.output_truncated,
            error: summary.message.clone(),
            failed_node: summary.failed_node.clone(),
        },
    })
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// `153µs`, `2.5ms`, `850ms`, `1.2s`, `2m05s`.
pub fn format_millis(millis: f64) -> String {
    let millis = millis.max(0.0);
    if millis < 1.0 {
        return format!("{:.0}µs", millis * 1000.0);
    }
    if millis < 10.0 {
        return format!("{millis:.1}ms");
    }
    let whole = millis.round() as u64;
    match whole {
        0..1000 => format!("{whole}ms"),
        1000..60_000 => format!("{:.1}s", millis / 1000.0),
        _ => format!("{}m{:02}s", whole / 60_000, (whole % 60_000) / 1000),
    }
}

/// The key marking a reported copy Sluice shortened (the mirror uses the
/// same shape for what it shortens).
pub const MARKER_KEY: &str = "$sluice";

/// Longest preview a shortened copy carries, in bytes of JSON text.
const PREVIEW_BYTES: usize = 2048;

/// The copy of `value` (`bytes` long as compact JSON) that is reported:
/// `value` itself when it fits `cap`, otherwise a marker
/// `{"$sluice": {"truncated": true, "originalBytes", "capBytes"},
/// "preview": "<start of the JSON text>"}`. Returns whether it was shortened.
pub fn reported_copy(
    value: &serde_json::Value,
    bytes: usize,
    cap: usize,
) -> (serde_json::Value, bool) {
    if bytes <= cap {
        return (value.clone(), false);
    }
    let preview = crate::budget::json_prefix(value, PREVIEW_BYTES.min(cap / 2));
    let marker = serde_json::json!({
        MARKER_KEY: {"truncated": true, "originalBytes": bytes, "capBytes": cap},
        "preview": preview,
    });
    (marker, true)
}

/// `(originalBytes, capBytes)` when `value` is a shortened copy's marker.
pub fn shortened(value: &serde_json::Value) -> Option<(usize, usize)> {
    let marker = value.get(MARKER_KEY)?;
    if marker.get("truncated") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let number = |key: &str| {
        marker
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    Some((number("originalBytes")?, number("capBytes")?))
}

/// A value as compact JSON, cut to `limit` characters with `…`.
pub fn one_line(value: &serde_json::Value, limit: usize) -> String {
    // A character takes at most 4 bytes: no need to write the rest.
    let text = crate::budget::json_prefix(value, limit.saturating_mul(4).saturating_add(4));
    if text.chars().count() <= limit {
        return text;
    }
    let cut: String = text.chars().take(limit).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finished(phase: NodePhase) -> NodeResult {
        NodeResult {
            node: "fetch".into(),
            node_type: NodeType::Http,
            phase,
            attempts: 2,
            started_at: None,
            finished_at: DateTime::UNIX_EPOCH,
            duration_ms: 1500.25,
            output: Some(json!({"status": 200})),
            error: None,
            reason: None,
            truncated: false,
            output_bytes: Some(14),
            continue_on_error: false,
        }
    }

    #[test]
    fn text_lines_show_phase_duration_attempt_and_output() {
        let event = Event {
            sequence: 3,
            time: DateTime::UNIX_EPOCH,
            kind: EventKind::NodeFinished(finished(NodePhase::Succeeded)),
        };
        assert_eq!(
            text_line(&event).unwrap(),
            "✔ fetch Succeeded in 1.5s (attempt 2) → {\"status\":200}"
        );
    }

    #[test]
    fn json_events_carry_sequence_and_kind() {
        let event = Event {
            sequence: 7,
            time: DateTime::UNIX_EPOCH,
            kind: EventKind::Log {
                node: "a".into(),
                level: LogLevel::Warn,
                message: "hm".into(),
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["sequence"], 7);
        assert_eq!(value["event"], "log");
        assert_eq!(value["level"], "warn");
        let finished_event = Event {
            sequence: 8,
            time: DateTime::UNIX_EPOCH,
            kind: EventKind::NodeFinished(finished(NodePhase::Failed)),
        };
        let value = serde_json::to_value(&finished_event).unwrap();
        assert_eq!(value["event"], "nodeFinished");
        assert_eq!(value["phase"], "Failed");
        assert_eq!(value["durationMs"], 1500.25, "microseconds are kept");
    }

    #[test]
    fn events_map_to_the_run_api_wire_form() {
        let attempt = EventKind::AttemptStarted {
            node: "tag-each[2]".into(),
            node_type: NodeType::Http,
            attempt: 2,
            input: json!({"url": "/x"}),
        };
        let wire = serde_json::to_value(to_wire(&attempt).unwrap()).unwrap();
        assert_eq!(wire["type"], "nodeStarted");
        assert_eq!(wire["nodeType"], "http");
        assert_eq!(wire["attempt"], 2);
        let finished = to_wire(&EventKind::NodeFinished(finished(NodePhase::Failed))).unwrap();
        assert!(matches!(
            finished,
            RunEventKind::NodeFinished { attempts: 2, .. }
        ));
        let started = EventKind::NodeStarted {
            node: "a".into(),
            node_type: NodeType::Http,
            items: None,
        };
        assert_eq!(to_wire(&started), None);
    }

    #[test]
    fn durations_keep_microseconds() {
        assert_eq!(format_millis(0.153), "153µs");
        assert_eq!(format_millis(2.46), "2.5ms");
        assert_eq!(format_millis(850.0), "850ms");
        assert_eq!(format_millis(1250.0), "1.2s");
        assert_eq!(format_millis(125_000.0), "2m05s");
    }

    #[test]
    fn reported_copies_over_the_cap_are_marked_with_a_preview() {
        let value = json!({"rows": "y".repeat(5000)});
        let bytes = crate::budget::json_len(&value);
        let (copy, cut) = reported_copy(&value, bytes, 100_000);
        assert!(!cut);
        assert_eq!(copy, value);
        let (copy, cut) = reported_copy(&value, bytes, 1000);
        assert!(cut);
        assert_eq!(shortened(&copy), Some((bytes, 1000)));
        let preview = copy["preview"].as_str().unwrap();
        assert!(preview.starts_with("{\"rows\":\"yyy") && preview.len() == 500);
        assert_eq!(shortened(&value), None);
    }

    #[test]
    fn long_outputs_are_cut() {
        let long = json!("x".repeat(300));
        assert!(one_line(&long, 10).ends_with('…'));
        assert_eq!(one_line(&long, 10).chars().count(), 11);
    }
}

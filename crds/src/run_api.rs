//! The run API's wire types: what `sluice-runner exec` fetches from the
//! operator and what it sends back. Both sides depend on this module, so
//! the contract lives in one place.
//!
//! - `GET  /api/v1/runs/{namespace}/{name}` → [`RunSnapshot`]: the run's
//!   frozen workflow spec, input and connection specs (never secret values).
//! - `POST /api/v1/runs/{namespace}/{name}/events` with an [`EventBatch`] →
//!   [`EventAck`]. Events carry a per-run sequence number starting at 1;
//!   the operator applies each sequence number at most once, so a runner
//!   may resend a batch after a timeout and batches may arrive out of order.
//! - `PUT /api/v1/runs/{namespace}/{name}/children/{child}` with a
//!   [`ChildRunRequest`] → [`ChildRun`]: starts (or, when it exists, finds)
//!   the child run a `workflow` node asked for; `GET` on the same path reads
//!   it and `DELETE` cancels it. Only children of the run named in the path
//!   are visible.
//!
//! - `POST /api/v1/runs/{namespace}/{name}/connections/{connection}/token`
//!   with a [`TokenRefreshRequest`] → [`TokenRefreshAnswer`]: an `http`
//!   node whose OAuth2 access token was refused (401) asks the operator
//!   for a fresh one, once; only connections the run's snapshot names
//!   are served.
//!
//! Every request carries `Authorization: Bearer <token>`, the credential the
//! operator created for that run only.

use crate::connection::ConnectionSpec;
use crate::workflow::WorkflowSpec;
use crate::workflow_run::{NodePhase, RunPhase};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path prefix of the run API.
pub const RUN_API_PREFIX: &str = "/api/v1/runs";

/// Environment variables the operator sets on runner pods and
/// `sluice-runner exec` reads.
pub mod env {
    /// Base URL of the operator's run API.
    pub const RUN_API_URL: &str = "SLUICE_RUN_API_URL";
    /// Namespace of the run.
    pub const RUN_NAMESPACE: &str = "SLUICE_RUN_NAMESPACE";
    /// Name of the run.
    pub const RUN_NAME: &str = "SLUICE_RUN_NAME";
    /// File holding the run API credential.
    pub const RUN_TOKEN_FILE: &str = "SLUICE_RUN_TOKEN_FILE";
}

/// Everything a runner needs to execute its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSnapshot {
    /// Namespace of the run.
    pub namespace: String,
    /// Name of the run.
    pub name: String,
    /// UID of the run.
    pub uid: String,
    /// Name of the workflow.
    pub workflow: String,
    /// Revision of the workflow spec frozen for this run.
    pub workflow_revision: i64,
    /// SHA-256 of the frozen spec.
    pub workflow_hash: String,
    /// The frozen workflow spec.
    pub spec: WorkflowSpec,
    /// The run's input, validated and with defaults applied.
    pub input: serde_json::Value,
    /// Specs of the connections the nodes name; their secrets are mounted
    /// as files, never sent here.
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// Largest node output, in bytes of JSON, kept whole.
    pub output_cap_bytes: u64,
    /// Outputs of nodes reused from `spec.resumeFrom`, by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reused_outputs: BTreeMap<String, serde_json::Value>,
    /// Definitions of the custom node types the nodes use, by type name
    /// (a NodeType of the namespace, else a ClusterNodeType), frozen with
    /// the spec: presets and params schemas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_types: BTreeMap<String, crate::NodeTypeSpec>,
}

/// A batch of events, in sequence order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The events.
    pub events: Vec<RunEvent>,
}

/// The operator's answer to an [`EventBatch`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventAck {
    /// Every event up to and including this sequence number is stored.
    pub acknowledged_seq: u64,
    /// The run was cancelled: stop running nodes and report Cancelled.
    #[serde(default)]
    pub cancel: bool,
}

/// One thing that happened in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    /// Per-run sequence number, starting at 1.
    pub seq: u64,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: RunEventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum RunEventKind {
    /// An attempt of a node (or of one forEach item, `node[index]`) started.
    NodeStarted {
        /// Node name; `name[index]` for a forEach item.
        node: String,
        /// Node type, e.g. `http`.
        node_type: String,
        /// Attempt number, 1 for the first.
        attempt: u32,
        /// The rendered parameters the attempt runs with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<serde_json::Value>,
    },
    /// A node (or forEach item) finished, was skipped or was cancelled.
    NodeFinished {
        /// Node name; `name[index]` for a forEach item.
        node: String,
        /// Node type, e.g. `http`.
        node_type: String,
        /// Final phase.
        phase: NodePhase,
        /// Attempts made.
        attempts: u32,
        /// When the first attempt started (absent when skipped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<DateTime<Utc>>,
        /// Output (capped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
        /// Whether the output was cut to the cap.
        #[serde(default)]
        output_truncated: bool,
        /// Error of the last attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A log line, from a node or from the runner itself.
    Log {
        /// Node the line belongs to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// debug, info, warn or error.
        level: String,
        /// The line.
        message: String,
    },
    /// The run ended.
    RunFinished {
        /// Succeeded, Failed or Cancelled.
        phase: RunPhase,
        /// The run's output (capped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<serde_json::Value>,
        /// Whether the output was cut to the cap.
        #[serde(default)]
        output_truncated: bool,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// First node that failed the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_node: Option<String>,
    },
}

/// What a `workflow` node asks the run API to start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRunRequest {
    /// Name of the Workflow to run, in the parent run's namespace.
    pub workflow: String,
    /// Input of the child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

/// A child run, as its parent's runner sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRun {
    /// Name of the child WorkflowRun.
    pub name: String,
    /// Its phase (Pending until the operator has seen it).
    pub phase: RunPhase,
    /// Its output as kept in status: capped by the operator (4 KiB of JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Whether `output` was cut to the status cap.
    #[serde(default)]
    pub output_truncated: bool,
    /// Machine-readable reason of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// First node that failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_node: Option<String>,
}

/// What a runner sends when the access token it used was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRefreshRequest {
    /// Hex SHA-256 of the access token the API refused: the operator
    /// renews only when that token is still the current one, so many
    /// nodes refused at once cause one renewal.
    pub rejected_token_sha256: String,
}

/// The operator's answer: the current access token of the connection.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRefreshAnswer {
    /// The access token. Never logged: `Debug` hides it.
    pub access_token: String,
    /// When it expires, when the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for TokenRefreshAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRefreshAnswer")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn events_have_a_flat_tagged_wire_form() {
        let event = RunEvent {
            seq: 7,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            kind: RunEventKind::NodeFinished {
                node: "tag-each[2]".into(),
                node_type: "http".into(),
                phase: NodePhase::Failed,
                attempts: 3,
                started_at: None,
                output: None,
                output_truncated: false,
                error: Some("HTTP 503".into()),
            },
        };
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(wire["type"], "nodeFinished");
        assert_eq!(wire["seq"], 7);
        assert_eq!(wire["nodeType"], "http");
        assert_eq!(wire["phase"], "Failed");
        let back: RunEvent = serde_json::from_value(wire).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn an_ack_defaults_to_not_cancelled() {
        let ack: EventAck = serde_json::from_str(r#"{"acknowledgedSeq": 3}"#).unwrap();
        assert_eq!(
            ack,
            EventAck {
                acknowledged_seq: 3,
                cancel: false
            }
        );
    }
}

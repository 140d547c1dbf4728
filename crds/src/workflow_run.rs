//! The `WorkflowRun` resource: one execution of a Workflow.
//!
//! Status stays small whatever the workflow's size or data: a one-line
//! summary per node, never payloads. Full inputs, outputs and logs live in
//! PostgreSQL.

use crate::common::{Condition, LocalObjectReference, any_json_schema, conditions_schema};
use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest one-line node error kept in status.
pub const MAX_NODE_ERROR_LEN: usize = 512;

/// Desired state of a run: which workflow, with what input, and whether to cancel it.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "WorkflowRun",
    doc = "A WorkflowRun is one execution of a Workflow: create one to start a run, watch its phase, set spec.cancel to stop it. Schedules and webhook triggers create them too.",
    namespaced,
    status = "WorkflowRunStatus",
    shortname = "wfr",
    shortname = "run",
    category = "sluice",
    printcolumn = r#"{"name": "Workflow", "type": "string", "jsonPath": ".spec.workflowRef.name"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Nodes", "type": "string", "jsonPath": ".status.progress"}"#,
    printcolumn = r#"{"name": "Started", "type": "date", "jsonPath": ".status.startTime"}"#,
    printcolumn = r#"{"name": "Duration", "type": "string", "jsonPath": ".status.duration"}"#,
    printcolumn = r#"{"name": "Failed Node", "type": "string", "jsonPath": ".status.firstFailedNode", "priority": 1}"#,
    printcolumn = r#"{"name": "Trigger", "type": "string", "jsonPath": ".spec.trigger.type", "priority": 1}"#
)]
#[x_kube(
    validation = Rule::new("self.workflowRef == oldSelf.workflowRef")
        .message("workflowRef cannot change after the run is created: create a new run instead")
        .field_path(".workflowRef"),
    validation = Rule::new("!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)")
        .message("a cancelled run cannot be un-cancelled: create a new run instead")
        .field_path(".cancel")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunSpec {
    /// The Workflow to run, in the same namespace.
    pub workflow_ref: LocalObjectReference,
    /// Input of the run, checked against the workflow's `spec.input.schema`;
    /// the workflow's defaults fill fields it does not set. Readable in
    /// expressions as `.input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub input: Option<serde_json::Value>,
    /// Queued runs start in descending priority, then creation order. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: Option<i32>,
    /// Set true to cancel the run: running nodes are stopped and the run
    /// ends as Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
    /// Name of a Failed or Cancelled run of the same workflow to resume:
    /// its succeeded nodes whose definition is unchanged (and whose needs
    /// are reused too) do not run again, their outputs are reused from
    /// PostgreSQL, so the operator needs its database. Leave `input` out
    /// to take that run's input; a different input is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub resume_from: Option<String>,
    /// What started the run. Set by schedules and webhooks; absent means manual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<RunTrigger>,
}

/// What started a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TriggerType {
    /// Created by a person or a tool (the default).
    #[default]
    Manual,
    /// Created by a Schedule for one of its slots.
    Schedule,
    /// Created by a webhook request.
    Webhook,
    /// Created by a `workflow` node of another run.
    Workflow,
}

/// What started a run, with its data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunTrigger {
    /// Manual, Schedule, Webhook or Workflow.
    #[serde(rename = "type")]
    pub type_: TriggerType,
    /// Name of the Schedule, webhook trigger or parent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub source: Option<String>,
    /// Nominal time of the schedule slot this run fires for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<DateTime<Utc>>,
    /// Trigger data, e.g. a webhook request's headers (without credentials) and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub data: Option<serde_json::Value>,
}

/// Lifecycle phase of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    /// Accepted, not yet admitted.
    #[default]
    Pending,
    /// Waiting for a concurrency slot.
    Queued,
    /// Its Job exists and nodes are executing.
    Running,
    /// Every node that ran succeeded (or was allowed to fail).
    Succeeded,
    /// A node failed, the Job failed, or the run was refused.
    Failed,
    /// Cancelled by `spec.cancel`, deletion or a Replace concurrency policy.
    Cancelled,
}

impl RunPhase {
    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

/// Phase of one node in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NodePhase {
    /// Not started: its needs have not finished.
    #[default]
    Pending,
    /// Executing (possibly between retries).
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Not run: its `if` was false or a need did not succeed.
    Skipped,
    /// Stopped by cancellation or the run's deadline.
    Cancelled,
}

impl NodePhase {
    /// Whether the node has finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, NodePhase::Pending | NodePhase::Running)
    }
}

/// Observed state of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Queued, Running, Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// Machine-readable reason of the phase, e.g. NodeFailed, OOMKilled,
    /// DeadlineExceeded, ConcurrencyLimit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub reason: Option<String>,
    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// `Started`, `Completed` and `Mirrored` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Workflow revision the run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_revision: Option<i64>,
    /// SHA-256 of the frozen workflow spec the run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub workflow_hash: Option<String>,
    /// When the run started executing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// Wall time of the run so far, e.g. `1m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub duration: Option<String>,
    /// Finished over total nodes, e.g. `3/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub progress: Option<String>,
    /// Node counts per phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_counts: Option<NodeCounts>,
    /// One line per node: phase, attempts, times, error. No payloads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub nodes: Vec<NodeSummary>,
    /// Name of the first node that failed the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub first_failed_node: Option<String>,
    /// Output of the run, capped (see `outputTruncated`); the full output is
    /// in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub output: Option<serde_json::Value>,
    /// True when `output` was cut to the cap; the full output is in PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_truncated: Option<bool>,
    /// Name of the Job executing the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub job_name: Option<String>,
    /// Position in the workflow's queue while Queued (1 = next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<i32>,
}

/// Node counts per phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes not started.
    #[serde(default)]
    pub pending: i32,
    /// Nodes executing.
    #[serde(default)]
    pub running: i32,
    /// Nodes that succeeded.
    #[serde(default)]
    pub succeeded: i32,
    /// Nodes that failed.
    #[serde(default)]
    pub failed: i32,
    /// Nodes skipped.
    #[serde(default)]
    pub skipped: i32,
    /// Nodes cancelled.
    #[serde(default)]
    pub cancelled: i32,
}

/// One-line summary of a node in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    /// Node name.
    #[schemars(length(max = 63))]
    pub name: String,
    /// Node phase.
    pub phase: NodePhase,
    /// Attempts made (1 without retries).
    #[serde(default)]
    pub attempts: i32,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the node finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// forEach items finished over total, e.g. `40/100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub items: Option<String>,
    /// First line of the error, capped at 512 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::cel::validate_cel_update;

    #[test]
    fn the_workflow_of_a_run_cannot_change() {
        let old = WorkflowRun::fixture("r", "a");
        let new = WorkflowRun::fixture("r", "b");
        let errors = validate_cel_update(&new, &old).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("workflowRef cannot change")),
            "{errors:?}"
        );
        assert!(validate_cel_update(&old.clone(), &old).is_ok());
    }

    #[test]
    fn a_cancelled_run_cannot_be_uncancelled() {
        let mut old = WorkflowRun::fixture("r", "a");
        old.spec.cancel = Some(true);
        let mut new = old.clone();
        new.spec.cancel = Some(false);
        let errors = validate_cel_update(&new, &old).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("cannot be un-cancelled")),
            "{errors:?}"
        );
        let mut cancelling = WorkflowRun::fixture("r", "a");
        let before = cancelling.clone();
        cancelling.spec.cancel = Some(true);
        assert!(validate_cel_update(&cancelling, &before).is_ok());
    }

    #[test]
    fn terminal_phases() {
        assert!(RunPhase::Cancelled.is_terminal());
        assert!(!RunPhase::Queued.is_terminal());
        assert!(NodePhase::Skipped.is_terminal());
        assert!(!NodePhase::Running.is_terminal());
    }
}

//! The `Plan` resource (cluster-scoped): the limits a namespace takes when
//! it names the plan in its `sluice.dev/plan` label (or gets it as the
//! operator's default plan).

use crate::common::Duration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The namespace label naming the Plan the namespace is subscribed to.
pub const PLAN_LABEL: &str = "sluice.dev/plan";

/// The reason of a run refused or held by a plan's limit.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";

/// Desired state of a Plan: its limits, each optional.
#[derive(CustomResource, JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Plan",
    doc = "A Plan holds limits for the WorkflowRuns of every namespace that takes it: a namespace takes a plan through its label sluice.dev/plan: <plan name>, or the operator's default plan when it has no label. A run over a limit fails with reason QuotaExceeded, or waits in Queued for the concurrent-runs limit.",
    shortname = "plan",
    category = "sluice",
    printcolumn = r#"{"name": "Concurrent", "type": "integer", "jsonPath": ".spec.limits.concurrentRuns"}"#,
    printcolumn = r#"{"name": "Per Day", "type": "integer", "jsonPath": ".spec.limits.runsPerDay"}"#,
    printcolumn = r#"{"name": "Per Month", "type": "integer", "jsonPath": ".spec.limits.runsPerMonth"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PlanSpec {
    /// What the plan is for, shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The limits of each namespace on this plan. A limit left out is no limit.
    #[serde(default)]
    pub limits: PlanLimits,
}

/// Limits per namespace. Days and months are UTC calendar days and months.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanLimits {
    /// Runs of the namespace running at once; further runs wait in Queued
    /// (reason QuotaExceeded) until one ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrent_runs: Option<u32>,
    /// Runs the namespace may start per UTC day; further runs fail with
    /// reason QuotaExceeded until the next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub runs_per_day: Option<u32>,
    /// Runs the namespace may start per UTC calendar month; further runs
    /// fail with reason QuotaExceeded until the next month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub runs_per_month: Option<u32>,
    /// Seconds of runner pods (from a run's start to its end) the namespace
    /// may use per UTC calendar month; once used up, further runs fail with
    /// reason QuotaExceeded until the next month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub node_seconds_per_month: Option<u64>,
    /// Longest a run may take, e.g. `30m`: a run's Job deadline is cut to
    /// it when the workflow allows longer (or sets no timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_duration: Option<Duration>,
    /// Largest run input, in bytes of its JSON; a larger run is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_input_bytes: Option<u64>,
}

impl PlanLimits {
    /// Whether any limit needs the namespace's runs counted.
    pub fn counts_runs(&self) -> bool {
        self.concurrent_runs.is_some()
            || self.runs_per_day.is_some()
            || self.runs_per_month.is_some()
            || self.node_seconds_per_month.is_some()
    }
}

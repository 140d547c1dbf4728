//! The `Schedule` resource: cron slots that each create one WorkflowRun.

use crate::common::{
    Condition, Duration, LocalObjectReference, any_json_schema, conditions_schema,
};
use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Desired state of a Schedule: which workflow, when, and the policies for overlaps, downtime and DST.
#[derive(CustomResource, JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Schedule",
    doc = "A Schedule starts a Workflow on a cron schedule in a time zone. Each slot creates exactly one WorkflowRun named after the schedule and the slot's time, so a slot never fires twice, even across operator restarts.",
    namespaced,
    status = "ScheduleStatus",
    shortname = "sched",
    category = "sluice",
    printcolumn = r#"{"name": "Workflow", "type": "string", "jsonPath": ".spec.workflowRef.name"}"#,
    printcolumn = r#"{"name": "Cron", "type": "string", "jsonPath": ".spec.cron"}"#,
    printcolumn = r#"{"name": "Time Zone", "type": "string", "jsonPath": ".spec.timeZone"}"#,
    printcolumn = r#"{"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend"}"#,
    printcolumn = r#"{"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTimes[0]"}"#,
    printcolumn = r#"{"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The Workflow to start, in the same namespace.
    pub workflow_ref: LocalObjectReference,
    /// When to fire: 5 fields (`min hour day-of-month month day-of-week`),
    /// 6 with a leading seconds field, or a macro (`@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`).
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^\s*(@[a-z]+|\S+(\s+\S+){4,5})\s*$")
    )]
    pub cron: String,
    /// IANA time zone the cron is read in, e.g. `Europe/Berlin`. Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// What to do with wall-clock times that daylight saving time skips or repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daylight_saving: Option<DaylightSaving>,
    /// Input of each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub input: Option<serde_json::Value>,
    /// What to do when a slot comes while runs of this schedule are still
    /// active. Defaults to Skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_policy: Option<OverlapPolicy>,
    /// A slot not started within this many seconds of its time is counted
    /// as missed instead of fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Slots missed while the operator was down to fire after it returns.
    /// Without it, missed slots are counted and skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Random delay added to each slot, the same for a given schedule and
    /// slot across restarts, to spread load. E.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// When true, a failed run suspends the schedule (condition
    /// `Paused=True`) until `suspend` is toggled or the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_on_failure: Option<bool>,
    /// When true, no new slots fire. Resuming does not fire the slots missed
    /// while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Daylight saving time rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaylightSaving {
    /// A wall-clock time that does not exist (spring forward). Defaults to Shift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_time: Option<SkippedTimePolicy>,
    /// A wall-clock time that happens twice (fall back). Defaults to Once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated_time: Option<RepeatedTimePolicy>,
}

/// What to do with a slot whose wall-clock time does not exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SkippedTimePolicy {
    /// Fire at the first instant after the gap (e.g. 02:30 → 03:00), as
    /// CronJob does (the default).
    #[default]
    Shift,
    /// Do not fire that day.
    Skip,
}

/// What to do with a slot whose wall-clock time happens twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RepeatedTimePolicy {
    /// Fire at the first occurrence only (the default).
    #[default]
    Once,
    /// Fire at both occurrences.
    Twice,
}

/// What happens when a slot fires while earlier runs are still active.
/// CronJob's `Forbid`, `Replace` and `Allow` are accepted as aliases of
/// `Skip`, `CancelOther` and `AllowAll`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverlapPolicy {
    /// Do not start the new run; the slot counts as skipped (the default).
    #[default]
    #[serde(alias = "Forbid")]
    Skip,
    /// Keep at most one slot waiting; it starts when the active run ends.
    BufferOne,
    /// Keep every slot waiting; they start one by one in order.
    BufferAll,
    /// Cancel the active runs and start the new one.
    #[serde(alias = "Replace")]
    CancelOther,
    /// Start the new run alongside the active ones.
    #[serde(alias = "Allow")]
    AllowAll,
}

impl JsonSchema for OverlapPolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OverlapPolicy".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": [
                "Skip", "BufferOne", "BufferAll", "CancelOther", "AllowAll",
                "Forbid", "Replace", "Allow"
            ],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Catch-up of slots missed while the operator was not running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchUp {
    /// How far back missed slots are fired, e.g. `6h`.
    pub window: Duration,
    /// Most missed slots fired, oldest first. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_runs: Option<u32>,
}

/// Observed state of a Schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid` (cron and time zone parse), `Ready` and `Paused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Nominal time of the last slot that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Slots up to this time have been decided on: fired, buffered, skipped
    /// by the overlap policy, counted as missed, or passed while suspended,
    /// paused or invalid. Later slots are still to be decided; this keeps a
    /// slot from being counted or fired twice across operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_considered_time: Option<DateTime<Utc>>,
    /// Nominal times of slots waiting for the active run to finish
    /// (`overlapPolicy` BufferOne or BufferAll), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub buffered_slots: Vec<DateTime<Utc>>,
    /// When the last run of this schedule succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// The next slots, soonest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub next_schedule_times: Vec<DateTime<Utc>>,
    /// Slots that did not fire (operator down beyond catch-up, deadline
    /// exceeded, or skipped by the overlap policy), counted since creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_slots: Option<i64>,
    /// Names of this schedule's runs that have not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 253)))]
    pub active: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cronjob_policy_names_are_accepted_as_aliases() {
        for (alias, policy) in [
            ("Forbid", OverlapPolicy::Skip),
            ("Replace", OverlapPolicy::CancelOther),
            ("Allow", OverlapPolicy::AllowAll),
            ("BufferAll", OverlapPolicy::BufferAll),
        ] {
            let parsed: OverlapPolicy = serde_json::from_value(serde_json::json!(alias)).unwrap();
            assert_eq!(parsed, policy, "{alias}");
        }
        let schema = serde_json::to_value(schemars::schema_for!(OverlapPolicy)).unwrap();
        for alias in ["Forbid", "Replace", "Allow"] {
            assert!(
                schema["enum"].as_array().unwrap().contains(&alias.into()),
                "schema must accept {alias}"
            );
        }
    }

    #[test]
    fn a_schedule_without_cron_names_the_field() {
        let yaml = "apiVersion: sluice.dev/v1alpha1\nkind: Schedule\nmetadata: {name: s}\nspec:\n  workflowRef: {name: w}\n";
        let error = serde_saphyr::from_str::<Schedule>(yaml)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing field `cron`"), "{error}");
    }
}

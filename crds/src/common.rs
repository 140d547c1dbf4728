//! Types shared by several Sluice resources: conditions, object references,
//! durations and the schema helpers that keep every CRD structural.
//!
//! Nothing here talks to a server; these are plain data types and the pure
//! functions that belong to them (`set_condition`, `Duration::parse`).

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Pattern of a DNS-1123 label: lowercase letters, digits and '-', starting and
/// ending with a letter or digit. Used for node, trigger and object names.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Pattern of a duration such as `500ms`, `10s`, `1m30s` or `2h`.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// Condition types used across Sluice resources.
pub mod condition_type {
    /// The object is usable: valid and with everything it references present.
    pub const READY: &str = "Ready";
    /// The spec passed validation.
    pub const VALID: &str = "Valid";
    /// A connection's probe succeeded.
    pub const VERIFIED: &str = "Verified";
    /// A run's Job exists and its pod was scheduled.
    pub const STARTED: &str = "Started";
    /// A run reached a terminal phase.
    pub const COMPLETED: &str = "Completed";
    /// The object's history is stored in PostgreSQL.
    pub const MIRRORED: &str = "Mirrored";
    /// kstatus: the controller is still working towards Ready and needs
    /// nothing from the user (present only while True).
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the controller cannot make progress until the spec changes
    /// (present only while True).
    pub const STALLED: &str = "Stalled";
}

/// One observation of an aspect of an object's state, in the shape of
/// Kubernetes' `metav1.Condition`, so `kubectl wait --for=condition=Ready`,
/// Argo CD and Flux read it as they read any built-in resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition in CamelCase, e.g. `Ready` or `Valid`.
    #[schemars(length(max = 316))]
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable reason for the last transition, in CamelCase.
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// Human-readable explanation of the last transition.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the condition last changed status.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known yet whether the condition holds.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// `True` for `true`, `False` for `false`.
    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

impl Condition {
    /// A condition observed now for the given generation.
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: now,
            observed_generation,
        }
    }
}

/// Inserts or updates `condition` in `conditions`, keyed by type.
///
/// `lastTransitionTime` only moves when the status flips; a condition whose
/// status is unchanged keeps its old transition time while reason, message
/// and observed generation are refreshed. Returns whether anything changed,
/// so callers can skip status writes that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time;
            }
            if *existing == condition {
                return false;
            }
            *existing = condition;
            true
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

/// Where an object stands in the kstatus sense (Flux, cli-utils,
/// `kubectl wait`): besides `Ready`, these read the abnormal-true
/// conditions `Reconciling` and `Stalled`, which are present only while
/// they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do for this generation: neither condition is present.
    Settled,
    /// Still working towards Ready with no change needed from the user (a
    /// probe under way, a retry, an object it waits for): `Reconciling=True`.
    Reconciling {
        /// CamelCase reason.
        reason: String,
        /// What it is waiting for.
        message: String,
    },
    /// Cannot make progress until the spec changes (it is invalid, or a
    /// failure stopped it): `Stalled=True`.
    Stalled {
        /// CamelCase reason.
        reason: String,
        /// What to change.
        message: String,
    },
}

impl Progress {
    /// `Reconciling=True` with this reason and message.
    pub fn reconciling(reason: &str, message: impl Into<String>) -> Self {
        Self::Reconciling {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// `Stalled=True` with this reason and message.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Writes `progress` into `conditions`: the one abnormal-true condition it
/// names is set (through [`set_condition`], so its transition time moves
/// only when it appears) and the other one is removed; both are removed
/// when settled. Returns whether anything changed.
pub fn set_progress(
    conditions: &mut Vec<Condition>,
    progress: &Progress,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let (present, absent): (_, &[&str]) = match progress {
        Progress::Settled => (
            None,
            &[condition_type::RECONCILING, condition_type::STALLED],
        ),
        Progress::Reconciling { reason, message } => (
            Some((condition_type::RECONCILING, reason, message)),
            &[condition_type::STALLED],
        ),
        Progress::Stalled { reason, message } => (
            Some((condition_type::STALLED, reason, message)),
            &[condition_type::RECONCILING],
        ),
    };
    let before = conditions.len();
    conditions.retain(|condition| !absent.contains(&condition.type_.as_str()));
    let mut changed = conditions.len() != before;
    if let Some((type_, reason, message)) = present {
        changed |= set_condition(
            conditions,
            Condition::new(
                type_,
                ConditionStatus::True,
                reason,
                message.clone(),
                observed_generation,
                now,
            ),
        );
    }
    changed
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A reference to another object in the same namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object, in the same namespace as the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the same namespace as the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A length of time written as a Go-style duration string: `500ms`, `10s`,
/// `1m30s`, `2h`. Units are `ms`, `s`, `m` and `h`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: use a number followed by ms, s, m or h, e.g. 500ms, 10s, 1m30s"
)]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
}

impl Duration {
    /// Parses `500ms`, `10s`, `1m30s`, `2h`.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let error = || DurationError {
            input: text.to_owned(),
        };
        if text.is_empty() {
            return Err(error());
        }
        let mut total = std::time::Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(error());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| error())?;
            rest = &rest[digits..];
            let (unit, millis_per_unit) = if rest.starts_with("ms") {
                ("ms", 1)
            } else if rest.starts_with('s') {
                ("s", 1_000)
            } else if rest.starts_with('m') {
                ("m", 60_000)
            } else if rest.starts_with('h') {
                ("h", 3_600_000)
            } else {
                return Err(error());
            };
            rest = &rest[unit.len()..];
            let millis = number.checked_mul(millis_per_unit).ok_or_else(error)?;
            total = total
                .checked_add(std::time::Duration::from_millis(millis))
                .ok_or_else(error)?;
        }
        Ok(Self {
            text: text.to_owned(),
            value: total,
        })
    }

    /// The duration as a `std::time::Duration`.
    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }

    /// The text the duration was written as.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Duration {
    type Error = DurationError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Duration> for String {
    fn from(duration: Duration) -> Self {
        duration.text
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Schema of a genuinely free-form JSON value (any type). The API server
/// stores it as given; Sluice validates it where it is used.
pub fn any_json_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema of a genuinely free-form JSON object.
pub fn free_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema of a list of free-form JSON values of at most 100 items.
pub fn any_json_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 100,
        "items": { "x-kubernetes-preserve-unknown-fields": true },
    })
}

/// Schema of `status.conditions`: a list-map keyed by `type`, so server-side
/// apply merges conditions one by one.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Schema of a string → string map with bounded keys, values and size.
pub fn string_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    #[test]
    fn durations_parse_compound_units() {
        assert_eq!(Duration::parse("500ms").unwrap().as_std().as_millis(), 500);
        assert_eq!(Duration::parse("1m30s").unwrap().as_std().as_secs(), 90);
        assert_eq!(Duration::parse("2h").unwrap().as_std().as_secs(), 7200);
        assert_eq!(
            Duration::parse("1h1m1s1ms").unwrap().as_std().as_millis(),
            3_661_001
        );
    }

    #[test]
    fn durations_reject_garbage_with_a_hint() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 s",
            "-1s",
            "1d",
            "99999999999999999999h",
        ] {
            let error = Duration::parse(bad).unwrap_err();
            assert!(error.to_string().contains("e.g. 500ms"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_round_trip_their_text() {
        let duration: Duration = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(serde_json::to_string(&duration).unwrap(), "\"1m30s\"");
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![];
        let first = Condition::new(
            "Ready",
            ConditionStatus::True,
            "Valid",
            "ok",
            Some(1),
            at(1),
        );
        assert!(set_condition(&mut conditions, first));
        let again = Condition::new(
            "Ready",
            ConditionStatus::True,
            "Valid",
            "ok",
            Some(1),
            at(2),
        );
        assert!(!set_condition(&mut conditions, again), "nothing changed");
        let new_generation = Condition::new(
            "Ready",
            ConditionStatus::True,
            "Valid",
            "ok",
            Some(2),
            at(3),
        );
        assert!(set_condition(&mut conditions, new_generation));
        assert_eq!(conditions[0].last_transition_time, at(1));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    fn types(conditions: &[Condition]) -> Vec<(&str, ConditionStatus, &str)> {
        conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status, c.reason.as_str()))
            .collect()
    }

    #[test]
    fn progress_sets_one_abnormal_true_condition_and_removes_the_other() {
        let ready = Condition::new(
            "Ready",
            ConditionStatus::False,
            "Waiting",
            "",
            Some(1),
            at(1),
        );
        let mut conditions = vec![ready];
        let probing = Progress::reconciling("Probing", "probing the endpoint");
        assert!(set_progress(&mut conditions, &probing, Some(1), at(2)));
        assert_eq!(
            types(&conditions),
            [
                ("Ready", ConditionStatus::False, "Waiting"),
                ("Reconciling", ConditionStatus::True, "Probing")
            ]
        );
        assert_eq!(conditions[1].observed_generation, Some(1));
        assert!(
            !set_progress(&mut conditions, &probing, Some(1), at(3)),
            "nothing changed"
        );

        let invalid = Progress::stalled("Invalid", "fix the spec");
        assert!(set_progress(&mut conditions, &invalid, Some(2), at(4)));
        assert_eq!(
            types(&conditions),
            [
                ("Ready", ConditionStatus::False, "Waiting"),
                ("Stalled", ConditionStatus::True, "Invalid")
            ]
        );
        assert_eq!(conditions[1].last_transition_time, at(4));
        let still_invalid = Progress::stalled("Invalid", "fix the spec again");
        assert!(set_progress(
            &mut conditions,
            &still_invalid,
            Some(3),
            at(5)
        ));
        assert_eq!(
            conditions[1].last_transition_time,
            at(4),
            "still stalled: the transition time stays"
        );

        assert!(set_progress(
            &mut conditions,
            &Progress::Settled,
            Some(3),
            at(6)
        ));
        assert_eq!(
            types(&conditions),
            [("Ready", ConditionStatus::False, "Waiting")]
        );
        assert!(!set_progress(
            &mut conditions,
            &Progress::Settled,
            Some(3),
            at(7)
        ));
    }

    #[test]
    fn set_condition_moves_transition_time_when_status_flips() {
        let mut conditions = vec![Condition::new(
            "Ready",
            ConditionStatus::True,
            "Valid",
            "ok",
            Some(1),
            at(1),
        )];
        let flipped = Condition::new(
            "Ready",
            ConditionStatus::False,
            "Invalid",
            "bad",
            Some(2),
            at(5),
        );
        assert!(set_condition(&mut conditions, flipped));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(5));
        assert_eq!(conditions[0].reason, "Invalid");
        let other = Condition::new("Valid", ConditionStatus::True, "Ok", "", None, at(6));
        assert!(set_condition(&mut conditions, other));
        assert_eq!(conditions.len(), 2);
    }
}

//! The Workflow controller's decisions: from a Workflow, the outcome of
//! validating it and which referenced Connections exist, compute the status
//! to write and the Events to emit. Pure: no client, the clock is a value.
//!
//! - `status.revision` moves by one each time a new spec generation is
//!   observed, and `status.specHash` fingerprints that spec; runs record both.
//! - `Valid` carries every validation error with its field path; `Ready` is
//!   true only when the spec is valid, the workflow is not suspended and
//!   every Connection it names exists.
//! - kstatus (Flux): `Stalled` while the spec is invalid (nothing changes
//!   until it does), `Reconciling` while a Connection it names is missing
//!   or not Ready (that Connection's change wakes it), neither otherwise.
//! - A Warning Event is planned only when the set of errors changes, and a
//!   Normal Event once per transition, never once per reconcile.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sluice_crds::common::{Progress, condition_type, find_condition, set_condition, set_progress};
use sluice_crds::workflow::ValidationIssue;
use sluice_crds::{Condition, ConditionStatus, Workflow, WorkflowStatus};

/// Most validation errors kept in status (the rest are counted in the message).
pub const MAX_STATUS_ERRORS: usize = 50;

/// Reasons used in conditions and Events, searchable by users.
pub mod reason {
    /// The spec passed validation.
    pub const VALID: &str = "Valid";
    /// The spec has validation errors.
    pub const INVALID: &str = "Invalid";
    /// Valid, not suspended, connections present.
    pub const READY: &str = "Ready";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// A Connection named by a node does not exist.
    pub const CONNECTION_MISSING: &str = "ConnectionMissing";
    /// A Connection named by a node exists but is not Ready.
    pub const CONNECTION_NOT_READY: &str = "ConnectionNotReady";
    /// A new revision of the spec was recorded.
    pub const REVISION_CREATED: &str = "RevisionCreated";
}

/// What the controller observed besides the Workflow itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Errors from the runner's validator, in spec order.
    pub errors: Vec<ValidationIssue>,
    /// Connections the nodes name that do not exist in the namespace.
    pub missing_connections: Vec<String>,
    /// Connections the nodes name that exist but are not Ready.
    pub unready_connections: Vec<String>,
}

/// An Event to emit about the Workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Message for people.
    pub message: String,
}

/// The controller's plan for one Workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowPlan {
    /// The status to write.
    pub status: WorkflowStatus,
    /// Whether it differs from the current status (skip the write if not).
    pub status_changed: bool,
    /// A new revision to record (mirror `workflow_versions`), if any.
    pub new_revision: Option<i64>,
    /// Events to emit.
    pub events: Vec<PlannedEvent>,
}

/// SHA-256 of the spec's canonical JSON (every object's keys sorted, so
/// reordering keys is not a change; serde_json keeps insertion order).
pub fn spec_hash(workflow: &Workflow) -> String {
    let mut value = serde_json::to_value(&workflow.spec).unwrap_or_default();
    value.sort_all_objects();
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// Plans the status and Events of `workflow`.
pub fn plan_workflow(workflow: &Workflow, observed: &Observed, now: DateTime<Utc>) -> WorkflowPlan {
    let current = workflow.status.clone().unwrap_or_default();
    let generation = workflow.metadata.generation;
    let mut status = current.clone();
    let mut events = vec![];

    let hash = spec_hash(workflow);
    let new_generation = current.observed_generation != generation || current.revision.is_none();
    let spec_changed = current.spec_hash.as_deref() != Some(hash.as_str());
    let new_revision = (new_generation && spec_changed).then(|| current.revision.unwrap_or(0) + 1);
    if let Some(revision) = new_revision {
        status.revision = Some(revision);
        status.spec_hash = Some(hash);
        events.push(PlannedEvent {
            warning: false,
            reason: reason::REVISION_CREATED,
            message: format!("recorded revision {revision} of the spec"),
        });
    }
    status.observed_generation = generation;
    status.node_count = Some(i32::try_from(workflow.spec.nodes.len()).unwrap_or(i32::MAX));
    status.validation_errors = observed
        .errors
        .iter()
        .take(MAX_STATUS_ERRORS)
        .cloned()
        .collect();

    let valid = observed.errors.is_empty();
    let valid_condition = if valid {
        condition(
            condition_type::VALID,
            true,
            reason::VALID,
            "the spec passed validation".to_owned(),
            generation,
            now,
        )
    } else {
        condition(
            condition_type::VALID,
            false,
            reason::INVALID,
            errors_message(&observed.errors),
            generation,
            now,
        )
    };
    let errors_changed = current.validation_errors != status.validation_errors;
    let was_valid = find_condition(&current.conditions, condition_type::VALID).map(|c| c.status);
    if !valid && (errors_changed || was_valid != Some(ConditionStatus::False)) {
        events.push(PlannedEvent {
            warning: true,
            reason: reason::INVALID,
            message: valid_condition.message.clone(),
        });
    } else if valid && was_valid == Some(ConditionStatus::False) {
        events.push(PlannedEvent {
            warning: false,
            reason: reason::VALID,
            message: "the spec is valid again".to_owned(),
        });
    }
    set_condition(&mut status.conditions, valid_condition);

    let ready_condition = if !valid {
        condition(
            condition_type::READY,
            false,
            reason::INVALID,
            "the spec is invalid: see the Valid condition".to_owned(),
            generation,
            now,
        )
    } else if workflow.spec.suspend.unwrap_or(false) {
        condition(
            condition_type::READY,
            false,
            reason::SUSPENDED,
            "spec.suspend is true: new runs are refused until it is false".to_owned(),
            generation,
            now,
        )
    } else if !observed.missing_connections.is_empty() {
        condition(
            condition_type::READY,
            false,
            reason::CONNECTION_MISSING,
            format!(
                "connection(s) {} not found in this namespace: create them or fix the connection names",
                observed.missing_connections.join(", ")
            ),
            generation,
            now,
        )
    } else if !observed.unready_connections.is_empty() {
        condition(
            condition_type::READY,
            false,
            reason::CONNECTION_NOT_READY,
            format!(
                "connection(s) {} not Ready: fix their Secrets (kubectl describe connection {})",
                observed.unready_connections.join(", "),
                observed.unready_connections.join(" ")
            ),
            generation,
            now,
        )
    } else {
        condition(
            condition_type::READY,
            true,
            reason::READY,
            "the workflow accepts runs".to_owned(),
            generation,
            now,
        )
    };
    let was_ready = find_condition(&current.conditions, condition_type::READY).cloned();
    let ready_transition = was_ready.as_ref().map(|c| (c.status, c.reason.as_str()))
        != Some((ready_condition.status, ready_condition.reason.as_str()));
    let connection_reason = [reason::CONNECTION_MISSING, reason::CONNECTION_NOT_READY]
        .into_iter()
        .find(|known| *known == ready_condition.reason);
    if ready_transition && let Some(connection_reason) = connection_reason {
        events.push(PlannedEvent {
            warning: true,
            reason: connection_reason,
            message: ready_condition.message.clone(),
        });
    }
    let progress = progress(&ready_condition);
    set_condition(&mut status.conditions, ready_condition);
    set_progress(&mut status.conditions, &progress, generation, now);

    WorkflowPlan {
        status_changed: status != current,
        status,
        new_revision,
        events,
    }
}

/// kstatus: an invalid spec stalls the workflow until it changes; a
/// Connection that is missing or not Ready is waited for (the Connection's
/// change wakes the workflow); ready or suspended, it is settled.
fn progress(ready: &Condition) -> Progress {
    match ready.reason.as_str() {
        reason::INVALID => Progress::stalled(
            reason::INVALID,
            "the spec is invalid: fix the errors in the Valid condition",
        ),
        reason::CONNECTION_MISSING | reason::CONNECTION_NOT_READY => {
            Progress::reconciling(&ready.reason, format!("waiting: {}", ready.message))
        }
        _ => Progress::Settled,
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition::new(
        type_,
        ConditionStatus::from_bool(ok),
        reason,
        message,
        generation,
        now,
    )
}

/// All errors on one line each, capped, for the condition message.
fn errors_message(errors: &[ValidationIssue]) -> String {
    let mut lines: Vec<String> = errors
        .iter()
        .take(MAX_STATUS_ERRORS)
        .map(|error| format!("{}: {}", error.path, error.message))
        .collect();
    if errors.len() > MAX_STATUS_ERRORS {
        lines.push(format!("… and {} more", errors.len() - MAX_STATUS_ERRORS));
    }
    format!("{} validation error(s): {}", errors.len(), lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sluice_crds::NodeSpec;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    fn workflow() -> Workflow {
        Workflow::fixture("w").with_node(NodeSpec::transform("a", ".input"))
    }

    fn issue(path: &str, message: &str) -> ValidationIssue {
        ValidationIssue {
            path: path.to_owned(),
            message: message.to_owned(),
        }
    }

    /// Applies a plan's status to the workflow, as the shell would.
    fn applied(mut workflow: Workflow, plan: &WorkflowPlan) -> Workflow {
        workflow.status = Some(plan.status.clone());
        workflow
    }

    fn condition_of<'a>(plan: &'a WorkflowPlan, type_: &str) -> &'a Condition {
        find_condition(&plan.status.conditions, type_).unwrap()
    }

    #[test]
    fn a_valid_workflow_becomes_ready_at_revision_one() {
        let plan = plan_workflow(&workflow(), &Observed::default(), at(1));
        assert_eq!(plan.new_revision, Some(1));
        assert_eq!(plan.status.revision, Some(1));
        assert_eq!(plan.status.observed_generation, Some(1));
        assert_eq!(plan.status.node_count, Some(1));
        assert_eq!(condition_of(&plan, "Ready").status, ConditionStatus::True);
        assert_eq!(condition_of(&plan, "Valid").status, ConditionStatus::True);
        assert_eq!(
            plan.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
            [reason::REVISION_CREATED]
        );
    }

    #[test]
    fn reconciling_again_changes_nothing_and_emits_nothing() {
        let first = plan_workflow(&workflow(), &Observed::default(), at(1));
        let second = plan_workflow(&applied(workflow(), &first), &Observed::default(), at(9));
        assert!(!second.status_changed);
        assert!(second.events.is_empty());
        assert_eq!(second.new_revision, None);
    }

    #[test]
    fn a_spec_change_bumps_the_revision() {
        let first = plan_workflow(&workflow(), &Observed::default(), at(1));
        let mut changed = applied(workflow(), &first).with_node(NodeSpec::transform("b", "."));
        changed.metadata.generation = Some(2);
        let second = plan_workflow(&changed, &Observed::default(), at(2));
        assert_eq!(second.new_revision, Some(2));
        assert_ne!(second.status.spec_hash, first.status.spec_hash);
        assert_eq!(
            condition_of(&second, "Ready").last_transition_time,
            at(1),
            "Ready did not flip"
        );
    }

    #[test]
    fn errors_land_in_conditions_and_one_warning_per_new_error_set() {
        let observed = Observed {
            errors: vec![issue(
                "spec.nodes[0].transform.jq",
                "bad jq at 3: add a closing bracket",
            )],
            missing_connections: vec![],
            ..Observed::default()
        };
        let plan = plan_workflow(&workflow(), &observed, at(1));
        let valid = condition_of(&plan, "Valid");
        assert_eq!(
            (valid.status, valid.reason.as_str()),
            (ConditionStatus::False, reason::INVALID)
        );
        assert!(
            valid
                .message
                .contains("spec.nodes[0].transform.jq: bad jq at 3"),
            "{}",
            valid.message
        );
        assert_eq!(condition_of(&plan, "Ready").status, ConditionStatus::False);
        assert_eq!(plan.status.validation_errors, observed.errors);
        assert!(
            plan.events
                .iter()
                .any(|e| e.warning && e.reason == reason::INVALID)
        );

        let again = plan_workflow(&applied(workflow(), &plan), &observed, at(2));
        assert!(
            again.events.iter().all(|e| e.reason != reason::INVALID),
            "same errors: no new warning"
        );

        let more = Observed {
            errors: vec![
                observed.errors[0].clone(),
                issue("spec.nodes[0].if", "unknown function"),
            ],
            missing_connections: vec![],
            ..Observed::default()
        };
        let changed = plan_workflow(&applied(workflow(), &plan), &more, at(3));
        assert_eq!(
            changed
                .events
                .iter()
                .filter(|e| e.reason == reason::INVALID)
                .count(),
            1
        );
    }

    #[test]
    fn fixing_the_errors_emits_one_normal_event() {
        let observed = Observed {
            errors: vec![issue("spec.nodes[0].if", "bad")],
            missing_connections: vec![],
            ..Observed::default()
        };
        let broken = plan_workflow(&workflow(), &observed, at(1));
        let fixed = plan_workflow(&applied(workflow(), &broken), &Observed::default(), at(2));
        assert!(
            fixed
                .events
                .iter()
                .any(|e| !e.warning && e.reason == reason::VALID)
        );
        assert_eq!(condition_of(&fixed, "Ready").status, ConditionStatus::True);
        assert!(fixed.status.validation_errors.is_empty());
    }

    #[test]
    fn suspension_and_missing_connections_make_it_unready_with_a_reason() {
        let suspended = workflow().with_spec(|s| s.suspend = Some(true));
        let plan = plan_workflow(&suspended, &Observed::default(), at(1));
        assert_eq!(condition_of(&plan, "Ready").reason, reason::SUSPENDED);

        let observed = Observed {
            errors: vec![],
            missing_connections: vec!["crm-api".to_owned()],
            ..Observed::default()
        };
        let plan = plan_workflow(&workflow(), &observed, at(1));
        let ready = condition_of(&plan, "Ready");
        assert_eq!(ready.reason, reason::CONNECTION_MISSING);
        assert!(ready.message.contains("crm-api"));
        assert!(
            plan.events
                .iter()
                .any(|e| e.warning && e.reason == reason::CONNECTION_MISSING)
        );
        let again = plan_workflow(&applied(workflow(), &plan), &observed, at(2));
        assert!(again.events.is_empty());
    }

    #[test]
    fn a_connection_that_is_not_ready_makes_it_unready() {
        let observed = Observed {
            unready_connections: vec!["crm-api".to_owned()],
            ..Observed::default()
        };
        let plan = plan_workflow(&workflow(), &observed, at(1));
        let ready = condition_of(&plan, "Ready");
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, reason::CONNECTION_NOT_READY);
        assert!(
            ready.message.contains("crm-api not Ready"),
            "{}",
            ready.message
        );
        assert!(
            plan.events
                .iter()
                .any(|e| e.warning && e.reason == reason::CONNECTION_NOT_READY)
        );
        let fixed = plan_workflow(&applied(workflow(), &plan), &Observed::default(), at(2));
        assert_eq!(condition_of(&fixed, "Ready").status, ConditionStatus::True);
    }

    fn progress_of(plan: &WorkflowPlan) -> Vec<(&str, &str)> {
        plan.status
            .conditions
            .iter()
            .filter(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
            .inspect(|c| assert_eq!(c.status, ConditionStatus::True, "abnormal-true: {c:?}"))
            .map(|c| (c.type_.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn kstatus_an_invalid_spec_stalls_until_fixed_and_a_missing_connection_is_waited_for() {
        let ready = plan_workflow(&workflow(), &Observed::default(), at(1));
        assert_eq!(progress_of(&ready), []);
        assert_eq!(ready.status.observed_generation, Some(1));

        let invalid = Observed {
            errors: vec![issue("spec.nodes[0].transform.jq", "bad")],
            ..Observed::default()
        };
        let mut changed = applied(workflow(), &ready);
        changed.metadata.generation = Some(2);
        let stalled = plan_workflow(&changed, &invalid, at(2));
        assert_eq!(progress_of(&stalled), [("Stalled", reason::INVALID)]);
        let stalled_condition = condition_of(&stalled, "Stalled");
        assert_eq!(stalled_condition.observed_generation, Some(2));
        assert!(stalled_condition.message.contains("Valid condition"));
        assert_eq!(stalled.status.observed_generation, Some(2));

        let waiting = Observed {
            missing_connections: vec!["crm-api".to_owned()],
            ..Observed::default()
        };
        let mut fixed = applied(workflow(), &stalled);
        fixed.metadata.generation = Some(3);
        let reconciling = plan_workflow(&fixed, &waiting, at(3));
        assert_eq!(
            progress_of(&reconciling),
            [("Reconciling", reason::CONNECTION_MISSING)]
        );
        assert!(
            condition_of(&reconciling, "Reconciling")
                .message
                .contains("crm-api")
        );
        let unready = Observed {
            unready_connections: vec!["crm-api".to_owned()],
            ..Observed::default()
        };
        let still = plan_workflow(&applied(fixed.clone(), &reconciling), &unready, at(4));
        assert_eq!(
            progress_of(&still),
            [("Reconciling", reason::CONNECTION_NOT_READY)]
        );
        assert_eq!(
            condition_of(&still, "Reconciling").last_transition_time,
            at(3),
            "still reconciling"
        );

        let settled = plan_workflow(&applied(fixed, &still), &Observed::default(), at(5));
        assert_eq!(progress_of(&settled), []);
        assert_eq!(
            condition_of(&settled, "Ready").status,
            ConditionStatus::True
        );

        let suspended = workflow().with_spec(|s| s.suspend = Some(true));
        let plan = plan_workflow(&suspended, &Observed::default(), at(6));
        assert_eq!(progress_of(&plan), [], "suspended is a settled state");
    }

    #[test]
    fn status_keeps_at_most_fifty_errors_and_counts_the_rest() {
        let observed = Observed {
            errors: (0..60)
                .map(|i| issue(&format!("spec.nodes[{i}].name"), "bad"))
                .collect(),
            missing_connections: vec![],
            ..Observed::default()
        };
        let plan = plan_workflow(&workflow(), &observed, at(1));
        assert_eq!(plan.status.validation_errors.len(), MAX_STATUS_ERRORS);
        assert!(condition_of(&plan, "Valid").message.contains("and 10 more"));
    }
}

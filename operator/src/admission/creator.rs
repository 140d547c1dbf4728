//! The creator annotations the mutating webhook stamps on Workflows and
//! WorkflowRuns: who created the object, as the API server authenticated
//! them. Pure: request fields in, JSON patch operations out.
//!
//! A user cannot forge them: on create the webhook overwrites whatever the
//! object carries with the requester's identity; on update it puts back the
//! values the stored object had (or removes values the stored object never
//! had). The mirror reads them into `users` and `created_by`.
//!
//! A run the operator itself creates for a trigger names that trigger
//! instead of the operator's service account ([`trigger_identity`]):
//! `system:sluice:schedule:<schedule>`, `system:sluice:webhook:<workflow>/<trigger>`
//! or `system:sluice:run:<parent run>` for a `workflow` node's child run.
//! Only the operator's own requests are read that way, so a user who writes
//! a `spec.trigger` into a run is still recorded as themselves.

use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::{Map, Value};

/// Kubernetes username of the creator.
pub const CREATED_BY: &str = "sluice.dev/created-by";
/// The creator's groups, comma separated.
pub const CREATED_BY_GROUPS: &str = "sluice.dev/created-by-groups";

/// Who sent the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requester {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// Prefix of the creator of runs Sluice starts for a trigger.
pub const TRIGGER_IDENTITY_PREFIX: &str = "system:sluice:";

/// The identity that starts the run `object`, from its `spec.trigger`: a
/// Schedule's slot, a webhook request or a parent run's `workflow` node.
/// None for a manual run or one without a named source.
pub fn trigger_identity(object: &Value) -> Option<String> {
    let trigger = object.pointer("/spec/trigger")?;
    let source = trigger
        .get("source")
        .and_then(Value::as_str)
        .filter(|source| !source.is_empty())?;
    match trigger.get("type").and_then(Value::as_str)? {
        "Schedule" => Some(format!("{TRIGGER_IDENTITY_PREFIX}schedule:{source}")),
        "Webhook" => {
            let workflow = object
                .pointer("/spec/workflowRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(format!(
                "{TRIGGER_IDENTITY_PREFIX}webhook:{workflow}/{source}"
            ))
        }
        "Workflow" => Some(format!("{TRIGGER_IDENTITY_PREFIX}run:{source}")),
        _ => None,
    }
}

/// Who the creator annotations name for a new `object`: the requester,
/// except for a run the operator (`operator`, its Kubernetes username)
/// creates for a trigger, which names the trigger and keeps the operator's
/// groups, so it still reads as a service account's doing.
pub fn creator_of(requester: &Requester, operator: Option<&str>, object: &Value) -> Requester {
    let from_operator = operator.is_some_and(|operator| operator == requester.username);
    match trigger_identity(object).filter(|_| from_operator) {
        Some(username) => Requester {
            username,
            groups: requester.groups.clone(),
        },
        None => requester.clone(),
    }
}

/// The annotation values an object must carry after admission.
fn wanted(requester: &Requester, old: Option<&Value>) -> [(&'static str, Option<String>); 2] {
    match old {
        None => [
            (CREATED_BY, Some(requester.username.clone())),
            (CREATED_BY_GROUPS, Some(requester.groups.join(","))),
        ],
        Some(old) => [
            (CREATED_BY, annotation(old, CREATED_BY)),
            (CREATED_BY_GROUPS, annotation(old, CREATED_BY_GROUPS)),
        ],
    }
}

/// The value of annotation `key` of `object`.
pub fn annotation(object: &Value, key: &str) -> Option<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .and_then(|annotations| annotations.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn pointer(key: &str) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(["metadata", "annotations", key])
}

/// The patch that makes `object`'s creator annotations right: empty when
/// they already are.
pub fn plan_creator_patch(
    requester: &Requester,
    object: &Value,
    old: Option<&Value>,
) -> Vec<PatchOperation> {
    let mut operations = Vec::new();
    let has_annotations = object
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object);
    let mut created_map = false;
    for (key, value) in wanted(requester, old) {
        let current = annotation(object, key);
        if current == value {
            continue;
        }
        match (current, value) {
            (None, Some(value)) => {
                if !has_annotations && !created_map {
                    operations.push(PatchOperation::Add(AddOperation {
                        path: json_patch::jsonptr::PointerBuf::from_tokens([
                            "metadata",
                            "annotations",
                        ]),
                        value: Value::Object(Map::new()),
                    }));
                    created_map = true;
                }
                operations.push(PatchOperation::Add(AddOperation {
                    path: pointer(key),
                    value: Value::String(value),
                }));
            }
            (Some(_), Some(value)) => operations.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(key),
                value: Value::String(value),
            })),
            (Some(_), None) => operations.push(PatchOperation::Remove(RemoveOperation {
                path: pointer(key),
            })),
            (None, None) => {}
        }
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> Requester {
        Requester {
            username: "alice@example.com".into(),
            groups: vec!["platform".into(), "system:authenticated".into()],
        }
    }

    fn patched(object: &Value, operations: Vec<PatchOperation>) -> Value {
        let mut object = object.clone();
        json_patch::patch(&mut object, &json_patch::Patch(operations)).unwrap();
        object
    }

    #[test]
    fn a_create_gets_the_requester_even_over_a_forged_value() {
        let bare = json!({"metadata": {"name": "w"}});
        let stamped = patched(&bare, plan_creator_patch(&alice(), &bare, None));
        assert_eq!(
            annotation(&stamped, CREATED_BY).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            annotation(&stamped, CREATED_BY_GROUPS).as_deref(),
            Some("platform,system:authenticated")
        );
        let forged =
            json!({"metadata": {"name": "w", "annotations": {CREATED_BY: "root", "keep": "me"}}});
        let stamped = patched(&forged, plan_creator_patch(&alice(), &forged, None));
        assert_eq!(
            annotation(&stamped, CREATED_BY).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(annotation(&stamped, "keep").as_deref(), Some("me"));
    }

    #[test]
    fn an_update_keeps_the_stored_creator() {
        let stored = json!({"metadata": {"annotations": {CREATED_BY: "alice@example.com", CREATED_BY_GROUPS: "platform"}}});
        let bob = Requester {
            username: "bob".into(),
            groups: vec![],
        };
        let changed = json!({"metadata": {"annotations": {CREATED_BY: "bob", CREATED_BY_GROUPS: "platform"}}});
        let result = patched(&changed, plan_creator_patch(&bob, &changed, Some(&stored)));
        assert_eq!(
            annotation(&result, CREATED_BY).as_deref(),
            Some("alice@example.com")
        );
        let dropped = json!({"metadata": {}});
        let result = patched(&dropped, plan_creator_patch(&bob, &dropped, Some(&stored)));
        assert_eq!(
            annotation(&result, CREATED_BY_GROUPS).as_deref(),
            Some("platform")
        );
        assert!(plan_creator_patch(&bob, &stored, Some(&stored)).is_empty());
    }

    fn run_with_trigger(kind: &str, source: &str) -> Value {
        json!({
            "metadata": {"name": "r"},
            "spec": {"workflowRef": {"name": "triage"}, "trigger": {"type": kind, "source": source}},
        })
    }

    fn operator() -> Requester {
        Requester {
            username: "system:serviceaccount:sluice-system:sluice".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:sluice-system".into(),
            ],
        }
    }

    #[test]
    fn runs_the_operator_starts_name_their_trigger() {
        let operator_name = Some("system:serviceaccount:sluice-system:sluice");
        for (kind, source, expected) in [
            ("Schedule", "nightly", "system:sluice:schedule:nightly"),
            ("Webhook", "signup", "system:sluice:webhook:triage/signup"),
            ("Workflow", "parent-x7k2p", "system:sluice:run:parent-x7k2p"),
        ] {
            let run = run_with_trigger(kind, source);
            let creator = creator_of(&operator(), operator_name, &run);
            assert_eq!(creator.username, expected);
            assert_eq!(creator.groups, operator().groups, "still a service account");
            let stamped = patched(&run, plan_creator_patch(&creator, &run, None));
            assert_eq!(annotation(&stamped, CREATED_BY).as_deref(), Some(expected));
        }
        let manual =
            json!({"spec": {"workflowRef": {"name": "triage"}, "trigger": {"type": "Manual"}}});
        assert_eq!(creator_of(&operator(), operator_name, &manual), operator());
        let unnamed = json!({"spec": {"trigger": {"type": "Schedule"}}});
        assert_eq!(creator_of(&operator(), operator_name, &unnamed), operator());
    }

    #[test]
    fn a_user_cannot_borrow_a_trigger_identity() {
        let forged = run_with_trigger("Schedule", "nightly");
        let operator_name = Some("system:serviceaccount:sluice-system:sluice");
        assert_eq!(creator_of(&alice(), operator_name, &forged), alice());
        assert_eq!(
            creator_of(&operator(), None, &forged),
            operator(),
            "without a known operator identity nobody is trusted"
        );
    }

    #[test]
    fn an_update_cannot_add_a_creator_the_stored_object_lacks() {
        let stored = json!({"metadata": {"name": "w"}});
        let forged = json!({"metadata": {"annotations": {CREATED_BY: "root"}}});
        let result = patched(
            &forged,
            plan_creator_patch(&alice(), &forged, Some(&stored)),
        );
        assert_eq!(annotation(&result, CREATED_BY), None);
    }
}

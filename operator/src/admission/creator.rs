//! The creator annotations the mutating webhook stamps on Workflows and
//! WorkflowRuns: who created the object, as the API server authenticated
//! them. Pure: request fields in, JSON patch operations out.
//!
//! A user cannot forge them: on create the webhook overwrites whatever the
//! object carries with the requester's identity; on update it puts back the
//! values the stored object had (or removes values the stored object never
//! had). The mirror reads them into `users` and `created_by`.

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

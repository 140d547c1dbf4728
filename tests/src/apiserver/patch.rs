//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), the
//! strategic merge patch kubectl sends for built-in types, and server-side
//! apply.
//!
//! Each function turns the current object and the request body into the
//! desired object; the store then applies its write rules (status split,
//! `resourceVersion` precondition, generation). Nothing here touches the
//! store.
//!
//! # Server-side apply, simplified
//!
//! Apply is a merge of the applied configuration into the live object:
//! maps merge recursively, lists are replaced as a whole except lists whose
//! items are all objects keyed by `name` (or, failing that, `type`), which
//! merge item by item on that key. Field ownership is recorded per manager
//! in `managedFields` (`fieldsV1`, computed from the applied configuration,
//! list-map items as `k:{"name":…}`). When a manager applies again, fields it
//! owned before and no longer applies (list-map items and their fields
//! included) are removed unless another *applying* manager owns them.
//! Not modelled: ownership taken over by `Update` operations (their entries
//! record no fields), conflict detection (an apply never answers 409 for a
//! field owned by someone else, so `force` has no effect), removal of
//! individual elements of atomic lists, and typed schemas (built-in types
//! use the same name/type rule).
//! Strategic merge patch is handled as a JSON merge patch (built-in types
//! only; custom resources answer 415 like the real server).

use serde_json::{Map, Value, json};

use super::status::{ApiError, ApiResult, Subject};
use super::store::{WriteContext, metadata_mut, now_timestamp};

/// The patch flavours, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

impl PatchKind {
    /// Reads the `Content-Type` header.
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Parses a body as JSON, falling back to YAML (apply bodies may be YAML).
pub fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    serde_saphyr::from_str(text)
        .map_err(|error| ApiError::bad_request(format!("invalid request body: {error}")))
}

/// Applies a JSON merge patch.
pub fn merge_patch(current: &Value, patch: &Value) -> Value {
    let mut result = current.clone();
    json_patch::merge(&mut result, patch);
    result
}

/// Applies a JSON patch; any failing operation (a failed `test` included)
/// is 422. Like the real server (evanphx/json-patch), a `test` for `null`
/// succeeds on a missing path — kube-runtime's finalizer helper relies on
/// it when it adds the first finalizer.
pub fn json_patch(current: &Value, body: &[u8], subject: Subject<'_>) -> ApiResult<Value> {
    let operations: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON patch: {error}")))?;
    let mut result = current.clone();
    for operation in &operations.0 {
        if let json_patch::PatchOperation::Test(test) = operation
            && test.value.is_null()
            && result.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut result, std::slice::from_ref(operation)).map_err(|error| {
            ApiError::invalid(subject, &error.path.to_string(), error.to_string())
        })?;
    }
    Ok(result)
}

const UNTRACKED_METADATA: [&str; 8] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
];

fn list_map_key(items: &[Value]) -> Option<&'static str> {
    ["name", "type"].into_iter().find(|key| {
        !items.is_empty()
            && items.iter().all(|item| {
                item.get(*key)
                    .is_some_and(|value| value.is_string() || value.is_number())
            })
    })
}

fn item_key(key: &str, item: &Value) -> String {
    format!(
        "k:{}",
        json!({key: item.get(key).cloned().unwrap_or(Value::Null)})
    )
}

/// The `fieldsV1` set an applied configuration claims.
pub fn field_set(applied: &Value) -> Value {
    fn walk(value: &Value, top: bool, in_metadata: bool) -> Value {
        let mut set = Map::new();
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if top && (key == "apiVersion" || key == "kind") {
                        continue;
                    }
                    if in_metadata && UNTRACKED_METADATA.contains(&key.as_str()) {
                        continue;
                    }
                    set.insert(
                        format!("f:{key}"),
                        walk(child, false, top && key == "metadata"),
                    );
                }
            }
            Value::Array(items) => {
                if let Some(key) = list_map_key(items) {
                    for item in items {
                        set.insert(item_key(key, item), walk(item, false, false));
                    }
                }
            }
            _ => {}
        }
        Value::Object(set)
    }
    walk(applied, true, false)
}

fn merge_sets(into: &mut Map<String, Value>, other: &Map<String, Value>) {
    for (key, value) in other {
        let entry = into.entry(key.clone()).or_insert_with(|| json!({}));
        if let (Some(entry), Some(value)) = (entry.as_object_mut(), value.as_object()) {
            merge_sets(entry, value);
        }
    }
}

/// Removes from `object` what `old` owned, `new` no longer claims and no
/// one in `others` owns: fields (`f:name`) of maps and items (`k:{…}`) of
/// list maps, at any depth.
fn remove_released(
    object: &mut Value,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    others: &Map<String, Value>,
) {
    let empty = Map::new();
    for (key, old_child) in old {
        let new_child = new.get(key).and_then(Value::as_object);
        let other_child = others.get(key).and_then(Value::as_object);
        let released = new_child.is_none() && other_child.is_none();
        let child = if let Some(field) = key.strip_prefix("f:") {
            if released {
                if let Some(map) = object.as_object_mut() {
                    map.remove(field);
                }
                continue;
            }
            object.get_mut(field)
        } else if let Some(selector) = key.strip_prefix("k:") {
            let Ok(Value::Object(selector)) = serde_json::from_str::<Value>(selector) else {
                continue;
            };
            let Some(items) = object.as_array_mut() else {
                continue;
            };
            let selected = |item: &Value| {
                selector
                    .iter()
                    .all(|(name, value)| item.get(name) == Some(value))
            };
            if released {
                items.retain(|item| !selected(item));
                continue;
            }
            items.iter_mut().find(|item| selected(item))
        } else {
            continue;
        };
        if let (Some(child), Some(old_child)) = (child, old_child.as_object())
            && (child.is_object() || child.is_array())
        {
            remove_released(
                child,
                old_child,
                new_child.unwrap_or(&empty),
                other_child.unwrap_or(&empty),
            );
        }
    }
}

/// Merges an applied configuration into the live object (see module docs).
fn merge_applied(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (key, value) in applied {
                match target.get_mut(key) {
                    Some(existing) => merge_applied(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(applied)) => match list_map_key(applied) {
            Some(key) if list_map_key(target).is_some() || target.is_empty() => {
                for item in applied {
                    match target
                        .iter_mut()
                        .find(|existing| existing.get(key) == item.get(key))
                    {
                        Some(existing) => merge_applied(existing, item),
                        None => target.push(item.clone()),
                    }
                }
            }
            _ => *target = applied.clone(),
        },
        (target, applied) => *target = applied.clone(),
    }
}

fn apply_entries<'a>(
    current: &'a Value,
    subresource: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    current
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |entry| {
            entry.get("operation").and_then(Value::as_str) == Some("Apply")
                && entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    == subresource
        })
}

/// Server-side apply of `applied` by `manager`; returns the desired object
/// and the field set to record for the manager.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    status_write: bool,
) -> (Value, Value) {
    let claimed = field_set(applied);
    let Some(current) = current else {
        return (applied.clone(), claimed);
    };
    let subresource = if status_write { "status" } else { "" };
    let mut previous = Map::new();
    let mut others = Map::new();
    for entry in apply_entries(current, subresource) {
        let fields = entry
            .get("fieldsV1")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if entry.get("manager").and_then(Value::as_str) == Some(manager) {
            merge_sets(&mut previous, &fields);
        } else {
            merge_sets(&mut others, &fields);
        }
    }
    let mut result = current.clone();
    let claimed_map = claimed.as_object().cloned().unwrap_or_default();
    remove_released(&mut result, &previous, &claimed_map, &others);
    merge_applied(&mut result, applied);
    (result, claimed)
}

/// Updates the `managedFields` entry of this manager, operation and
/// subresource (one entry per triple, like the real server).
pub(crate) fn record_managed_fields(
    object: &mut Value,
    context: &WriteContext,
    status_write: bool,
) {
    let api_version = object.get("apiVersion").cloned().unwrap_or(Value::Null);
    let subresource = if status_write { "status" } else { "" };
    let meta = metadata_mut(object);
    let mut entries: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|entry| {
        !(entry.get("manager").and_then(Value::as_str) == Some(context.manager.as_str())
            && entry.get("operation").and_then(Value::as_str) == Some(context.operation)
            && entry
                .get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                == subresource)
    });
    let mut entry = json!({
        "manager": context.manager,
        "operation": context.operation,
        "apiVersion": api_version,
        "time": now_timestamp(),
        "fieldsType": "FieldsV1",
        "fieldsV1": context.fields.clone().unwrap_or_else(|| json!({})),
    });
    if status_write {
        entry["subresource"] = json!("status");
    }
    entries.push(entry);
    meta.insert("managedFields".into(), Value::Array(entries));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_merges_list_maps_by_name_and_replaces_other_lists() {
        let current = json!({"spec": {"nodes": [{"name": "a", "x": 1}], "tags": ["p"]}});
        let applied =
            json!({"spec": {"nodes": [{"name": "a", "y": 2}, {"name": "b"}], "tags": ["q"]}});
        let (result, fields) = apply(Some(&current), &applied, "m", false);
        assert_eq!(
            result["spec"]["nodes"],
            json!([{"name": "a", "x": 1, "y": 2}, {"name": "b"}])
        );
        assert_eq!(result["spec"]["tags"], json!(["q"]));
        assert!(
            fields
                .pointer("/f:spec/f:nodes")
                .is_some_and(|nodes| nodes.get("k:{\"name\":\"b\"}").is_some())
        );
    }

    #[test]
    fn reapply_without_a_field_removes_it_unless_another_manager_owns_it() {
        let (first, first_fields) = apply(None, &json!({"spec": {"a": 1, "b": 2}}), "one", false);
        let mut live = first.clone();
        live["metadata"] = json!({"managedFields": [
            {"manager": "one", "operation": "Apply", "fieldsV1": first_fields},
            {"manager": "two", "operation": "Apply", "fieldsV1": {"f:spec": {"f:b": {}}}},
        ]});
        let (result, _) = apply(Some(&live), &json!({"spec": {}}), "one", false);
        assert_eq!(result["spec"], json!({"b": 2}));
    }

    #[test]
    fn reapply_removes_released_fields_and_items_of_list_maps() {
        let applied = json!({"spec": {"nodes": [
            {"name": "a", "fail": {"message": "no"}},
            {"name": "b", "wait": {}},
        ]}});
        let (first, first_fields) = apply(None, &applied, "one", false);
        let mut live = first.clone();
        live["metadata"] = json!({"managedFields": [
            {"manager": "one", "operation": "Apply", "fieldsV1": first_fields},
        ]});
        let changed = json!({"spec": {"nodes": [{"name": "a", "transform": {"jq": "."}}]}});
        let (result, _) = apply(Some(&live), &changed, "one", false);
        assert_eq!(
            result["spec"]["nodes"],
            json!([{"name": "a", "transform": {"jq": "."}}]),
            "a's fail block and node b are released"
        );
    }
}

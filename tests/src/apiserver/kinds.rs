//! Per-kind behaviour of built-in types that clients rely on: Secret
//! `stringData` folded into base64 `data`, Namespace `status.phase`, Pod
//! `status.phase: Pending` on create, Job defaults (`backoffLimit`,
//! `completions`, `parallelism`). Custom resources get no per-kind
//! behaviour. Defaulting of other built-in fields is not done.

use serde_json::{Value, json};

use super::registry::ResourceType;
use super::status::ApiResult;

fn is(resource: &ResourceType, group: &str, plural: &str) -> bool {
    resource.group == group && resource.plural == plural
}

fn fold_string_data(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default().as_bytes().to_vec();
            data[key] = serde_json::to_value(k8s_openapi::ByteString(text)).unwrap_or(Value::Null);
        }
    }
    map.entry("type").or_insert_with(|| json!("Opaque"));
}

/// Defaults and normalisation before a create is stored.
pub(crate) fn prepare_create(resource: &ResourceType, object: &mut Value) -> ApiResult<()> {
    if is(resource, "", "secrets") {
        fold_string_data(object);
    } else if is(resource, "", "namespaces") {
        object["status"] = json!({"phase": "Active"});
    } else if is(resource, "", "pods") {
        object["status"] = json!({"phase": "Pending"});
    } else if is(resource, "batch", "jobs") {
        if !object.get("spec").is_some_and(Value::is_object) {
            object["spec"] = json!({});
        }
        let spec = &mut object["spec"];
        for (field, default) in [("backoffLimit", 6), ("completions", 1), ("parallelism", 1)] {
            if spec.get(field).is_none_or(Value::is_null) {
                spec[field] = json!(default);
            }
        }
    }
    Ok(())
}

/// Normalisation before a main (non-status) update is stored.
pub(crate) fn prepare_update(resource: &ResourceType, object: &mut Value) -> ApiResult<()> {
    if is(resource, "", "secrets") {
        fold_string_data(object);
    }
    Ok(())
}

//! Deterministic row ids.
//!
//! A Kubernetes UID is the id of the row that mirrors the object. Rows
//! without an object of their own (a version, a tag, a node attempt, a log
//! line, an audit entry …) get a UUIDv5 derived from their natural key, so a
//! replayed event computes the same id and lands on the same row. This module
//! only computes ids; it never talks to the database.

use uuid::Uuid;

/// The `users` row of the operator itself (created by migration 0002).
/// It owns every workspace the mirror creates and is `created_by` of rows
/// the operator writes on behalf of Kubernetes.
pub const SYSTEM_USER_ID: Uuid = Uuid::from_u128(0x5111ce00_0000_4000_8000_000000000001);

/// UUIDv5 namespace of all derived ids (never change it: ids would move).
const NAMESPACE: Uuid = Uuid::from_u128(0x5111ce00_0000_4000_8000_00000000d1d5);

/// Joins the parts with a unit separator, which cannot occur in Kubernetes
/// names, so `("a", "bc")` and `("ab", "c")` never collide.
fn derive(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

pub fn workflow_version_id(workflow_uid: Uuid, revision: i32) -> Uuid {
    derive(&[
        "workflow_version",
        &workflow_uid.to_string(),
        &revision.to_string(),
    ])
}

pub fn tag_id(workspace_uid: Uuid, tag_name: &str) -> Uuid {
    derive(&["workflow_tag", &workspace_uid.to_string(), tag_name])
}

pub fn trigger_id(workflow_uid: Uuid, trigger_name: &str) -> Uuid {
    derive(&["workflow_trigger", &workflow_uid.to_string(), trigger_name])
}

pub fn webhook_endpoint_id(workflow_uid: Uuid, trigger_name: &str) -> Uuid {
    derive(&["webhook_endpoint", &workflow_uid.to_string(), trigger_name])
}

pub fn api_key_id(workflow_uid: Uuid, trigger_name: &str) -> Uuid {
    derive(&["api_key", &workflow_uid.to_string(), trigger_name])
}

pub fn user_role_id(role_name: &str) -> Uuid {
    derive(&["user_role", role_name])
}

pub fn environment_variable_id(
    workspace_uid: Uuid,
    workflow_uid: Option<Uuid>,
    name: &str,
) -> Uuid {
    let workflow = workflow_uid.map(|uid| uid.to_string()).unwrap_or_default();
    derive(&[
        "environment_variable",
        &workspace_uid.to_string(),
        &workflow,
        name,
    ])
}

pub fn queue_entry_id(execution_uid: Uuid) -> Uuid {
    derive(&["execution_queue", &execution_uid.to_string()])
}

pub fn node_execution_id(execution_uid: Uuid, node_id: &str, attempt: i32) -> Uuid {
    derive(&[
        "node_execution",
        &execution_uid.to_string(),
        node_id,
        &attempt.to_string(),
    ])
}

pub fn log_id(execution_uid: Uuid, seq: i64) -> Uuid {
    derive(&[
        "execution_log",
        &execution_uid.to_string(),
        &seq.to_string(),
    ])
}

pub fn node_definition_id(name: &str, version: &str) -> Uuid {
    derive(&["node_definition", name, version])
}

/// A preset of a custom node type, in `node_templates`.
pub fn node_template_id(node_type_uid: Uuid, preset: &str) -> Uuid {
    derive(&["node_template", &node_type_uid.to_string(), preset])
}

pub fn audit_id(resource_uid: Uuid, resource_version: &str, action: &str) -> Uuid {
    derive(&[
        "audit_log",
        &resource_uid.to_string(),
        resource_version,
        action,
    ])
}

pub fn system_metric_id(metric_type: &str, tags: &str, recorded_at_micros: i64) -> Uuid {
    derive(&[
        "system_metric",
        metric_type,
        tags,
        &recorded_at_micros.to_string(),
    ])
}

/// One subscription: a workspace on a plan from an instant.
pub fn subscription_id(workspace_uid: Uuid, plan: &str, started_at_micros: i64) -> Uuid {
    derive(&[
        "subscription",
        &workspace_uid.to_string(),
        plan,
        &started_at_micros.to_string(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let run = Uuid::from_u128(7);
        assert_eq!(
            node_execution_id(run, "a", 0),
            node_execution_id(run, "a", 0)
        );
        assert_ne!(
            node_execution_id(run, "a", 0),
            node_execution_id(run, "a", 1)
        );
        assert_ne!(
            node_execution_id(run, "a", 1),
            node_execution_id(run, "a1", 0)
        );
        assert_ne!(tag_id(run, "ab"), trigger_id(run, "ab"));
        assert_eq!(node_execution_id(run, "a", 0).get_version_num(), 5);
    }
}

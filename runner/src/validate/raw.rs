//! Reading a Workflow spec from untyped JSON (a YAML file), reporting every
//! field that does not fit the API types with its path — including node
//! blocks of unknown type, which typed deserialization would silently drop.

use super::ValidationError;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_crds::nodes as params;
use sluice_crds::workflow::{RetryPolicy, RunWhen};
use sluice_crds::{NodeType, WorkflowSpec};

const NODE_FIELDS: [&str; 10] = [
    "name",
    "description",
    "needs",
    "runWhen",
    "if",
    "forEach",
    "parallelism",
    "retry",
    "timeout",
    "continueOnError",
];

/// Reads `spec` (the value of a Workflow's `spec:`) into the typed spec, or
/// every problem found with its field path.
pub fn parse_spec(spec: &Value) -> Result<WorkflowSpec, Vec<ValidationError>> {
    let mut errors = Vec::new();
    if let Some(nodes) = spec.get("nodes").and_then(Value::as_array) {
        for (index, node) in nodes.iter().enumerate() {
            check_node(index, node, &mut errors);
        }
    }
    // From the borrowed tree: a 1,000-node spec is not copied to be read.
    match WorkflowSpec::deserialize(spec) {
        Ok(parsed) if errors.is_empty() => Ok(parsed),
        Ok(_) => Err(errors),
        Err(error) => {
            if errors.is_empty() {
                errors.push(ValidationError::new(
                    "spec",
                    format!(
                        "the spec does not fit the Workflow API: {error}: fix the field it names"
                    ),
                ));
            }
            Err(errors)
        }
    }
}

fn check_node(index: usize, node: &Value, errors: &mut Vec<ValidationError>) {
    let path = format!("spec.nodes[{index}]");
    let Some(fields) = node.as_object() else {
        errors.push(ValidationError::new(
            path,
            "a node must be an object with a name and one node-type block",
        ));
        return;
    };
    let name = fields.get("name").and_then(Value::as_str).unwrap_or("");
    for (key, value) in fields {
        let field_path = format!("{path}.{key}");
        let result = match key.as_str() {
            "name" | "description" | "if" | "forEach" => check::<String>(value),
            "needs" => check_names(value),
            "runWhen" => check::<RunWhen>(value),
            "parallelism" => check::<u32>(value),
            "retry" => check::<RetryPolicy>(value),
            "timeout" => check::<sluice_crds::Duration>(value),
            "continueOnError" => check::<bool>(value),
            "http" => check::<params::HttpNode>(value),
            "transform" => check::<params::TransformNode>(value),
            "wait" => check::<params::WaitNode>(value),
            "postgres" => check::<params::PostgresNode>(value),
            "shell" => check::<params::ShellNode>(value),
            "kubernetes" => check::<params::KubernetesNode>(value),
            "workflow" => check::<params::WorkflowNode>(value),
            "notify" => check::<params::NotifyNode>(value),
            "fail" => check::<params::FailNode>(value),
            "custom" => check::<params::CustomNode>(value),
            unknown => {
                let types: Vec<&str> = NodeType::ALL.iter().map(|t| t.as_str()).collect();
                errors.push(ValidationError::new(
                    field_path,
                    format!(
                        "node {name:?} has an unknown node type or field {unknown:?}: node types are {}; other fields are {}",
                        types.join(", "),
                        NODE_FIELDS.join(", ")
                    ),
                ));
                continue;
            }
        };
        if let Err(error) = result {
            let what = if NODE_FIELDS.contains(&key.as_str()) {
                key.clone()
            } else {
                format!("{key} parameters")
            };
            errors.push(ValidationError::new(
                field_path,
                format!("node {name:?}: invalid {what}: {error}: fix the value to match the node catalog (sluice-runner nodes)"),
            ));
        }
    }
}

fn check<T: DeserializeOwned>(value: &Value) -> Result<(), serde_json::Error> {
    T::deserialize(value).map(|_| ())
}

/// `needs`: a list of strings, seen without building one (up to 64 per
/// node, 1,000 nodes); anything else gets serde's own message.
fn check_names(value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
        _ => check::<Vec<String>>(value),
    }
}

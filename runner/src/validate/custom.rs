//! Checks of `custom` nodes against the custom types a namespace may use:
//! the type exists (a NodeType there or a ClusterNodeType), the preset
//! exists, the Connection is of an accepted type, and the params (preset
//! first) fit the type's params schema. Pure: the caller gathers the types.

use super::ValidationError;
use crate::nodes::custom::types::{ParamsError, check_params, merged_params};
use crate::nodes::custom::{CustomType, CustomTypes};
use sluice_crds::WorkflowSpec;

/// Every problem of `spec`'s custom nodes given the usable `types`.
pub fn check_custom_nodes(spec: &WorkflowSpec, types: &CustomTypes) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for (index, node) in spec.nodes.iter().enumerate() {
        let Some(custom) = &node.custom else {
            continue;
        };
        let path = format!("spec.nodes[{index}].custom");
        let name = &node.name;
        let Some(found) = types.get(&custom.type_) else {
            let known = types.names();
            errors.push(ValidationError::new(
                format!("{path}.type"),
                format!(
                    "node {name:?}: custom node type {:?} does not exist in this namespace or the cluster: create a NodeType (or ClusterNodeType) named {:?}, or use one of the existing types ({})",
                    custom.type_,
                    custom.type_,
                    if known.is_empty() {
                        "there are none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
            continue;
        };
        check_node(name, &path, custom, found, &mut errors);
    }
    errors
}

fn check_node(
    name: &str,
    path: &str,
    custom: &sluice_crds::nodes::CustomNode,
    found: &CustomType,
    errors: &mut Vec<ValidationError>,
) {
    let origin = format!("{} {:?}", found.scope.kind(), found.name);
    if custom.connection.is_some() && found.spec.connection_types.is_empty() {
        errors.push(ValidationError::new(
            format!("{path}.connection"),
            format!("node {name:?}: {origin} takes no Connection: remove connection"),
        ));
    }
    match merged_params(
        &custom.type_,
        &found.spec,
        custom.preset.as_deref(),
        custom.params.as_ref(),
    ) {
        Err(error @ ParamsError::UnknownPreset { .. }) => errors.push(ValidationError::new(
            format!("{path}.preset"),
            format!("node {name:?}: {error}"),
        )),
        Err(error) => errors.push(ValidationError::new(
            format!("{path}.params"),
            format!("node {name:?}: {error}"),
        )),
        Ok(params) => {
            if let Err(ParamsError::Schema(problems)) = check_params(&found.spec, &params) {
                for problem in problems {
                    errors.push(ValidationError::new(
                        format!("{path}.params{}", problem.path),
                        format!(
                            "node {name:?}: params{}: {}: fix it to match the paramsSchema of {origin} (kubectl get {} {} -o yaml)",
                            problem.path,
                            problem.message,
                            found.scope.kind().to_lowercase(),
                            found.name
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::custom::Scope;
    use serde_json::json;
    use sluice_crds::{NodePreset, NodeTypeSpec};

    fn types() -> CustomTypes {
        let mut types = CustomTypes::new();
        types.insert(
            "greeter",
            Scope::ClusterNodeType,
            NodeTypeSpec {
                version: "1.0.0".into(),
                image: "example/greeter:1".into(),
                params_schema: Some(json!({
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1}}
                })),
                presets: vec![NodePreset {
                    name: "ada".into(),
                    description: None,
                    params: json!({"name": "Ada"}),
                }],
                ..NodeTypeSpec::default()
            },
        );
        types
    }

    fn spec(nodes: serde_json::Value) -> WorkflowSpec {
        crate::validate::parse_spec(&json!({"nodes": nodes})).unwrap()
    }

    #[test]
    fn a_valid_custom_node_passes_and_presets_count_as_params() {
        let spec = spec(json!([
            {"name": "a", "custom": {"type": "greeter", "params": {"name": "${{ .input.name }}"}}},
            {"name": "b", "custom": {"type": "greeter", "preset": "ada"}}
        ]));
        assert_eq!(check_custom_nodes(&spec, &types()), []);
    }

    #[test]
    fn each_problem_names_its_field_and_the_fix() {
        let spec = spec(json!([
            {"name": "a", "custom": {"type": "stranger"}},
            {"name": "b", "custom": {"type": "greeter", "preset": "bob"}},
            {"name": "c", "custom": {"type": "greeter", "params": {"name": ""}}},
            {"name": "d", "custom": {"type": "greeter", "params": {"name": "x"}, "connection": "crm"}}
        ]));
        let errors = check_custom_nodes(&spec, &types());
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.nodes[0].custom.type",
                "spec.nodes[1].custom.preset",
                "spec.nodes[2].custom.params.name",
                "spec.nodes[3].custom.connection"
            ]
        );
        assert_eq!(
            errors[0].message,
            "node \"a\": custom node type \"stranger\" does not exist in this namespace or the cluster: create a NodeType (or ClusterNodeType) named \"stranger\", or use one of the existing types (greeter)"
        );
        assert_eq!(
            errors[1].message,
            "node \"b\": node type \"greeter\" has no preset \"bob\": use one of [ada], or remove preset"
        );
        assert_eq!(
            errors[2].message,
            "node \"c\": params.name: is 0 characters long, shorter than minLength 1: fix it to match the paramsSchema of ClusterNodeType \"greeter\" (kubectl get clusternodetype greeter -o yaml)"
        );
        assert_eq!(
            errors[3].message,
            "node \"d\": ClusterNodeType \"greeter\" takes no Connection: remove connection"
        );
    }
}

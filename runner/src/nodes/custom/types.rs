//! The custom node types a run may use ([`CustomTypes`]): NodeTypes of the
//! namespace shadowing ClusterNodeTypes of the same name, presets laid
//! under a node's params, and params checked against a type's schema.
//! Filled by the operator from its caches, by `exec` from the run's
//! snapshot, and locally from manifests. Pure: no I/O.

use crate::input::InputError;
use serde_json::Value;
use sluice_crds::NodeTypeSpec;
use std::collections::BTreeMap;

/// Where a custom type is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Scope {
    /// A NodeType in the workflow's namespace.
    NodeType,
    /// A ClusterNodeType.
    ClusterNodeType,
}

impl Scope {
    /// The kind that defines it.
    pub fn kind(self) -> &'static str {
        match self {
            Scope::NodeType => "NodeType",
            Scope::ClusterNodeType => "ClusterNodeType",
        }
    }
}

/// One custom type as a workflow sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomType {
    /// Its name (`custom.type`).
    pub name: String,
    /// Which kind defines it.
    pub scope: Scope,
    /// Its definition.
    pub spec: NodeTypeSpec,
}

/// The custom types usable by one namespace's workflows, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomTypes {
    types: BTreeMap<String, CustomType>,
}

impl CustomTypes {
    /// No custom types.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a type. A NodeType shadows a ClusterNodeType of the same name,
    /// whatever the order they are added in.
    pub fn insert(&mut self, name: impl Into<String>, scope: Scope, spec: NodeTypeSpec) {
        let name = name.into();
        if scope == Scope::ClusterNodeType
            && self
                .types
                .get(&name)
                .is_some_and(|known| known.scope == Scope::NodeType)
        {
            return;
        }
        self.types
            .insert(name.clone(), CustomType { name, scope, spec });
    }

    /// The type named `name`.
    pub fn get(&self, name: &str) -> Option<&CustomType> {
        self.types.get(name)
    }

    /// Every type, by name.
    pub fn iter(&self) -> impl Iterator<Item = &CustomType> {
        self.types.values()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }

    /// The definitions by name (what a run's snapshot carries).
    pub fn specs(&self) -> BTreeMap<String, NodeTypeSpec> {
        self.types
            .iter()
            .map(|(name, custom)| (name.clone(), custom.spec.clone()))
            .collect()
    }

    /// Types from definitions by name (a run's snapshot), all treated as
    /// already resolved for the run's namespace.
    pub fn from_specs(specs: &BTreeMap<String, NodeTypeSpec>) -> Self {
        let mut types = Self::new();
        for (name, spec) in specs {
            types.insert(name.clone(), Scope::NodeType, spec.clone());
        }
        types
    }
}

impl CustomType {
    /// The type's entry in the node catalog (`sluice-runner nodes`,
    /// `node_definitions`): the built-in entries' fields, and what only
    /// custom types have.
    pub fn catalog_entry(&self) -> Value {
        let spec = &self.spec;
        serde_json::json!({
            "name": self.name,
            "kind": self.scope.kind(),
            "version": spec.version,
            "description": spec.description.clone().unwrap_or_default(),
            "category": spec.category.clone().unwrap_or_else(|| "custom".to_owned()),
            "parameters": spec.params_schema.clone().unwrap_or_else(|| serde_json::json!({"type": "object"})),
            "output": spec.output_schema.clone().unwrap_or_else(|| serde_json::json!({})),
            "image": spec.image,
            "connectionTypes": spec.connection_types,
            "presets": spec.presets,
        })
    }
}

/// Why a node's params cannot be built or break the type's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The preset does not exist.
    #[error("node type {type_name:?} has no preset {preset:?}: use one of [{}], or remove preset", .known.join(", "))]
    UnknownPreset {
        /// The type.
        type_name: String,
        /// The missing preset.
        preset: String,
        /// The presets it has.
        known: Vec<String>,
    },
    /// `params` is not an object.
    #[error("params must be an object of named parameters, e.g. params: {{name: Ada}}")]
    NotAnObject,
    /// The params break the schema.
    #[error("{}", .0.iter().map(|e| format!("params{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; "))]
    Schema(Vec<InputError>),
}

/// The params a node sends: the preset's first, then the node's own laid
/// over them key by key.
pub fn merged_params(
    type_name: &str,
    spec: &NodeTypeSpec,
    preset: Option<&str>,
    params: Option<&Value>,
) -> Result<Value, ParamsError> {
    let mut merged = serde_json::Map::new();
    if let Some(preset) = preset {
        let found = spec
            .preset(preset)
            .ok_or_else(|| ParamsError::UnknownPreset {
                type_name: type_name.to_owned(),
                preset: preset.to_owned(),
                known: spec.presets.iter().map(|p| p.name.clone()).collect(),
            })?;
        match &found.params {
            Value::Object(fields) => merged.extend(fields.clone()),
            Value::Null => {}
            _ => return Err(ParamsError::NotAnObject),
        }
    }
    match params {
        Some(Value::Object(fields)) => merged.extend(fields.clone()),
        None | Some(Value::Null) => {}
        Some(_) => return Err(ParamsError::NotAnObject),
    }
    Ok(Value::Object(merged))
}

/// Checks `params` against the type's params schema (when it has one).
/// Strings holding `${{ }}` are taken as valid: their value comes at run
/// time, when the rendered params are checked again.
pub fn check_params(spec: &NodeTypeSpec, params: &Value) -> Result<(), ParamsError> {
    let Some(schema) = &spec.params_schema else {
        return Ok(());
    };
    let errors = crate::input::check_value(schema, params, &|value| {
        value.as_str().is_some_and(|text| text.contains("${{"))
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ParamsError::Schema(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_crds::NodePreset;

    fn greeter() -> NodeTypeSpec {
        NodeTypeSpec {
            version: "1.0.0".into(),
            image: "example/greeter:1".into(),
            params_schema: Some(json!({
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "greeting": {"type": "string"}, "times": {"type": "integer", "maximum": 5}}
            })),
            presets: vec![NodePreset {
                name: "formal".into(),
                description: None,
                params: json!({"greeting": "Good day", "name": "you"}),
            }],
            ..NodeTypeSpec::default()
        }
    }

    #[test]
    fn node_types_shadow_cluster_node_types_in_any_order() {
        let mut cluster = greeter();
        cluster.version = "9.9.9".into();
        let mut types = CustomTypes::new();
        types.insert("greeter", Scope::NodeType, greeter());
        types.insert("greeter", Scope::ClusterNodeType, cluster.clone());
        assert_eq!(types.get("greeter").unwrap().spec.version, "1.0.0");
        let mut types = CustomTypes::new();
        types.insert("greeter", Scope::ClusterNodeType, cluster);
        types.insert("greeter", Scope::NodeType, greeter());
        assert_eq!(types.get("greeter").unwrap().scope, Scope::NodeType);
    }

    #[test]
    fn the_nodes_params_are_laid_over_the_presets() {
        let merged = merged_params(
            "greeter",
            &greeter(),
            Some("formal"),
            Some(&json!({"name": "Ada"})),
        )
        .unwrap();
        assert_eq!(merged, json!({"greeting": "Good day", "name": "Ada"}));
        let error = merged_params("greeter", &greeter(), Some("casual"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "node type \"greeter\" has no preset \"casual\": use one of [formal], or remove preset"
        );
        assert_eq!(
            merged_params("greeter", &greeter(), None, Some(&json!([1]))),
            Err(ParamsError::NotAnObject)
        );
    }

    #[test]
    fn params_are_checked_against_the_schema_except_templates() {
        assert!(check_params(&greeter(), &json!({"name": "Ada", "times": 2})).is_ok());
        assert!(
            check_params(
                &greeter(),
                &json!({"name": "${{ .input.name }}", "times": "${{ 3 }}"})
            )
            .is_ok()
        );
        let error = check_params(&greeter(), &json!({"times": 7})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "params: missing required field \"name\"; params.times: 7 is more than the maximum 5"
        );
    }
}

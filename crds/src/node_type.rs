//! The `NodeType` (namespaced) and `ClusterNodeType` (cluster-wide)
//! resources: a custom node type served by a container, which workflows
//! use through a `custom:` block.
//!
//! Both kinds share one spec ([`NodeTypeSpec`]). The runner speaks the
//! protocol of `docs/node-protocol.md` to the container on localhost; the
//! operator adds the container to a run's pod as a native sidecar. This
//! module holds only the shapes; checks live in the runner.

use crate::common::free_object_schema;
use crate::connection::ConnectionType;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Environment variable telling a node server which localhost port to
/// listen on (set by the operator on each sidecar).
pub const NODE_PORT_ENV: &str = "SLUICE_NODE_PORT";

/// Environment variable telling the runner where each custom type's node
/// server listens: `type=http://127.0.0.1:port` entries separated by commas.
pub const NODE_SERVERS_ENV: &str = "SLUICE_NODE_SERVERS";

/// Desired state of a custom node type: what it is, what it takes and
/// returns, and the container that serves it.
#[derive(CustomResource, JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "NodeType",
    root = "CustomNodeType",
    doc = "A NodeType is a custom node type served by a container, usable by every Workflow in its namespace through a custom block: custom: {type: <name>, params: {...}}.",
    namespaced,
    shortname = "nt",
    category = "sluice",
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".spec.version"}"#,
    printcolumn = r#"{"name": "Category", "type": "string", "jsonPath": ".spec.category"}"#,
    printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeTypeSpec {
    /// Version of the node type, e.g. `1.2.0`. Shown in the node catalog;
    /// change it together with the image.
    #[schemars(length(min = 1, max = 64))]
    pub version: String,
    /// What the node does, for people choosing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Catalog category, e.g. `integration`, `data` or `messaging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub category: Option<String>,
    /// JSON schema of the `params` a node passes. Sluice checks params
    /// against it before a run with this subset of JSON schema: type,
    /// required, properties, items, enum, minimum/maximum,
    /// minLength/maxLength and pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub params_schema: Option<serde_json::Value>,
    /// JSON schema of the node's output, for people and tools reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub output_schema: Option<serde_json::Value>,
    /// Container image of the node server. It must answer the protocol of
    /// docs/node-protocol.md on 127.0.0.1, on the port given in the
    /// environment variable SLUICE_NODE_PORT.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,
    /// Entrypoint of the container; the image's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments of the entrypoint; the image's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// CPU and memory requests and limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Connection types a node of this type may name in `connection`; none
    /// means it takes no Connection. The Connection's Secret is mounted in
    /// the container as files, never passed in parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub connection_types: Vec<ConnectionType>,
    /// Named, preconfigured parameter sets a node selects with `preset`;
    /// the node's own params are laid over the preset's, key by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub presets: Vec<NodePreset>,
}

/// A named set of parameters of a node type.
#[derive(JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePreset {
    /// Name a node gives in `custom.preset`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What the preset is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The parameters it sets.
    #[serde(default)]
    #[schemars(schema_with = "free_object_schema")]
    pub params: serde_json::Value,
}

/// Desired state of a cluster-wide custom node type: the same fields as a
/// NodeType.
#[derive(CustomResource, JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterNodeType",
    doc = "A ClusterNodeType is a custom node type served by a container, usable by every Workflow in the cluster unless a NodeType of the same name in the workflow's namespace shadows it.",
    shortname = "cnt",
    category = "sluice",
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".spec.version"}"#,
    printcolumn = r#"{"name": "Category", "type": "string", "jsonPath": ".spec.category"}"#,
    printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
pub struct ClusterNodeTypeSpec {
    /// The node type's definition.
    #[serde(flatten)]
    pub definition: NodeTypeSpec,
}

impl NodeTypeSpec {
    /// The preset named `name`.
    pub fn preset(&self, name: &str) -> Option<&NodePreset> {
        self.presets.iter().find(|preset| preset.name == name)
    }
}

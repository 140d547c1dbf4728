//! The node catalog: every built-in node type, keyed by [`NodeType`], with
//! the description, category and parameter schema published by
//! `sluice-runner nodes` (and mirrored to `node_definitions`).
//!
//! Each node type lives in its own module and only performs one attempt
//! (see [`crate::node`]); nothing here schedules or retries.

pub mod custom;
pub mod fail;
pub mod http;
pub mod kubernetes;
pub mod notify;
pub mod postgres;
pub mod shell;
pub mod transform;
pub mod wait;
pub mod workflow;

use crate::clock::Clock;
use crate::node::Node;
use sluice_crds::NodeType;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Node types by type name.
#[derive(Clone, Default)]
pub struct Catalog {
    nodes: BTreeMap<NodeType, Arc<dyn Node>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.nodes.keys()).finish()
    }
}

impl Catalog {
    /// An empty catalog (tests and benchmarks register their own types).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in node type, as `sluice-runner run` and `exec` execute
    /// them: `kubernetes` nodes use `KUBECONFIG` or the pod's
    /// ServiceAccount; `workflow` nodes need the operator's run API and,
    /// in a local run, fail with a hint to run on a cluster.
    pub fn local(clock: Arc<dyn Clock>) -> Self {
        let mut catalog = Self::empty();
        catalog.register(Arc::new(http::HttpNode));
        catalog.register(Arc::new(transform::TransformNode));
        catalog.register(Arc::new(wait::WaitNode::new(clock)));
        catalog.register(Arc::new(shell::ShellNode));
        catalog.register(Arc::new(fail::FailNode));
        catalog.register(Arc::new(postgres::PostgresNode));
        catalog.register(Arc::new(notify::NotifyNode));
        catalog.register(Arc::new(kubernetes::KubernetesNode::new()));
        catalog.register(Arc::new(workflow::WorkflowNode));
        catalog.register(Arc::new(custom::CustomNode::new(
            custom::NodeServers::new(),
            custom::CustomTypes::new(),
            custom::ServerHint::Local,
        )));
        catalog
    }

    /// Adds (or replaces) the implementation of a node type.
    pub fn register(&mut self, node: Arc<dyn Node>) {
        self.nodes.insert(node.node_type(), node);
    }

    /// The implementation of `node_type`, if registered.
    pub fn get(&self, node_type: NodeType) -> Option<&Arc<dyn Node>> {
        self.nodes.get(&node_type)
    }

    /// The catalog as published: per type its name, description, category
    /// and parameter JSON schema, in catalog order.
    pub fn catalog_json(&self) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = NodeType::ALL
            .iter()
            .filter_map(|node_type| self.nodes.get(node_type))
            .map(|node| {
                let node_type = node.node_type();
                let (description, category) = describe(node_type);
                serde_json::json!({
                    "name": node_type.as_str(),
                    "description": description,
                    "category": category,
                    "parameters": node.parameter_schema(),
                })
            })
            .collect();
        serde_json::Value::Array(entries)
    }
}

/// One-line description and category of each node type.
pub fn describe(node_type: NodeType) -> (&'static str, &'static str) {
    match node_type {
        NodeType::Http => (
            "Send an HTTP request. Output: {status, headers, body}.",
            "integration",
        ),
        NodeType::Transform => (
            "Compute a value with jq over the run context. Output: the jq result.",
            "data",
        ),
        NodeType::Wait => ("Wait for a duration or until a point in time.", "flow"),
        NodeType::Postgres => (
            "Run one parameterised SQL statement. Output: {rows, rowCount}.",
            "data",
        ),
        NodeType::Shell => (
            "Run a command in the runner container. Output: {exitCode, stdout, stderr}.",
            "compute",
        ),
        NodeType::Kubernetes => (
            "Get, apply, patch or delete a Kubernetes object with the run's ServiceAccount.",
            "cluster",
        ),
        NodeType::Workflow => (
            "Start a run of another Workflow and wait for it. Output: {run, output, outputTruncated}.",
            "flow",
        ),
        NodeType::Notify => (
            "Send a message to Slack, a webhook or an SMTP server.",
            "messaging",
        ),
        NodeType::Fail => ("Fail the node with a message.", "flow"),
        NodeType::Custom => (
            "Call a custom node type (a NodeType or ClusterNodeType) served by its own container. Output: what the container returns.",
            "custom",
        ),
    }
}

/// Parameter schema of a node type, from its typed parameter struct.
pub fn parameter_schema(node_type: NodeType) -> serde_json::Value {
    use sluice_crds::nodes as p;
    let schema = match node_type {
        NodeType::Http => schemars::schema_for!(p::HttpNode),
        NodeType::Transform => schemars::schema_for!(p::TransformNode),
        NodeType::Wait => schemars::schema_for!(p::WaitNode),
        NodeType::Postgres => schemars::schema_for!(p::PostgresNode),
        NodeType::Shell => schemars::schema_for!(p::ShellNode),
        NodeType::Kubernetes => schemars::schema_for!(p::KubernetesNode),
        NodeType::Workflow => schemars::schema_for!(p::WorkflowNode),
        NodeType::Notify => schemars::schema_for!(p::NotifyNode),
        NodeType::Fail => schemars::schema_for!(p::FailNode),
        NodeType::Custom => schemars::schema_for!(p::CustomNode),
    };
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

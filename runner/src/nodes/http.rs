//! Placeholder for the `http` node type until its implementation lands.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError};
use sluice_crds::NodeType;

/// The `http` node type (placeholder).
#[derive(Debug, Default)]
pub struct HttpNode;

impl Node for HttpNode {
    fn node_type(&self) -> NodeType {
        NodeType::Http
    }

    fn parameter_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(sluice_crds::nodes::HttpNode))
            .unwrap_or(serde_json::Value::Null)
    }

    fn execute<'a>(
        &'a self,
        _params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        Box::pin(async { Err(NodeError::permanent("http nodes are not available yet")) })
    }
}

//! Placeholder for the `notify` node type until its implementation lands.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError};
use sluice_crds::NodeType;

/// The `notify` node type (placeholder).
#[derive(Debug, Default)]
pub struct NotifyNode;

impl Node for NotifyNode {
    fn node_type(&self) -> NodeType {
        NodeType::Notify
    }

    fn parameter_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(sluice_crds::nodes::NotifyNode))
            .unwrap_or(serde_json::Value::Null)
    }

    fn execute<'a>(
        &'a self,
        _params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        Box::pin(async { Err(NodeError::permanent("notify nodes are not available yet")) })
    }
}

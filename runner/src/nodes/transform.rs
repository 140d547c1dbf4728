//! The `transform` node: its output is the value of its jq program.
//!
//! The engine compiles `transform.jq` at validation and evaluates it while
//! rendering the parameters (the `jq` field is an expression, not a
//! template), so this node only hands back the rendered `jq` value.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError};
use sluice_crds::NodeType;

/// The `transform` node type.
#[derive(Debug, Default)]
pub struct TransformNode;

impl Node for TransformNode {
    fn node_type(&self) -> NodeType {
        NodeType::Transform
    }

    fn execute<'a>(
        &'a self,
        params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        let output = match params {
            serde_json::Value::Object(mut fields) => fields
                .remove("jq")
                .ok_or_else(|| NodeError::permanent("invalid transform parameters: missing jq")),
            _ => Err(NodeError::permanent(
                "invalid transform parameters: expected an object with jq",
            )),
        };
        Box::pin(std::future::ready(output))
    }
}

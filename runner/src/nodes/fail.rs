//! The `fail` node: fails with its (rendered) message, never retried.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError, parse_params};
use sluice_crds::NodeType;
use sluice_crds::nodes::FailNode as FailParams;

/// The `fail` node type.
#[derive(Debug, Default)]
pub struct FailNode;

impl Node for FailNode {
    fn node_type(&self) -> NodeType {
        NodeType::Fail
    }

    fn execute<'a>(
        &'a self,
        params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        let result = parse_params::<FailParams>(NodeType::Fail, params)
            .and_then(|params| Err(NodeError::permanent(params.message)));
        Box::pin(std::future::ready(result))
    }
}

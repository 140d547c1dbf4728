//! The `wait` node: sleeps for a duration or until a time, on the engine's
//! injected clock (so tests do not wait). Output: `{waitedMs}`.

use crate::clock::Clock;
use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError, parse_params};
use sluice_crds::NodeType;
use sluice_crds::nodes::WaitNode as WaitParams;
use std::sync::Arc;

/// The `wait` node type.
pub struct WaitNode {
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WaitNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitNode").finish_non_exhaustive()
    }
}

impl WaitNode {
    /// A wait node sleeping on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }

    fn how_long(&self, params: WaitParams) -> Result<std::time::Duration, NodeError> {
        match (params.duration, params.until) {
            (Some(duration), None) => sluice_crds::Duration::parse(duration.trim())
                .map(|d| d.as_std())
                .map_err(|e| NodeError::permanent(format!("invalid wait duration: {e}"))),
            (None, Some(until)) => {
                let until = chrono::DateTime::parse_from_rfc3339(until.trim()).map_err(|e| {
                    NodeError::permanent(format!(
                        "invalid wait until {until:?}: {e}: write it like 2026-01-01T09:00:00Z"
                    ))
                })?;
                let remaining = until.with_timezone(&chrono::Utc) - self.clock.now();
                Ok(remaining.to_std().unwrap_or_default())
            }
            _ => Err(NodeError::permanent(
                "a wait node needs exactly one of duration and until",
            )),
        }
    }
}

impl Node for WaitNode {
    fn node_type(&self) -> NodeType {
        NodeType::Wait
    }

    fn execute<'a>(
        &'a self,
        params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        Box::pin(async move {
            let params = parse_params::<WaitParams>(NodeType::Wait, params)?;
            let duration = self.how_long(params)?;
            if !duration.is_zero() {
                self.clock.sleep(duration).await;
            }
            Ok(serde_json::json!({ "waitedMs": duration.as_millis() as u64 }))
        })
    }
}

//! The contract between the engine and the node types.
//!
//! The engine decides *when* a node runs (needs, `if`, `forEach`, retries,
//! timeouts, cancellation) and renders every `${{ }}` template of the
//! node's parameter block; a [`Node`] implementation only performs one
//! attempt with the rendered parameters. Nothing here schedules or retries.
//!
//! Cancellation and timeouts drop the future returned by [`Node::execute`],
//! so implementations must be cancel-safe: release resources on drop (e.g.
//! `tokio::process::Command::kill_on_drop(true)`).

use crate::connections::ConnectionStore;
use sluice_crds::NodeType;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why one attempt of a node failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    /// One-line, user-facing description: what failed and, where known, how
    /// to fix it. Never contains secret values.
    pub message: String,
    /// Whether another attempt may succeed (network errors, 5xx, 429).
    /// Non-retryable errors (bad parameters, 4xx, a `fail` node) end the
    /// node at once even when `retry` allows more attempts.
    pub retryable: bool,
}

impl NodeError {
    /// An error another attempt may fix.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// An error no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Severity of a log line a node emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something odd that did not fail the node.
    Warn,
    /// A failure.
    Error,
}

/// Receives the log lines nodes emit while they run.
pub trait LogSink: Send + Sync {
    /// Records one line for `node`.
    fn log(&self, node: &str, level: LogLevel, message: &str);
}

/// A sink that drops every line.
#[derive(Debug, Default)]
pub struct NoLogs;

impl LogSink for NoLogs {
    fn log(&self, _: &str, _: LogLevel, _: &str) {}
}

/// Identity of the run a node belongs to, for nodes that need it
/// (`workflow` child runs, `kubernetes` defaults, log metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunInfo {
    /// Namespace of the run (locally: `default`).
    pub namespace: String,
    /// Name of the workflow.
    pub workflow: String,
    /// Name of the run (locally: a generated one).
    pub name: String,
}

/// How nodes reach the operator's run API: set by `sluice-runner exec`
/// (inside a run's Job), absent for local runs. `workflow` nodes start
/// child runs through it, authorised by the run's own token.
#[derive(Clone, PartialEq, Eq)]
pub struct RunApiAccess {
    /// Base URL of the run API, without a trailing slash.
    pub base_url: String,
    /// The run's credential. Never logged: `Debug` hides it.
    pub token: String,
}

impl std::fmt::Debug for RunApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunApiAccess")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Services shared by every node of a run.
#[derive(Clone)]
pub struct NodeContext {
    /// The run this execution belongs to.
    pub run: RunInfo,
    /// Connections the workflow may use, with their secrets.
    pub connections: Arc<ConnectionStore>,
    /// Shared HTTP client (connection pooling across nodes).
    pub http: reqwest::Client,
    /// Where nodes send log lines.
    pub logs: Arc<dyn LogSink>,
    /// The operator's run API, when the run executes in a Job.
    pub run_api: Option<RunApiAccess>,
    /// The run's memory budget: nodes reading data in (HTTP bodies) stop
    /// at what is left of it.
    pub memory: Arc<crate::budget::MemoryBudget>,
}

/// One attempt of a node, identified for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Node name; with forEach, `name[index]`.
    pub node: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// With forEach: the item's position and the item.
    pub item: Option<(usize, serde_json::Value)>,
}

/// A node type: performs one attempt with rendered parameters.
pub trait Node: Send + Sync {
    /// The type this implementation handles.
    fn node_type(&self) -> NodeType;

    /// JSON schema of the parameter block, as published in the node catalog
    /// (by default the schema of the type's parameter struct in `sluice-crds`).
    fn parameter_schema(&self) -> serde_json::Value {
        crate::nodes::parameter_schema(self.node_type())
    }

    /// Runs one attempt. `params` is the node's parameter block (e.g. the
    /// value of `http:`) with every `${{ }}` template already rendered.
    /// Returns the node's output.
    fn execute<'a>(
        &'a self,
        params: serde_json::Value,
        attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>>;
}

/// Deserializes rendered parameters into a node's typed parameter struct,
/// turning a mismatch into a permanent error that names the node type.
pub fn parse_params<T: serde::de::DeserializeOwned>(
    node_type: NodeType,
    params: serde_json::Value,
) -> Result<T, NodeError> {
    serde_json::from_value(params)
        .map_err(|e| NodeError::permanent(format!("invalid {node_type} parameters: {e}")))
}

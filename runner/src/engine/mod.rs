//! The engine: runs a [`CompiledWorkflow`] over the [`Node`](crate::node::Node)
//! trait. It decides *when* nodes run — `needs`, `if` with skip
//! propagation and `runWhen`, `forEach`, retries with backoff, timeouts,
//! `continueOnError`, the run's parallelism bound and deadline,
//! cancellation, outputs reused from a run this one resumes — and reports
//! every step to a [`Reporter`].
//!
//! Pure scheduling logic: all I/O happens inside node implementations, all
//! time comes from the injected [`Clock`]. The whole run is one future
//! (nodes run concurrently inside it), so dropping it stops everything.

mod cancel;
mod execute;
mod run;

pub use cancel::Cancellation;

use crate::budget::{BudgetSource, DEFAULT_MEMORY_BUDGET, MemoryBudget};
use crate::clock::{Clock, Jitter};
use crate::compiled::CompiledWorkflow;
use crate::connections::ConnectionStore;
use crate::node::{RunApiAccess, RunInfo};
use crate::nodes::Catalog;
use crate::report::{NodeResult, Reporter, RunSummary};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Default cap on the reported copy of one node's output (events, status,
/// history): 1 MiB of compact JSON. Dependants always read the whole output.
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;

/// Runs workflows with a catalog of node types and a clock.
pub struct Engine {
    catalog: Catalog,
    clock: Arc<dyn Clock>,
    output_cap: usize,
    memory_budget: Option<usize>,
    jitter_seed: Option<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("catalog", &self.catalog)
            .field("output_cap", &self.output_cap)
            .field("memory_budget", &self.memory_budget)
            .finish_non_exhaustive()
    }
}

/// Everything one run needs besides the workflow.
#[derive(Clone)]
pub struct RunRequest {
    /// The run's input (defaults merged, already checked).
    pub input: serde_json::Value,
    /// Identity of the run (`.run` in expressions).
    pub info: RunInfo,
    /// Connections nodes may use.
    pub connections: Arc<ConnectionStore>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    /// Stops the run when it fires.
    pub cancel: Cancellation,
    /// The operator's run API (in a Job); `None` for local runs.
    pub run_api: Option<RunApiAccess>,
    /// Outputs of nodes that succeeded in an earlier run (`spec.resumeFrom`),
    /// by node name: these nodes succeed at once with that output, without
    /// running. The operator only lists nodes whose needs are listed too.
    pub reused: BTreeMap<String, serde_json::Value>,
}

impl RunRequest {
    /// A request with `input`, no connections and a default HTTP client.
    pub fn new(input: serde_json::Value) -> Self {
        Self {
            input,
            info: RunInfo {
                namespace: "default".into(),
                workflow: "workflow".into(),
                name: "local".into(),
            },
            connections: Arc::new(ConnectionStore::default()),
            http: reqwest::Client::new(),
            cancel: Cancellation::new(),
            run_api: None,
            reused: BTreeMap::new(),
        }
    }
}

/// The outcome of a run: its summary and every node's result, in spec
/// order, as reported (outputs over the cap shortened and marked), and the
/// run's whole output.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Phase, reason, the reported copy of the output.
    pub summary: RunSummary,
    /// One result per node, in spec order.
    pub nodes: Vec<NodeResult>,
    /// The run's output, whole (`null` unless it succeeded).
    pub output: serde_json::Value,
}

impl RunResult {
    /// The result of the node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeResult> {
        self.nodes.iter().find(|n| n.node == name)
    }
}

impl Engine {
    /// An engine running `catalog`'s node types on `clock`.
    pub fn new(catalog: Catalog, clock: Arc<dyn Clock>) -> Self {
        Self {
            catalog,
            clock,
            output_cap: DEFAULT_OUTPUT_CAP,
            memory_budget: None,
            jitter_seed: None,
        }
    }

    /// Sets the cap on reported copies of outputs, in bytes of compact JSON.
    pub fn with_output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }

    /// Sets every run's memory budget, overriding the workflow's
    /// `spec.memoryBudget` (`sluice-runner run --memory-budget`).
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// The memory budget of one run of `workflow`.
    fn budget_for(&self, workflow: &CompiledWorkflow) -> MemoryBudget {
        match (self.memory_budget, workflow.memory_budget) {
            (Some(bytes), _) => MemoryBudget::new(bytes, BudgetSource::CommandLine),
            (None, Some(bytes)) => MemoryBudget::new(bytes, BudgetSource::Workflow),
            (None, None) => MemoryBudget::new(DEFAULT_MEMORY_BUDGET, BudgetSource::Default),
        }
    }

    /// Fixes the seed of backoff jitter (tests); by default it is random.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Runs `workflow` to completion (or cancellation, or its deadline),
    /// reporting to `reporter`.
    pub async fn run(
        &self,
        workflow: &CompiledWorkflow,
        request: RunRequest,
        reporter: Arc<dyn Reporter>,
    ) -> RunResult {
        let jitter = self
            .jitter_seed
            .map_or_else(Jitter::from_time, Jitter::seeded);
        let shared = run::Shared {
            engine: self,
            workflow,
            events: Arc::new(run::Events::new(reporter, self.clock.clone())),
            jitter: Mutex::new(jitter),
            semaphore: tokio::sync::Semaphore::new(workflow.parallelism),
            budget: Arc::new(self.budget_for(workflow)),
        };
        run::run(&shared, request).await
    }
}

#[cfg(test)]
mod tests;

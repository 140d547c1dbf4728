//! Executing one started node: `forEach` fan-out in item order under a
//! parallelism bound, parameter rendering, attempts with timeout, retries
//! with backoff; then the node's output is held against the run's memory
//! budget (whole, for its dependants) and capped only in its reported copy.

use super::run::Shared;
use crate::budget::json_len;
use crate::compiled::CompiledNode;
use crate::expr::val_to_json;
use crate::node::{Attempt, LogLevel, Node, NodeContext, NodeError};
use crate::report::{EventKind, NodeResult, format_millis, reported_copy};
use chrono::{DateTime, Utc};
use futures::stream::StreamExt;
use jaq_json::Val;
use sluice_crds::{NodePhase, NodeType};
use std::sync::Arc;

/// How a node ended, before it is stamped with times and capped.
pub(super) struct Outcome {
    phase: NodePhase,
    attempts: u32,
    output: Option<serde_json::Value>,
    /// Size of `output` as compact JSON, when already counted.
    output_bytes: Option<usize>,
    error: Option<String>,
    reason: Option<String>,
}

impl Outcome {
    pub(super) fn skipped(reason: String) -> Self {
        Self {
            phase: NodePhase::Skipped,
            attempts: 0,
            output: None,
            output_bytes: None,
            error: None,
            reason: Some(reason),
        }
    }

    pub(super) fn cancelled(reason: String) -> Self {
        Self {
            phase: NodePhase::Cancelled,
            reason: Some(reason),
            ..Self::skipped(String::new())
        }
    }

    pub(super) fn failed_before_start(error: String) -> Self {
        Self::failed(0, error)
    }

    fn failed(attempts: u32, error: String) -> Self {
        Self {
            phase: NodePhase::Failed,
            attempts,
            output: None,
            output_bytes: None,
            error: Some(error),
            reason: None,
        }
    }

    /// Succeeded without running: the output of an earlier run, reused.
    pub(super) fn reused(output: serde_json::Value) -> Self {
        Self {
            reason: Some("its output was reused from the run it resumes".to_owned()),
            ..Self::succeeded(0, output)
        }
    }

    fn succeeded(attempts: u32, output: serde_json::Value) -> Self {
        Self {
            phase: NodePhase::Succeeded,
            attempts,
            output: Some(output),
            output_bytes: None,
            error: None,
            reason: None,
        }
    }

    /// Holds a succeeded node's output against the run's memory budget
    /// for the rest of the run; an output that does not fit fails the node.
    pub(super) fn hold(mut self, shared: &Shared<'_>, index: usize) -> Self {
        let Some(output) = &self.output else {
            return self;
        };
        let bytes = self.output_bytes.unwrap_or_else(|| json_len(output));
        self.output_bytes = Some(bytes);
        let name = &shared.workflow.nodes[index].name;
        match shared
            .budget
            .hold(|| format!("the output of node {name:?}"), bytes)
        {
            Ok(()) => self,
            Err(over) => Self::failed(self.attempts, over.to_string()),
        }
    }

    /// The node's reported result (its output capped, and marked when it
    /// was) and its whole output, which is what dependants read.
    pub(super) fn into_result(
        self,
        shared: &Shared<'_>,
        index: usize,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
    ) -> (NodeResult, Option<serde_json::Value>) {
        let node = &shared.workflow.nodes[index];
        let cap = shared.engine.output_cap;
        let mut truncated = false;
        let output_bytes = match (&self.output, self.output_bytes) {
            (Some(output), None) => Some(json_len(output)),
            (_, bytes) => bytes,
        };
        let reported = self
            .output
            .as_ref()
            .zip(output_bytes)
            .map(|(output, bytes)| {
                let (copy, cut) = reported_copy(output, bytes, cap);
                truncated = cut;
                copy
            });
        let result = NodeResult {
            node: node.name.clone(),
            node_type: node.node_type,
            phase: self.phase,
            attempts: self.attempts,
            started_at,
            finished_at,
            duration_ms: started_at.map_or(0.0, |start| millis_between(start, finished_at)),
            output: reported,
            error: self.error,
            reason: self.reason,
            truncated,
            output_bytes,
            continue_on_error: node.continue_on_error,
        };
        (result, self.output)
    }
}

/// Milliseconds from `start` to `end`, to the microsecond (never negative).
pub(super) fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> f64 {
    (end - start).num_microseconds().unwrap_or(i64::MAX).max(0) as f64 / 1000.0
}

/// One execution (the node, or one forEach item) after its attempts.
struct ItemResult {
    attempts: u32,
    result: Result<serde_json::Value, String>,
}

/// Runs a started node to its end.
pub(super) async fn execute_node<'a>(
    shared: &'a Shared<'a>,
    index: usize,
    context: Val,
    node_context: &'a NodeContext,
) -> (usize, Outcome) {
    let node = &shared.workflow.nodes[index];
    let Some(implementation) = shared.engine.catalog.get(node.node_type) else {
        return (
            index,
            Outcome::failed_before_start(format!(
                "{} nodes are not available in this runner",
                node.node_type
            )),
        );
    };
    let Some(for_each) = &node.for_each else {
        started(shared, node, None);
        let item = execute_item(
            shared,
            node,
            implementation,
            &context,
            (node.name.clone(), None),
            node_context,
        )
        .await;
        let outcome = match item.result {
            Ok(output) => Outcome::succeeded(item.attempts, output),
            Err(error) => Outcome::failed(item.attempts, error),
        };
        return (index, outcome);
    };
    let items = match for_each.first(context.clone()) {
        Ok(Val::Arr(items)) => items,
        Ok(other) => {
            let shown = crate::report::one_line(&val_to_json(&other), 60);
            return (
                index,
                Outcome::failed_before_start(format!(
                    "forEach must yield a list, but {:?} yielded {shown}",
                    for_each.source()
                )),
            );
        }
        Err(error) => {
            return (
                index,
                Outcome::failed_before_start(format!(
                    "failed to evaluate forEach: {}",
                    error.message
                )),
            );
        }
    };
    started(shared, node, Some(items.len()));
    let parallelism = node
        .parallelism
        .unwrap_or(shared.workflow.parallelism)
        .max(1);
    let total = items.len();
    let mut results = futures::stream::iter(items.iter().cloned().enumerate())
        .map(|(position, item)| {
            // Only custom nodes hand the item itself to their implementation.
            let item_json =
                (node.node_type == NodeType::Custom).then(|| (position, val_to_json(&item)));
            let item_context = with_item(&context, item, position);
            let label = format!("{}[{position}]", node.name);
            async move {
                execute_item(
                    shared,
                    node,
                    implementation,
                    &item_context,
                    (label, item_json),
                    node_context,
                )
                .await
            }
        })
        .buffered(parallelism);
    let mut attempts = 0;
    let mut outputs = Vec::with_capacity(total);
    // Size of the output list as compact JSON: brackets, items, commas.
    let mut bytes = 2;
    let mut failures = 0;
    let mut first_failure = None;
    let mut position = 0;
    while let Some(item) = results.next().await {
        attempts = attempts.max(item.attempts);
        match item.result {
            Ok(output) => {
                bytes += json_len(&output) + usize::from(!outputs.is_empty());
                outputs.push(output);
                // Stop early rather than hold more than the budget allows.
                if let Err(over) = shared.budget.check(
                    || {
                        format!(
                            "the output of node {:?} after {} of {total} items",
                            node.name,
                            position + 1
                        )
                    },
                    bytes,
                ) {
                    return (index, Outcome::failed(attempts, over.to_string()));
                }
            }
            Err(error) => {
                failures += 1;
                first_failure.get_or_insert((position, error));
            }
        }
        position += 1;
    }
    if total == 0 {
        attempts = 1;
    }
    let outcome = match first_failure {
        Some((position, error)) => Outcome::failed(
            attempts,
            format!("item {position} failed: {error} ({failures} of {total} items failed)"),
        ),
        None => Outcome {
            output_bytes: Some(bytes),
            ..Outcome::succeeded(attempts, serde_json::Value::Array(outputs))
        },
    };
    (index, outcome)
}

fn started(shared: &Shared<'_>, node: &CompiledNode, items: Option<usize>) {
    shared.events.emit(EventKind::NodeStarted {
        node: node.name.clone(),
        node_type: node.node_type,
        items,
    });
}

fn with_item(context: &Val, item: Val, position: usize) -> Val {
    let mut context = context.clone();
    if let Val::Obj(map) = &mut context {
        let map = jaq_json::Rc::make_mut(map);
        map.insert(Val::utf8_str("item"), item);
        map.insert(Val::utf8_str("index"), Val::from(position));
    }
    context
}

/// Renders the parameters once, then makes attempts until one succeeds, an
/// error is not retryable, or the retry limit is reached.
async fn execute_item(
    shared: &Shared<'_>,
    node: &CompiledNode,
    implementation: &Arc<dyn Node>,
    context: &Val,
    (label, item): (String, Option<(usize, serde_json::Value)>),
    node_context: &NodeContext,
) -> ItemResult {
    let params = match node.params.render(context) {
        Ok(params) => params,
        Err(error) => {
            return ItemResult {
                attempts: 0,
                result: Err(format!("failed to render parameters: {error}")),
            };
        }
    };
    let total = node.retry.limit + 1;
    let mut number = 1;
    loop {
        let attempt = Attempt {
            node: label.clone(),
            number,
            item: item.clone(),
        };
        let result = {
            let _permit = shared.semaphore.acquire().await;
            shared.events.emit(EventKind::AttemptStarted {
                node: label.clone(),
                node_type: node.node_type,
                attempt: number,
                input: reported_copy(&params, json_len(&params), shared.engine.output_cap).0,
            });
            let execution = implementation.execute(params.clone(), &attempt, node_context);
            match node.timeout {
                None => execution.await,
                Some(limit) => {
                    tokio::select! {
                        biased;
                        result = execution => result,
                        () = shared.clock().sleep(limit) => Err(NodeError::retryable(format!(
                            "timed out after {}",
                            format_millis(limit.as_secs_f64() * 1000.0)
                        ))),
                    }
                }
            }
        };
        match result {
            Ok(output) => {
                return ItemResult {
                    attempts: number,
                    result: Ok(output),
                };
            }
            Err(error) if error.retryable && number < total => {
                let delay = node.retry.delay(number, shared.next_jitter());
                shared.events.emit(EventKind::Log {
                    node: label.clone(),
                    level: LogLevel::Warn,
                    message: format!(
                        "attempt {number} of {total} failed: {}; retrying in {}",
                        error.message,
                        format_millis(delay.as_secs_f64() * 1000.0)
                    ),
                });
                shared.clock().sleep(delay).await;
                number += 1;
            }
            Err(error) => {
                let message = if number > 1 {
                    format!("{} (attempt {number} of {total})", error.message)
                } else {
                    error.message
                };
                return ItemResult {
                    attempts: number,
                    result: Err(message),
                };
            }
        }
    }
}

//! Executing one started node: `forEach` fan-out in item order under a
//! parallelism bound, parameter rendering, attempts with timeout, retries
//! with backoff, and the output cap.

use super::run::Shared;
use crate::compiled::CompiledNode;
use crate::expr::val_to_json;
use crate::node::{Attempt, LogLevel, Node, NodeContext, NodeError};
use crate::report::{EventKind, NodeResult, format_millis};
use chrono::{DateTime, Utc};
use futures::stream::StreamExt;
use jaq_json::Val;
use sluice_crds::NodePhase;
use std::sync::Arc;

/// How a node ended, before it is stamped with times and capped.
pub(super) struct Outcome {
    phase: NodePhase,
    attempts: u32,
    output: Option<serde_json::Value>,
    error: Option<String>,
    reason: Option<String>,
}

impl Outcome {
    pub(super) fn skipped(reason: String) -> Self {
        Self {
            phase: NodePhase::Skipped,
            attempts: 0,
            output: None,
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
            error: None,
            reason: None,
        }
    }

    /// The node's reported result, with its output capped.
    pub(super) fn into_result(
        self,
        shared: &Shared<'_>,
        index: usize,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
    ) -> NodeResult {
        let node = &shared.workflow.nodes[index];
        let cap = shared.engine.output_cap;
        let mut truncated = false;
        let mut output_bytes = None;
        let output = self.output.map(|output| {
            let bytes = serde_json::to_vec(&output).map_or(0, |b| b.len());
            output_bytes = Some(bytes);
            if bytes > cap {
                truncated = true;
                serde_json::json!({
                    "truncated": true,
                    "bytes": bytes,
                    "capBytes": cap,
                    "message": format!("the output of {} was {bytes} bytes, over the cap of {cap} bytes", node.name),
                })
            } else {
                output
            }
        });
        NodeResult {
            node: node.name.clone(),
            node_type: node.node_type,
            phase: self.phase,
            attempts: self.attempts,
            started_at,
            finished_at,
            duration_ms: started_at.map_or(0, |start| {
                (finished_at - start).num_milliseconds().max(0) as u64
            }),
            output,
            error: self.error,
            reason: self.reason,
            truncated,
            output_bytes,
            continue_on_error: node.continue_on_error,
        }
    }
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
            node.name.clone(),
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
    let results: Vec<ItemResult> = futures::stream::iter(items.iter().cloned().enumerate())
        .map(|(position, item)| {
            let item_context = with_item(&context, item, position);
            let label = format!("{}[{position}]", node.name);
            async move {
                execute_item(
                    shared,
                    node,
                    implementation,
                    &item_context,
                    label,
                    node_context,
                )
                .await
            }
        })
        .buffered(parallelism)
        .collect()
        .await;
    let attempts = results.iter().map(|r| r.attempts).max().unwrap_or(1);
    let failures: Vec<(usize, &String)> = results
        .iter()
        .enumerate()
        .filter_map(|(position, r)| r.result.as_ref().err().map(|e| (position, e)))
        .collect();
    let outcome = match failures.first() {
        Some((position, error)) => Outcome::failed(
            attempts,
            format!(
                "item {position} failed: {error} ({} of {} items failed)",
                failures.len(),
                results.len()
            ),
        ),
        None => Outcome::succeeded(
            attempts,
            serde_json::Value::Array(results.into_iter().filter_map(|r| r.result.ok()).collect()),
        ),
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
    label: String,
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
        };
        let result = {
            let _permit = shared.semaphore.acquire().await;
            shared.events.emit(EventKind::AttemptStarted {
                node: label.clone(),
                node_type: node.node_type,
                attempt: number,
                input: params.clone(),
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
                            format_millis(limit.as_millis() as u64)
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
                        format_millis(delay.as_millis() as u64)
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

//! The `workflow` node type: starts a run of another Workflow in the same
//! namespace (a *child run*), waits for it and returns its output.
//!
//! The runner has no Kubernetes RBAC for WorkflowRuns, so it asks the
//! operator's run API (`PUT|GET|DELETE …/runs/{ns}/{run}/children/{child}`,
//! see `sluice_crds::run_api`), authorised by the parent run's own token
//! ([`RunApiAccess`]). Local runs have no run API: the node then fails with
//! a hint to run the workflow on a cluster.
//!
//! - Naming: the child is named `<parent run>-<node>` (`-<index>` for a
//!   `forEach` item), fitted to 63 characters with a hash suffix
//!   ([`child_run_name`]). The name is the same on every attempt, so a
//!   retry after a lost answer finds the child it already started instead
//!   of starting a second one.
//! - `wait: false`: succeeds as soon as the child exists, with
//!   `{run: <name>}`.
//! - Otherwise the node polls the child (200 ms doubling to 5 s) until it
//!   ends; the node's `timeout` and the run's deadline bound the wait.
//!   Succeeded → `{run, output, outputTruncated}`. The output is the
//!   child's `status.output`, which the operator caps at 4 KiB of JSON:
//!   `outputTruncated: true` says it was cut (the full output is in
//!   PostgreSQL). Failed or Cancelled → a permanent error naming the child
//!   run and its message.
//! - When the wait is abandoned (timeout, deadline, cancellation of the
//!   parent) the node asks the operator to cancel the child, best effort.
//!   A retry after a timeout therefore finds that cancelled child and
//!   fails: bound long children with their own `activeDeadlineSeconds`.
//!   Deleting the parent run deletes its children (owner reference).
//!
//! Unreachable operator, 429 and 5xx are retried inside the attempt; other
//! refusals (no such Workflow, a name taken by a run that is not this run's
//! child) are permanent. The token is never logged or put in an error.

use crate::node::{
    Attempt, BoxFuture, LogLevel, Node, NodeContext, NodeError, RunApiAccess, parse_params,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_crds::NodeType;
use sluice_crds::RunPhase;
use sluice_crds::nodes::WorkflowNode as WorkflowParams;
use sluice_crds::run_api::{ChildRun, ChildRunRequest, RUN_API_PREFIX};
use std::time::Duration;

/// Longest child run name: a DNS-1123 label, since the run's Job and its
/// labels carry it.
pub const MAX_CHILD_NAME_LEN: usize = 63;
const HASH_LEN: usize = 10;
/// First wait between two polls of the child; doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(5);
/// How long creating the child may keep failing transiently before the
/// attempt gives up with a retryable error.
const CREATE_PATIENCE: Duration = Duration::from_secs(120);

/// The `workflow` node type.
#[derive(Debug, Default)]
pub struct WorkflowNode;

impl Node for WorkflowNode {
    fn node_type(&self) -> NodeType {
        NodeType::Workflow
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let params: WorkflowParams = parse_params(NodeType::Workflow, params)?;
            let Some(access) = &context.run_api else {
                return Err(NodeError::permanent(
                    "workflow nodes need the operator: run this workflow on a cluster \
                     (create a WorkflowRun) instead of with sluice-runner run",
                ));
            };
            let child = child_run_name(&context.run.name, &attempt.node);
            let client = ChildClient {
                http: &context.http,
                access,
                url: format!(
                    "{}{RUN_API_PREFIX}/{}/{}/children/{child}",
                    access.base_url, context.run.namespace, context.run.name
                ),
            };
            let request = ChildRunRequest {
                workflow: params.workflow_ref.clone(),
                input: params.input,
            };
            // Armed before the request: an attempt dropped while the PUT is
            // in flight may still have started the child.
            let mut guard = CancelOnDrop {
                http: context.http.clone(),
                url: client.url.clone(),
                token: access.token.clone(),
                armed: params.wait != Some(false),
            };
            let started = client.create(&request).await?;
            context.logs.log(
                &attempt.node,
                LogLevel::Info,
                &format!(
                    "child run {} of workflow {} is {:?}",
                    started.name, params.workflow_ref, started.phase
                ),
            );
            if params.wait == Some(false) {
                return Ok(json!({"run": started.name}));
            }
            let finished = client.wait(started).await;
            guard.armed = false;
            outcome(&params.workflow_ref, finished?)
        })
    }
}

/// Name of the child run a `workflow` node starts: `<parent>-<node>`, with
/// `name[3]` (a forEach item) becoming `name-3`; lowercase DNS-1123 label
/// characters, at most 63 characters, cut and suffixed with a hash of the
/// full name when longer (so two long names never collide).
pub fn child_run_name(parent: &str, node: &str) -> String {
    let node = node.replace('[', "-").replace(']', "");
    let full = format!("{parent}-{node}");
    let clean: String = full
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    if clean == full && clean.len() <= MAX_CHILD_NAME_LEN {
        return clean;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<String>()
        .chars()
        .take(HASH_LEN)
        .collect();
    let room = MAX_CHILD_NAME_LEN - HASH_LEN - 1;
    let head = clean[..clean.len().min(room)].trim_matches('-');
    let head = if head.is_empty() { "run" } else { head };
    format!("{head}-{hash}")
}

/// The node's result for a child that ended.
fn outcome(workflow: &str, child: ChildRun) -> Result<Value, NodeError> {
    let detail = child
        .message
        .clone()
        .or(child.reason.clone())
        .unwrap_or_else(|| "no message".to_owned());
    match child.phase {
        RunPhase::Succeeded => Ok(json!({
            "run": child.name,
            "output": child.output.unwrap_or(Value::Null),
            "outputTruncated": child.output_truncated,
        })),
        RunPhase::Cancelled => Err(NodeError::permanent(format!(
            "child run {} of workflow {workflow} was cancelled: {detail}",
            child.name
        ))),
        _ => Err(NodeError::permanent(format!(
            "child run {} of workflow {workflow} failed{}: {detail}",
            child.name,
            child
                .failed_node
                .map(|node| format!(" at node {node}"))
                .unwrap_or_default()
        ))),
    }
}

/// Requests about one child run.
struct ChildClient<'a> {
    http: &'a reqwest::Client,
    access: &'a RunApiAccess,
    url: String,
}

/// One request's result: the child, or why not (and whether to try again).
enum Answer {
    Child(ChildRun),
    Transient(String),
    Refused(NodeError),
}

impl ChildClient<'_> {
    /// Starts the child (or finds it), retrying transient failures.
    async fn create(&self, request: &ChildRunRequest) -> Result<ChildRun, NodeError> {
        let started = tokio::time::Instant::now();
        let mut delay = FIRST_POLL;
        loop {
            let sent = self
                .http
                .put(&self.url)
                .bearer_auth(&self.access.token)
                .json(request)
                .send()
                .await;
            match answer(sent, "start the child run").await {
                Answer::Child(child) => return Ok(child),
                Answer::Refused(error) => return Err(error),
                Answer::Transient(message) if started.elapsed() > CREATE_PATIENCE => {
                    return Err(NodeError::retryable(format!(
                        "failed to start the child run through the operator's run API: {message}"
                    )));
                }
                Answer::Transient(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL);
        }
    }

    /// Polls the child until it ends. Transient failures only slow the
    /// polling down: the node's timeout bounds the wait.
    async fn wait(&self, mut child: ChildRun) -> Result<ChildRun, NodeError> {
        let mut delay = FIRST_POLL;
        while !child.phase.is_terminal() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL);
            let sent = self
                .http
                .get(&self.url)
                .bearer_auth(&self.access.token)
                .send()
                .await;
            match answer(sent, "read the child run").await {
                Answer::Child(now) => child = now,
                Answer::Refused(error) => return Err(error),
                Answer::Transient(_) => {}
            }
        }
        Ok(child)
    }
}

async fn answer(sent: Result<reqwest::Response, reqwest::Error>, what: &str) -> Answer {
    let response = match sent {
        Ok(response) => response,
        // reqwest's errors name the URL, never the Authorization header.
        Err(error) => return Answer::Transient(error.to_string()),
    };
    let status = response.status();
    if status.is_success() {
        return match response.json::<ChildRun>().await {
            Ok(child) => Answer::Child(child),
            Err(error) => Answer::Transient(format!("unreadable answer: {error}")),
        };
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|body| body.get("error")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    if status.as_u16() == 429 || status.is_server_error() {
        return Answer::Transient(format!("{status}: {message}"));
    }
    Answer::Refused(NodeError::permanent(format!(
        "failed to {what}: the operator's run API answered {status}: {message}"
    )))
}

/// Cancels the child when the attempt is dropped while waiting for it.
struct CancelOnDrop {
    http: reqwest::Client,
    url: String,
    token: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self.http.delete(&self.url).bearer_auth(&self.token);
        runtime.spawn(async move {
            // Best effort: the parent is going away; the owner reference
            // still removes the child when the parent run is deleted.
            let _ = request.timeout(Duration::from_secs(10)).send().await;
        });
    }
}

#[cfg(test)]
mod tests;

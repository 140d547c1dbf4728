//! Tests of the `workflow` node against a scripted run API on loopback:
//! naming, creation, polling to the end, failure, `wait: false`, the
//! missing operator, and cancelling the child when the wait is dropped.

use super::*;
use crate::node::{Attempt, RunInfo};
use crate::nodes::http::testing::{RecordedLogs, connections, serve};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The scripted run API: answers PUT/GET from a queue (the last answer
/// repeats) and records every request.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(StatusCode, Value)>>,
    requests: Mutex<Vec<String>>,
}

async fn handle(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    script
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {} {token} {body}", uri.path()));
    let mut answers = script.answers.lock().unwrap();
    let (status, body) = if answers.len() > 1 {
        answers.pop_front().unwrap()
    } else {
        answers.front().cloned().unwrap()
    };
    (status, axum::Json(body)).into_response()
}

async fn run_api(answers: Vec<(StatusCode, Value)>) -> (Arc<Script>, String) {
    let script = Arc::new(Script {
        answers: Mutex::new(answers.into()),
        requests: Mutex::default(),
    });
    let router = Router::new().fallback(handle).with_state(script.clone());
    (script, serve(router).await)
}

fn child(phase: &str) -> (StatusCode, Value) {
    (
        StatusCode::OK,
        json!({"name": "parent-1-call", "phase": phase, "output": {"n": 2}, "outputTruncated": false,
               "message": "node boom failed: exit 1", "failedNode": "boom"}),
    )
}

fn context(base_url: Option<String>) -> NodeContext {
    let mut context =
        crate::nodes::http::testing::context(&connections(&[]), Arc::new(RecordedLogs::default()));
    context.run = RunInfo {
        namespace: "team-a".into(),
        workflow: "parent".into(),
        name: "parent-1".into(),
    };
    context.run_api = base_url.map(|base_url| RunApiAccess {
        base_url,
        token: "secret-token".into(),
    });
    context
}

fn attempt(node: &str) -> Attempt {
    Attempt {
        node: node.into(),
        number: 1,
        item: None,
    }
}

#[test]
fn child_names_derive_from_parent_and_node() {
    assert_eq!(child_run_name("parent-1", "call"), "parent-1-call");
    assert_eq!(child_run_name("parent-1", "call[3]"), "parent-1-call-3");
    let long = child_run_name(&"p".repeat(60), "call");
    assert_eq!(long.len(), MAX_CHILD_NAME_LEN);
    assert_ne!(long, child_run_name(&"p".repeat(60), "calm"));
    assert_eq!(long, child_run_name(&"p".repeat(60), "call"));
    let odd = child_run_name("Parent.1", "call");
    assert!(
        odd.starts_with("parent-1-call-") && odd.len() == "parent-1-call-".len() + HASH_LEN,
        "{odd}"
    );
    let cut = child_run_name(&format!("{}-{}", "a".repeat(51), "b".repeat(20)), "x");
    assert!(
        !cut.contains("--") && cut.len() <= MAX_CHILD_NAME_LEN,
        "{cut}"
    );
}

#[tokio::test]
async fn without_the_operator_the_node_explains_itself() {
    let error = WorkflowNode
        .execute(
            json!({"workflowRef": "child"}),
            &attempt("call"),
            &context(None),
        )
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error
            .message
            .starts_with("workflow nodes need the operator: run this workflow on a cluster")
    );
}

#[tokio::test]
async fn the_node_starts_the_child_and_returns_its_output() {
    let (script, url) = run_api(vec![
        child("Pending"),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "restarting"}),
        ),
        child("Running"),
        child("Succeeded"),
    ])
    .await;
    let output = WorkflowNode
        .execute(
            json!({"workflowRef": "child", "input": {"n": 1}}),
            &attempt("call"),
            &context(Some(url)),
        )
        .await
        .unwrap();
    assert_eq!(
        output,
        json!({"run": "parent-1-call", "output": {"n": 2}, "outputTruncated": false})
    );
    let requests = script.requests.lock().unwrap();
    assert_eq!(
        requests[0],
        "PUT /api/v1/runs/team-a/parent-1/children/parent-1-call Bearer secret-token {\"workflow\":\"child\",\"input\":{\"n\":1}}"
    );
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.starts_with("GET /api/v1/runs/team-a/parent-1/children/parent-1-call "))
    );
    assert_eq!(requests.len(), 4, "{requests:?}");
}

#[tokio::test]
async fn a_failed_child_fails_the_node_naming_it() {
    let (_, url) = run_api(vec![child("Running"), child("Failed")]).await;
    let error = WorkflowNode
        .execute(
            json!({"workflowRef": "child"}),
            &attempt("call"),
            &context(Some(url)),
        )
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert_eq!(
        error.message,
        "child run parent-1-call of workflow child failed at node boom: node boom failed: exit 1"
    );
}

#[tokio::test]
async fn without_wait_the_node_returns_the_child_name() {
    let (script, url) = run_api(vec![child("Pending")]).await;
    let output = WorkflowNode
        .execute(
            json!({"workflowRef": "child", "wait": false}),
            &attempt("call"),
            &context(Some(url)),
        )
        .await
        .unwrap();
    assert_eq!(output, json!({"run": "parent-1-call"}));
    assert_eq!(script.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refusal_is_permanent_and_carries_the_operators_message() {
    let (_, url) = run_api(vec![(
        StatusCode::NOT_FOUND,
        json!({"error": "workflow team-a/child not found"}),
    )])
    .await;
    let error = WorkflowNode
        .execute(
            json!({"workflowRef": "child"}),
            &attempt("call"),
            &context(Some(url)),
        )
        .await
        .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error
            .message
            .ends_with("404 Not Found: workflow team-a/child not found"),
        "{error}"
    );
    assert!(!error.message.contains("secret-token"));
}

#[tokio::test]
async fn dropping_the_wait_cancels_the_child() {
    let (script, url) = run_api(vec![child("Running")]).await;
    let context = context(Some(url));
    let attempt = attempt("call");
    let node = WorkflowNode;
    let wait = node.execute(json!({"workflowRef": "child"}), &attempt, &context);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), wait)
            .await
            .is_err()
    );
    for _ in 0..100 {
        if script
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("DELETE "))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no DELETE: {:?}", script.requests.lock().unwrap());
}

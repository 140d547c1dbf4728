//! Protocol tests: the engine runs workflows whose custom nodes call a
//! node server on 127.0.0.1 written here (axum), or a raw socket that
//! hangs up, and each outcome of docs/node-protocol.md is checked.

use super::*;
use crate::clock::SystemClock;
use crate::engine::{Cancellation, Engine, RunRequest, RunResult};
use crate::report::NoReport;
use crate::validate::{compile, parse_spec};
use axum::Json;
use axum::extract::State;
use serde_json::json;
use sluice_crds::{NodePhase, NodePreset, NodeTypeSpec, RunPhase};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    executes: std::sync::Mutex<Vec<Value>>,
    cancels: std::sync::Mutex<Vec<String>>,
    attempts: std::sync::Mutex<HashMap<String, u32>>,
    executed: Notify,
    cancelled: Notify,
}

impl Seen {
    fn cancels(&self) -> Vec<String> {
        self.cancels.lock().unwrap().clone()
    }

    async fn wait_for_cancel(&self) -> Vec<String> {
        loop {
            let notified = self.cancelled.notified();
            let cancels = self.cancels();
            if !cancels.is_empty() {
                return cancels;
            }
            tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .expect("the runner sends /cancel");
        }
    }
}

/// `params.mode` picks the answer: `echo`, `flaky` (a retryable error on
/// the first attempt of each node), `permanent`, `hang`, `malformed`.
async fn execute(
    State(seen): State<Arc<Seen>>,
    Json(request): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    seen.executes.lock().unwrap().push(request.clone());
    seen.executed.notify_waiters();
    let mode = request["params"]["mode"]
        .as_str()
        .unwrap_or("echo")
        .to_owned();
    match mode.as_str() {
        "flaky" => {
            let node = request["context"]["node"].as_str().unwrap().to_owned();
            let count = {
                let mut attempts = seen.attempts.lock().unwrap();
                let count = attempts.entry(node).or_default();
                *count += 1;
                *count
            };
            if count == 1 {
                Json(json!({"error": {"message": "busy, try again", "retryable": true}})).into_response()
            } else {
                Json(json!({"output": {"attempt": request["context"]["attempt"]}})).into_response()
            }
        }
        "permanent" => (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"message": "the name \"\" is empty: set params.name", "retryable": false}})),
        )
            .into_response(),
        "hang" => futures::future::pending().await,
        "malformed" => "<html>oops</html>".into_response(),
        "unavailable" => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response(),
        _ => Json(json!({"output": {
            "params": request["params"],
            "item": request.get("item"),
            "index": request.get("index"),
            "context": request["context"],
            "id": request["id"],
        }}))
        .into_response(),
    }
}

async fn cancel(State(seen): State<Arc<Seen>>, Json(request): Json<Value>) {
    seen.cancels
        .lock()
        .unwrap()
        .push(request["id"].as_str().unwrap_or_default().to_owned());
    seen.cancelled.notify_waiters();
}

async fn node_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let router = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async { Json(json!({"ok": true})) }),
        )
        .route("/execute", axum::routing::post(execute))
        .route("/cancel", axum::routing::post(cancel))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), seen)
}

/// A server that is healthy but hangs up on every `/execute`, as a
/// crashing process does.
async fn crashing_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0; 8192];
                let Ok(read) = socket.read(&mut buffer).await else {
                    return;
                };
                if buffer[..read].starts_with(b"GET /healthz") {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                        )
                        .await;
                }
                // Anything else: drop the socket without an answer.
            });
        }
    });
    format!("http://{address}")
}

fn greeter() -> NodeTypeSpec {
    NodeTypeSpec {
        version: "1.0.0".into(),
        image: "example/greeter:1".into(),
        params_schema: Some(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "mode": {"type": "string"}}
        })),
        presets: vec![NodePreset {
            name: "polite".into(),
            description: None,
            params: json!({"greeting": "Good day", "mode": "echo"}),
        }],
        ..NodeTypeSpec::default()
    }
}

fn custom_node(url: &str) -> CustomNode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut servers = NodeServers::new();
    servers.insert("greeter", url);
    let mut types = CustomTypes::new();
    types.insert("greeter", Scope::NodeType, greeter());
    CustomNode::new(servers, types, ServerHint::Local).with_start_timeout(Duration::from_secs(5))
}

async fn run_with(node: CustomNode, nodes: Value, cancel: Cancellation) -> RunResult {
    let spec = parse_spec(&json!({"nodes": nodes})).expect("a workflow");
    let workflow = compile(&spec).expect("a valid workflow");
    let mut catalog = crate::nodes::Catalog::local(Arc::new(SystemClock));
    catalog.register(Arc::new(node));
    let engine = Engine::new(catalog, Arc::new(SystemClock));
    let request = RunRequest {
        cancel,
        ..RunRequest::new(json!({"names": ["Ada", "Grace"]}))
    };
    engine.run(&workflow, request, Arc::new(NoReport)).await
}

async fn run(url: &str, nodes: Value) -> RunResult {
    run_with(custom_node(url), nodes, Cancellation::new()).await
}

#[tokio::test]
async fn a_custom_node_gets_params_item_and_context_and_returns_output() {
    let (url, _seen) = node_server().await;
    let result = run(
        &url,
        json!([{
            "name": "greet",
            "forEach": ".input.names",
            "custom": {"type": "greeter", "preset": "polite", "params": {"name": "${{ .item }}"}}
        }]),
    )
    .await;
    assert_eq!(
        result.summary.phase,
        RunPhase::Succeeded,
        "{:?}",
        result.summary
    );
    let output = result.node("greet").unwrap().output.clone().unwrap();
    assert_eq!(
        output[1]["params"],
        json!({"greeting": "Good day", "mode": "echo", "name": "Grace"})
    );
    assert_eq!(output[1]["item"], json!("Grace"));
    assert_eq!(output[1]["index"], json!(1));
    assert_eq!(
        output[1]["context"],
        json!({"run": {"namespace": "default", "workflow": "workflow", "name": "local"}, "node": "greet[1]", "attempt": 1})
    );
    assert_eq!(output[0]["id"], json!("default/local/greet[0]/1"));
}

#[tokio::test]
async fn a_retryable_error_is_retried_and_a_permanent_one_is_not() {
    let (url, seen) = node_server().await;
    let result = run(
        &url,
        json!([
            {"name": "flaky", "custom": {"type": "greeter", "params": {"mode": "flaky"}},
             "retry": {"limit": 2, "backoff": {"initial": "10ms"}}},
            {"name": "flaky-once", "custom": {"type": "greeter", "params": {"mode": "flaky"}},
             "continueOnError": true},
            {"name": "refused", "custom": {"type": "greeter", "params": {"mode": "permanent"}},
             "retry": {"limit": 3, "backoff": {"initial": "10ms"}}}
        ]),
    )
    .await;
    let flaky = result.node("flaky").unwrap();
    assert_eq!(flaky.phase, NodePhase::Succeeded);
    assert_eq!(flaky.attempts, 2);
    assert_eq!(flaky.output, Some(json!({"attempt": 2})));
    let once = result.node("flaky-once").unwrap();
    assert_eq!(once.phase, NodePhase::Failed);
    assert_eq!(
        once.error.as_deref(),
        Some("custom type \"greeter\": busy, try again")
    );
    let refused = result.node("refused").unwrap();
    assert_eq!(refused.phase, NodePhase::Failed);
    assert_eq!(refused.attempts, 1);
    assert_eq!(
        refused.error.as_deref(),
        Some("custom type \"greeter\": the name \"\" is empty: set params.name")
    );
    let refused_calls = seen
        .executes
        .lock()
        .unwrap()
        .iter()
        .filter(|request| request["context"]["node"] == "refused")
        .count();
    assert_eq!(refused_calls, 1);
}

#[tokio::test]
async fn a_timeout_fails_the_attempt_and_cancels_it_on_the_server() {
    let (url, seen) = node_server().await;
    let result = run(
        &url,
        json!([{"name": "slow", "timeout": "200ms", "custom": {"type": "greeter", "params": {"mode": "hang"}}}]),
    )
    .await;
    let slow = result.node("slow").unwrap();
    assert_eq!(slow.phase, NodePhase::Failed);
    assert!(
        slow.error
            .as_deref()
            .unwrap()
            .starts_with("timed out after"),
        "{slow:?}"
    );
    assert_eq!(seen.wait_for_cancel().await, ["default/local/slow/1"]);
}

#[tokio::test]
async fn cancelling_the_run_cancels_the_attempt_on_the_server() {
    let (url, seen) = node_server().await;
    let cancel = Cancellation::new();
    let executed = seen.executed.notified();
    let run = tokio::spawn(run_with(
        custom_node(&url),
        json!([{"name": "wait-here", "custom": {"type": "greeter", "params": {"mode": "hang"}}}]),
        cancel.clone(),
    ));
    executed.await;
    cancel.cancel();
    let result = run.await.unwrap();
    assert_eq!(result.summary.phase, RunPhase::Cancelled);
    assert_eq!(
        result.node("wait-here").unwrap().phase,
        NodePhase::Cancelled
    );
    assert_eq!(seen.wait_for_cancel().await, ["default/local/wait-here/1"]);
}

#[tokio::test]
async fn a_malformed_answer_fails_the_node_at_once_and_says_what_was_wrong() {
    let (url, _seen) = node_server().await;
    let result = run(
        &url,
        json!([
            {"name": "garbled", "custom": {"type": "greeter", "params": {"mode": "malformed"}},
             "retry": {"limit": 3, "backoff": {"initial": "10ms"}}, "continueOnError": true},
            {"name": "overloaded", "custom": {"type": "greeter", "params": {"mode": "unavailable"}},
             "retry": {"limit": 1, "backoff": {"initial": "10ms"}}}
        ]),
    )
    .await;
    let garbled = result.node("garbled").unwrap();
    assert_eq!(garbled.phase, NodePhase::Failed);
    assert_eq!(garbled.attempts, 1);
    let error = garbled.error.as_deref().unwrap();
    assert!(
        error.contains("answered with a malformed body (HTTP 200 OK): the body is not JSON"),
        "{error}"
    );
    assert!(error.contains("Body: <html>oops</html>"), "{error}");
    let overloaded = result.node("overloaded").unwrap();
    assert_eq!(
        overloaded.attempts, 2,
        "a 5xx without an answer is retryable"
    );
    assert!(
        overloaded
            .error
            .as_deref()
            .unwrap()
            .contains("answered HTTP 503 Service Unavailable")
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_or_never_starts_fails_the_node_with_where_to_look() {
    let crashing = crashing_server().await;
    let result = run(
        &crashing,
        json!([{"name": "crash", "custom": {"type": "greeter"}}]),
    )
    .await;
    let error = result.node("crash").unwrap().error.clone().unwrap();
    assert!(error.contains("did not answer"), "{error}");
    assert!(error.contains("its container may have crashed"), "{error}");
    assert!(error.contains("--node-server greeter=URL"), "{error}");

    // Nothing listens on this port: the server never becomes healthy.
    let unused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let node =
        custom_node(&format!("http://{unused}")).with_start_timeout(Duration::from_millis(300));
    let result = run_with(
        node,
        json!([{"name": "absent", "custom": {"type": "greeter"}}]),
        Cancellation::new(),
    )
    .await;
    let error = result.node("absent").unwrap().error.clone().unwrap();
    assert!(
        error.contains("did not become healthy within 300ms"),
        "{error}"
    );
}

#[tokio::test]
async fn params_breaking_the_schema_or_an_unknown_type_fail_before_any_call() {
    let (url, seen) = node_server().await;
    let result = run(
        &url,
        json!([
            {"name": "bad", "custom": {"type": "greeter", "params": {"name": 7}}, "continueOnError": true},
            {"name": "unknown", "custom": {"type": "stranger"}}
        ]),
    )
    .await;
    assert_eq!(
        result.node("bad").unwrap().error.as_deref(),
        Some("params.name: expected string, got integer")
    );
    assert!(
        result
            .node("unknown")
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .starts_with("no node server for custom type \"stranger\"")
    );
    assert!(seen.executes.lock().unwrap().is_empty());
}

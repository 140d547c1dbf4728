//! Engine semantics under a manual clock (tokio's paused time), with a
//! scripted node type standing in for real I/O.

use super::*;
use crate::clock::ManualClock;
use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError};
use crate::report::{EventKind, Recorder};
use crate::validate::compile;
use serde_json::{Value, json};
use sluice_crds::workflow::{Backoff, RetryPolicy, RunWhen};
use sluice_crds::{NodePhase, NodeSpec, NodeType, RunPhase, Workflow};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod data;

/// An `http`-typed node whose `url` is a script: `ok`, `hang`, `fail`,
/// `flaky:N` (N retryable failures, then success), `sleep:MS`, `big:BYTES`.
struct Scripted {
    clock: ManualClock,
    calls: Mutex<Vec<(String, u32, Duration)>>,
    flaky: Mutex<std::collections::HashMap<String, u32>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Scripted {
    fn new(clock: ManualClock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            calls: Mutex::default(),
            flaky: Mutex::default(),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> Vec<(String, u32, Duration)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Node for Scripted {
    fn node_type(&self) -> NodeType {
        NodeType::Http
    }

    fn parameter_schema(&self) -> Value {
        json!({})
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let script = params["url"].as_str().unwrap_or("ok").to_owned();
            self.calls.lock().unwrap().push((
                attempt.node.clone(),
                attempt.number,
                self.clock.elapsed(),
            ));
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(now, Ordering::SeqCst);
            struct Done<'a>(&'a AtomicUsize);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _done = Done(&self.running);
            let (verb, argument) = script.split_once(':').unwrap_or((&script, ""));
            match verb {
                "ok" => Ok(json!({"node": attempt.node})),
                "hang" => futures::future::pending().await,
                "fail" => Err(NodeError::permanent("scripted failure")),
                "flaky" => {
                    let mut flaky = self.flaky.lock().unwrap();
                    let failures = flaky.entry(attempt.node.clone()).or_default();
                    if *failures < argument.parse::<u32>().unwrap() {
                        *failures += 1;
                        Err(NodeError::retryable(format!("flaky failure {failures}")))
                    } else {
                        Ok(json!("recovered"))
                    }
                }
                "sleep" => {
                    let millis: u64 = argument.parse().unwrap();
                    self.clock.sleep(Duration::from_millis(millis)).await;
                    Ok(json!(millis))
                }
                "big" => Ok(json!("x".repeat(argument.parse().unwrap()))),
                other => panic!("unknown script {other}"),
            }
        })
    }
}

fn scripted(name: &str, script: &str) -> NodeSpec {
    NodeSpec::http_get(name, script)
}

struct Harness {
    clock: ManualClock,
    scripted: Arc<Scripted>,
    engine: Engine,
    recorder: Arc<Recorder>,
}

fn harness() -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = ManualClock::new();
    let scripted = Scripted::new(clock.clone());
    let mut catalog = Catalog::local(Arc::new(clock.clone()));
    catalog.register(scripted.clone());
    let engine = Engine::new(catalog, Arc::new(clock.clone())).with_jitter_seed(42);
    Harness {
        clock,
        scripted,
        engine,
        recorder: Arc::new(Recorder::default()),
    }
}

impl Harness {
    async fn run(&self, workflow: Workflow, input: Value) -> RunResult {
        self.run_request(workflow, RunRequest::new(input)).await
    }

    async fn run_request(&self, workflow: Workflow, request: RunRequest) -> RunResult {
        let compiled = compile(&workflow.spec).unwrap_or_else(|e| panic!("{e:#?}"));
        self.engine
            .run(&compiled, request, self.recorder.clone())
            .await
    }
}

fn phases(result: &RunResult) -> Vec<(&str, NodePhase)> {
    result
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.phase))
        .collect()
}

fn retry(limit: u32, initial: &str, jitter: u32) -> Option<RetryPolicy> {
    Some(RetryPolicy {
        limit,
        backoff: Some(Backoff {
            initial: Some(sluice_crds::Duration::parse(initial).unwrap()),
            max: Some(sluice_crds::Duration::parse("5s").unwrap()),
            factor: Some(2),
            jitter_percent: Some(jitter),
        }),
    })
}

#[tokio::test(start_paused = true)]
async fn nodes_read_input_and_upstream_outputs_and_sinks_form_the_output() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform("greet", r#""hello " + .input.name"#))
        .with_node(
            NodeSpec::transform("shout", ".nodes.greet.output | ascii_upcase").needs(&["greet"]),
        )
        .with_node(NodeSpec::transform("count", ".nodes.greet.output | length").needs(&["greet"]));
    let result = h.run(workflow, json!({"name": "Ada"})).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded);
    assert_eq!(
        result.summary.output,
        json!({"shout": "HELLO ADA", "count": 9})
    );
    assert_eq!(result.summary.counts.succeeded, 3);
}

#[tokio::test(start_paused = true)]
async fn a_false_if_skips_the_node_and_skips_propagate_unless_run_when_allows() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform("gate", "false"))
        .with_node(
            NodeSpec::transform("branch", "1")
                .needs(&["gate"])
                .when(".nodes.gate.output"),
        )
        .with_node(NodeSpec::transform("after", "2").needs(&["branch"]))
        .with_node(
            NodeSpec::transform("tolerant", "3")
                .needs(&["branch", "gate"])
                .with(|n| n.run_when = Some(RunWhen::NoneFailed)),
        )
        .with_node(
            NodeSpec::transform("always", ".nodes.branch.phase")
                .needs(&["after"])
                .with(|n| n.run_when = Some(RunWhen::AllDone)),
        );
    let result = h.run(workflow, json!({})).await;
    assert_eq!(
        phases(&result),
        vec![
            ("gate", NodePhase::Succeeded),
            ("branch", NodePhase::Skipped),
            ("after", NodePhase::Skipped),
            ("tolerant", NodePhase::Succeeded),
            ("always", NodePhase::Succeeded),
        ]
    );
    assert_eq!(
        result.node("branch").unwrap().reason.as_deref(),
        Some("its if condition was false")
    );
    assert!(
        result
            .node("after")
            .unwrap()
            .reason
            .as_deref()
            .unwrap()
            .contains("\"branch\" was skipped")
    );
    assert_eq!(
        result.node("always").unwrap().output,
        Some(json!("Skipped"))
    );
    assert_eq!(result.summary.phase, RunPhase::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn run_when_decides_what_follows_a_failure_allowed_by_continue_on_error() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("broken", "fail").with(|n| n.continue_on_error = Some(true)))
        .with_node(NodeSpec::transform("strict", "1").needs(&["broken"]))
        .with_node(
            NodeSpec::transform("lenient", "2")
                .needs(&["broken"])
                .with(|n| n.run_when = Some(RunWhen::NoneFailed)),
        )
        .with_node(
            NodeSpec::transform("cleanup", ".nodes.broken.error")
                .needs(&["broken"])
                .with(|n| n.run_when = Some(RunWhen::AllDone)),
        );
    let result = h.run(workflow, json!({})).await;
    assert_eq!(
        phases(&result),
        vec![
            ("broken", NodePhase::Failed),
            ("strict", NodePhase::Skipped),
            ("lenient", NodePhase::Skipped),
            ("cleanup", NodePhase::Succeeded),
        ]
    );
    assert_eq!(
        result.node("cleanup").unwrap().output,
        Some(json!("scripted failure"))
    );
    assert_eq!(result.summary.phase, RunPhase::Succeeded, "continueOnError");
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_only_all_done_nodes_start() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("slow", "sleep:1000"))
        .with_node(scripted("broken", "fail"))
        .with_node(NodeSpec::transform("next", "1").needs(&["slow"]))
        .with_node(
            NodeSpec::transform("cleanup", "2")
                .needs(&["slow"])
                .with(|n| n.run_when = Some(RunWhen::AllDone)),
        );
    let result = h.run(workflow, json!({})).await;
    assert_eq!(
        phases(&result),
        vec![
            ("slow", NodePhase::Succeeded),
            ("broken", NodePhase::Failed),
            ("next", NodePhase::Skipped),
            ("cleanup", NodePhase::Succeeded),
        ]
    );
    assert_eq!(
        result.node("next").unwrap().reason.as_deref(),
        Some("not started: the run failed at node \"broken\"")
    );
    assert_eq!(result.summary.phase, RunPhase::Failed);
    assert_eq!(result.summary.reason, "NodeFailed");
    assert_eq!(result.summary.failed_node.as_deref(), Some("broken"));
    assert_eq!(
        result.summary.message.as_deref(),
        Some("node \"broken\" failed: scripted failure")
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_keeps_item_order_under_its_parallelism_bound() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(
        scripted("each", "sleep:${{ .item }}")
            .for_each(".input.delays")
            .with(|n| n.parallelism = Some(2)),
    );
    let result = h
        .run(workflow, json!({"delays": [400, 100, 300, 200, 50]}))
        .await;
    let each = result.node("each").unwrap();
    assert_eq!(each.phase, NodePhase::Succeeded);
    assert_eq!(each.output, Some(json!([400, 100, 300, 200, 50])));
    assert_eq!(h.scripted.most_running.load(Ordering::SeqCst), 2);
    let labels: Vec<String> = h.scripted.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(labels[0], "each[0]");
    assert_eq!(labels.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn for_each_over_a_non_list_fails_the_node() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(scripted("each", "ok").for_each(".input"));
    let result = h.run(workflow, json!({"a": 1})).await;
    let error = result.node("each").unwrap().error.clone().unwrap();
    assert!(error.starts_with("forEach must yield a list"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn the_run_parallelism_bounds_running_nodes() {
    let h = harness();
    let mut workflow = Workflow::fixture("w").with_spec(|s| s.parallelism = Some(2));
    for index in 0..5 {
        workflow = workflow.with_node(scripted(&format!("n{index}"), "sleep:100"));
    }
    let result = h.run(workflow, json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded);
    assert_eq!(h.scripted.most_running.load(Ordering::SeqCst), 2);
    assert_eq!(h.clock.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_up_to_the_limit() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("flaky", "flaky:3").with(|n| n.retry = retry(5, "1s", 0)));
    let result = h.run(workflow, json!({})).await;
    let node = result.node("flaky").unwrap();
    assert_eq!(node.phase, NodePhase::Succeeded);
    assert_eq!(node.attempts, 4);
    let times: Vec<Duration> = h.scripted.calls().into_iter().map(|c| c.2).collect();
    let secs = |s: u64| Duration::from_secs(s);
    assert_eq!(times, vec![secs(0), secs(1), secs(3), secs(7)]);
    assert_eq!(h.clock.sleeps(), vec![secs(1), secs(2), secs(4)]);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_limit_and_at_permanent_errors() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("flaky", "flaky:9").with(|n| n.retry = retry(2, "1s", 0)))
        .with_node(scripted("broken", "fail").with(|n| {
            n.retry = retry(5, "1s", 0);
            n.continue_on_error = Some(true);
        }));
    let result = h.run(workflow, json!({})).await;
    let flaky = result.node("flaky").unwrap();
    assert_eq!(flaky.attempts, 3);
    assert_eq!(
        flaky.error.as_deref(),
        Some("flaky failure 3 (attempt 3 of 3)")
    );
    assert_eq!(result.node("broken").unwrap().attempts, 1);
    let logs: Vec<String> = h
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        vec![
            "attempt 1 of 3 failed: flaky failure 1; retrying in 1.0s",
            "attempt 2 of 3 failed: flaky failure 2; retrying in 2.0s",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_each_backoff_from_the_seeded_source() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("flaky", "flaky:3").with(|n| n.retry = retry(3, "1s", 50)));
    h.run(workflow, json!({})).await;
    let settings = compile(
        &Workflow::fixture("x")
            .with_node(scripted("flaky", "ok").with(|n| n.retry = retry(3, "1s", 50)))
            .spec,
    )
    .unwrap()
    .nodes[0]
        .retry
        .clone();
    let mut jitter = crate::clock::Jitter::seeded(42);
    let expected: Vec<Duration> = (1..=3)
        .map(|n| settings.delay(n, jitter.next_unit()))
        .collect();
    assert_eq!(h.clock.sleeps(), expected);
    assert!(
        expected
            .iter()
            .zip([1000u128, 2000, 4000])
            .all(|(d, base)| { (base / 2..=base * 3 / 2).contains(&d.as_millis()) })
    );
    assert_ne!(expected[0], Duration::from_secs(1), "jitter moved the wait");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_the_attempt_and_counts_as_retryable() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(scripted("stuck", "hang").with(|n| {
        n.timeout = Some(sluice_crds::Duration::parse("5s").unwrap());
        n.retry = retry(1, "1s", 0);
    }));
    let result = h.run(workflow, json!({})).await;
    let node = result.node("stuck").unwrap();
    assert_eq!(node.phase, NodePhase::Failed);
    assert_eq!(node.attempts, 2);
    assert_eq!(
        node.error.as_deref(),
        Some("timed out after 5.0s (attempt 2 of 2)")
    );
    assert_eq!(h.clock.elapsed(), Duration::from_secs(11));
    assert_eq!(node.duration_ms, 11_000.0);
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_running_nodes_and_reports_them_cancelled() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("stuck", "hang"))
        .with_node(NodeSpec::transform("later", "1").needs(&["stuck"]));
    let request = RunRequest::new(json!({}));
    let cancel = request.cancel.clone();
    let clock = h.clock.clone();
    tokio::spawn(async move {
        clock.sleep(Duration::from_secs(2)).await;
        cancel.cancel();
    });
    let result = h.run_request(workflow, request).await;
    assert_eq!(result.summary.phase, RunPhase::Cancelled);
    assert_eq!(
        phases(&result),
        vec![
            ("stuck", NodePhase::Cancelled),
            ("later", NodePhase::Cancelled)
        ]
    );
    assert_eq!(result.node("stuck").unwrap().duration_ms, 2000.0);
    assert_eq!(
        h.scripted.running.load(Ordering::SeqCst),
        0,
        "attempt dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn the_run_deadline_fails_the_run_and_cancels_its_nodes() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_spec(|s| s.active_deadline_seconds = Some(3))
        .with_node(scripted("quick", "ok"))
        .with_node(scripted("stuck", "hang"));
    let result = h.run(workflow, json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Failed);
    assert_eq!(result.summary.reason, "DeadlineExceeded");
    assert_eq!(
        phases(&result),
        vec![
            ("quick", NodePhase::Succeeded),
            ("stuck", NodePhase::Cancelled)
        ]
    );
    assert_eq!(h.clock.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_output_expression_shapes_the_run_output() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_spec(|s| s.output = Some("{n: .nodes.a.output, who: .input.who}".into()))
        .with_node(NodeSpec::transform("a", "41 + 1"));
    let result = h.run(workflow, json!({"who": "me"})).await;
    assert_eq!(result.summary.output, json!({"n": 42, "who": "me"}));
}

#[tokio::test(start_paused = true)]
async fn an_if_that_fails_to_evaluate_fails_the_node() {
    let h = harness();
    let workflow =
        Workflow::fixture("w").with_node(NodeSpec::transform("a", "1").when(".input.x + 1"));
    let result = h.run(workflow, json!({"x": "text"})).await;
    let node = result.node("a").unwrap();
    assert_eq!(node.phase, NodePhase::Failed);
    assert!(
        node.error
            .as_deref()
            .unwrap()
            .starts_with("failed to evaluate if")
    );
}

#[tokio::test(start_paused = true)]
async fn wait_nodes_sleep_on_the_injected_clock() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(NodeSpec::wait("pause", "90s"));
    let result = h.run(workflow, json!({})).await;
    assert_eq!(
        result.node("pause").unwrap().output,
        Some(json!({"waitedMs": 90000}))
    );
    assert_eq!(h.clock.elapsed(), Duration::from_secs(90));
}

#[tokio::test(start_paused = true)]
async fn events_are_numbered_in_order() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform("a", "1"))
        .with_node(NodeSpec::transform("b", "2").needs(&["a"]));
    h.run(workflow, json!({})).await;
    let events = h.recorder.events();
    let sequence: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequence, (1..=events.len() as u64).collect::<Vec<_>>());
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "runStarted",
            "nodeStarted",
            "attemptStarted",
            "nodeFinished",
            "nodeStarted",
            "attemptStarted",
            "nodeFinished",
            "runFinished"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn templates_render_item_and_index_for_each_item() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(
        NodeSpec::fail("never", "x")
            .with(|n| {
                n.fail = None;
                n.shell = None;
            })
            .with(|n| {
                n.transform = Some(sluice_crds::nodes::TransformNode {
                    jq: "\"\\(.index):\\(.item)\"".into(),
                })
            })
            .for_each("[\"a\", \"b\"]"),
    );
    let result = h.run(workflow, json!({})).await;
    assert_eq!(
        result.node("never").unwrap().output,
        Some(json!(["0:a", "1:b"]))
    );
}

#[tokio::test(start_paused = true)]
async fn reused_nodes_succeed_with_their_earlier_output_without_running() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(scripted("fetch", "ok"))
        .with_node(
            NodeSpec::transform("count", ".nodes.fetch.output.items | length").needs(&["fetch"]),
        )
        .with_node(scripted("notify", "ok").needs(&["count"]));
    let mut request = RunRequest::new(json!({}));
    request
        .reused
        .insert("fetch".into(), json!({"items": [1, 2, 3]}));
    let result = h.run_request(workflow, request).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded);
    let fetch = result.node("fetch").unwrap();
    assert_eq!(
        (fetch.phase, fetch.attempts, fetch.output.clone()),
        (NodePhase::Succeeded, 0, Some(json!({"items": [1, 2, 3]})))
    );
    assert!(fetch.reason.as_deref().unwrap().contains("reused"));
    assert_eq!(result.node("count").unwrap().output, Some(json!(3)));
    let ran: Vec<String> = h.scripted.calls().into_iter().map(|c| c.0).collect();
    assert_eq!(ran, ["notify"], "only the node not reused ran");
}

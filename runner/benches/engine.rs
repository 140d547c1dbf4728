//! Engine benchmarks: the workloads of `benches/workloads/` (50 chained
//! transforms; 1,000 forEach items with an `if` branch, and the same at
//! 20,000 items; 20 sequential http GETs to a loopback axum server), each
//! compiled once and run per iteration, plus the engine's own overhead per
//! node at 1,000 nodes with a no-op node type, and the per-call overhead
//! of a `custom` node on loopback (a node server doing no work, so all the
//! time measured is the protocol's: JSON, HTTP, the runner's checks), with
//! its p50/p99 printed. Whole-process time and peak memory are measured on
//! the release binary instead (README).

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use sluice_crds::NodeType;
use sluice_crds::RunPhase;
use sluice_crds::workflow::RunWhen;
use sluice_runner::clock::SystemClock;
use sluice_runner::compiled::{CompiledNode, CompiledWorkflow, RetrySettings};
use sluice_runner::engine::{Engine, RunRequest};
use sluice_runner::expr::Template;
use sluice_runner::node::{Attempt, BoxFuture, Node, NodeContext, NodeError};
use sluice_runner::nodes::Catalog;
use sluice_runner::report::NoReport;
use std::path::PathBuf;
use std::sync::Arc;

fn workload(name: &str) -> CompiledWorkflow {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/workloads")
        .join(name);
    sluice_runner::cli::load(&path)
        .expect("workload is valid")
        .1
}

fn engine(catalog: Catalog) -> Engine {
    Engine::new(catalog, Arc::new(SystemClock))
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn run(
    runtime: &tokio::runtime::Runtime,
    engine: &Engine,
    workflow: &CompiledWorkflow,
    request: RunRequest,
) -> Value {
    let result = runtime.block_on(engine.run(workflow, request, Arc::new(NoReport)));
    assert_eq!(
        result.summary.phase,
        RunPhase::Succeeded,
        "{:?}",
        result.summary
    );
    result.output
}

fn transforms(c: &mut Criterion) {
    let runtime = runtime();
    let engine = engine(Catalog::local(Arc::new(SystemClock)));
    let request = RunRequest::new(json!({}));
    let chain = workload("chain50.yaml");
    c.bench_function("chain of 50 transforms", |b| {
        b.iter(|| run(&runtime, &engine, &chain, request.clone()))
    });
    let fan_out = workload("foreach1000.yaml");
    c.bench_function("forEach over 1000 items with an if branch", |b| {
        b.iter(|| run(&runtime, &engine, &fan_out, request.clone()))
    });
    let large = workload("foreach20000.yaml");
    let mut group = c.benchmark_group("large");
    group.sample_size(10);
    group.bench_function("forEach over 20000 items with an if branch", |b| {
        b.iter(|| {
            let output = run(&runtime, &engine, &large, request.clone());
            assert_eq!(output, json!({"items": 20000, "fizzes": 6667}));
        })
    });
    group.finish();
}

fn http(c: &mut Criterion) {
    let runtime = runtime();
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let router = axum::Router::new().route(
            "/ping",
            axum::routing::get(|| async { axum::Json(json!({"pong": true})) }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    });
    let engine = engine(Catalog::local(Arc::new(SystemClock)));
    let request = RunRequest::new(json!({"base": format!("http://{address}")}));
    let workflow = workload("http20.yaml");
    c.bench_function("20 sequential http GETs on loopback", |b| {
        b.iter(|| run(&runtime, &engine, &workflow, request.clone()))
    });
}

/// A node type that does nothing, to measure the engine alone.
struct Noop;

impl Node for Noop {
    fn node_type(&self) -> NodeType {
        NodeType::Fail
    }

    fn parameter_schema(&self) -> Value {
        json!({})
    }

    fn execute<'a>(
        &'a self,
        _: Value,
        _: &'a Attempt,
        _: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(std::future::ready(Ok(Value::Null)))
    }
}

/// 1,000 no-op nodes; with `chained`, each needs the previous one.
fn noop_workflow(chained: bool) -> CompiledWorkflow {
    let count = 1000;
    let nodes = (0..count)
        .map(|index| CompiledNode {
            name: format!("n{index}"),
            node_type: NodeType::Fail,
            needs: if chained && index > 0 {
                vec![index - 1]
            } else {
                vec![]
            },
            dependants: if chained && index + 1 < count {
                vec![index + 1]
            } else {
                vec![]
            },
            run_when: RunWhen::AllSucceeded,
            condition: None,
            for_each: None,
            parallelism: None,
            params: Template::Literal(json!({})),
            retry: RetrySettings::none(),
            timeout: None,
            continue_on_error: false,
        })
        .collect();
    CompiledWorkflow {
        nodes,
        output: None,
        parallelism: 10,
        deadline: None,
        env: serde_json::Map::new(),
        memory_budget: None,
    }
}

fn overhead(c: &mut Criterion) {
    let runtime = runtime();
    let mut catalog = Catalog::empty();
    catalog.register(Arc::new(Noop));
    let engine = engine(catalog);
    let request = RunRequest::new(json!({}));
    for (label, chained) in [
        ("1000 chained no-op nodes", true),
        ("1000 independent no-op nodes", false),
    ] {
        let workflow = noop_workflow(chained);
        c.bench_function(label, |b| {
            b.iter_batched(
                || request.clone(),
                |request| {
                    run(&runtime, &engine, &workflow, request);
                },
                BatchSize::SmallInput,
            )
        });
    }
}

/// A node server on loopback that answers every `/execute` at once.
fn start_node_server(runtime: &tokio::runtime::Runtime) -> String {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let router = axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(|| async { axum::Json(json!({"ok": true})) }),
            )
            .route(
                "/execute",
                axum::routing::post(|axum::Json(request): axum::Json<Value>| async move {
                    axum::Json(json!({"output": {"greeting": request["params"]["name"]}}))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    })
}

/// Percentile `p` (0–100) of sorted durations.
fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn custom(c: &mut Criterion) {
    use sluice_runner::nodes::custom::{CustomNode, CustomTypes, NodeServers, ServerHint};
    use std::time::{Duration, Instant};
    let runtime = runtime();
    let url = start_node_server(&runtime);
    let mut servers = NodeServers::new();
    servers.insert("greeter", url);
    let node = CustomNode::new(servers, CustomTypes::new(), ServerHint::Local);
    let context = NodeContext {
        run: sluice_runner::node::RunInfo::default(),
        connections: Arc::default(),
        http: reqwest::Client::new(),
        logs: Arc::new(sluice_runner::node::NoLogs),
        run_api: None,
        memory: Arc::new(sluice_runner::budget::MemoryBudget::new(
            1 << 30,
            sluice_runner::budget::BudgetSource::Default,
        )),
    };
    let attempt = Attempt {
        node: "greet".into(),
        number: 1,
        item: None,
    };
    let params = json!({"type": "greeter", "params": {"name": "Ada"}});
    let call = || {
        runtime
            .block_on(node.execute(params.clone(), &attempt, &context))
            .expect("the node server answers")
    };
    // The first call waits for /healthz and opens the connection.
    call();
    let mut samples: Vec<Duration> = Vec::new();
    c.bench_function("one custom node call on loopback", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                call();
                let took = start.elapsed();
                samples.push(took);
                total += took;
            }
            total
        })
    });
    samples.sort();
    if !samples.is_empty() {
        println!(
            "custom node call on loopback over {} calls: p50 {:?}, p99 {:?}, max {:?}",
            samples.len(),
            percentile(&samples, 50.0),
            percentile(&samples, 99.0),
            samples[samples.len() - 1]
        );
    }
    let workflow = workload("custom1.yaml");
    let mut catalog = Catalog::local(Arc::new(SystemClock));
    let mut servers = NodeServers::new();
    servers.insert("greeter", start_node_server(&runtime));
    catalog.register(Arc::new(CustomNode::new(
        servers,
        CustomTypes::new(),
        ServerHint::Local,
    )));
    let engine = engine(catalog);
    let request = RunRequest::new(json!({"name": "Ada"}));
    c.bench_function("a run of one custom node on loopback", |b| {
        b.iter(|| run(&runtime, &engine, &workflow, request.clone()))
    });
}

criterion_group!(benches, transforms, http, overhead, custom);
criterion_main!(benches);

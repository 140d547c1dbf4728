//! Webhook latency: a signed `POST /hooks/…` over real HTTP on loopback
//! until the run is created, through the in-memory backend (the server's
//! own cost: routing, body read, HMAC check, rate limit, run building).
//!
//! Two measurements:
//! - criterion's `webhook_request_to_run` (one request at a time);
//! - an open-loop load of 200 requests per second for 5 seconds (1,000
//!   requests, each sent on schedule whether or not earlier ones finished),
//!   printing p50, p99 and max. Target: p99 ≤ 20 ms.
//!
//! Run: `cargo bench -p sluice-operator --bench webhooks`.

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_crds::common::SecretKeyReference;
use sluice_crds::workflow::{RateLimit, TriggerSpec, WebhookAuth, WebhookTrigger};
use sluice_crds::{NodeSpec, Workflow};
use sluice_operator::webhook::auth::sign_hex;
use sluice_operator::webhook::memory::MemoryBackend;
use sluice_operator::webhook::server::{Settings, WebhookServer, router};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &[u8] = b"bench-key";
const RATE: u64 = 200;
const SECONDS: u64 = 5;

struct Target {
    url: String,
    backend: Arc<MemoryBackend>,
    client: reqwest::Client,
}

async fn start() -> Target {
    let backend = Arc::new(MemoryBackend::default());
    let trigger = TriggerSpec {
        name: "push".to_owned(),
        enabled: None,
        webhook: WebhookTrigger {
            auth: WebhookAuth {
                type_: None,
                secret_ref: SecretKeyReference {
                    name: "hooks".to_owned(),
                    key: "key".to_owned(),
                },
                header: None,
                signature_format: None,
            },
            rate_limit: Some(RateLimit {
                per_minute: 1_000_000,
                burst: Some(1_000_000),
            }),
            ..WebhookTrigger::default()
        },
    };
    backend.put_workflow(
        Workflow::fixture("orders")
            .with_node(NodeSpec::transform("a", ".input"))
            .with_spec(|spec| spec.triggers = vec![trigger]),
    );
    backend.put_secret("default", "hooks", "key", KEY);
    let server = WebhookServer::new(backend.clone(), None, Settings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(server))).await });
    Target {
        url: format!("http://{address}/hooks/default/orders/push"),
        backend,
        client: reqwest::Client::new(),
    }
}

async fn send(target: &Target, index: u64) -> Duration {
    let body = format!(r#"{{"order": {index}, "items": [1, 2, 3], "note": "benchmark"}}"#);
    let signature = format!("sha256={}", sign_hex(KEY, body.as_bytes()));
    let started = Instant::now();
    let response = target
        .client
        .post(&target.url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 202);
    let _ = response.bytes().await;
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn open_loop(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(async {
        let target = Arc::new(start().await);
        // Warm the connection pool and the secret cache.
        for index in 0..20 {
            send(&target, index).await;
        }
        let before = target.backend.runs().len();
        let total = RATE * SECONDS;
        let period = Duration::from_nanos(1_000_000_000 / RATE);
        let begin = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        for index in 0..total {
            tokio::time::sleep_until(begin + period * index as u32).await;
            let target = target.clone();
            tasks.push(tokio::spawn(async move { send(&target, index).await }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        for task in tasks {
            latencies.push(task.await.expect("request task"));
        }
        latencies.sort();
        let created = target.backend.runs().len() - before;
        println!(
            "webhooks open loop: {total} requests at {RATE}/s, {created} runs created; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 20 ms)",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    });
}

fn webhooks(criterion: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    open_loop(&runtime);
    let target = runtime.block_on(start());
    let mut index = 0;
    criterion.bench_function("webhook_request_to_run", |bencher| {
        bencher.iter(|| {
            index += 1;
            runtime.block_on(send(&target, index))
        })
    });
}

criterion_group!(benches, webhooks);
criterion_main!(benches);

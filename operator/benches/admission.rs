//! Admission review latency for a 1,000-node workflow: an AdmissionReview
//! v1 body POSTed to `/validate` over HTTPS on loopback (the operator's own
//! TLS listener and self-managed certificate, a kept-alive connection as the
//! API server uses), until the verdict is read. The workflow sits at the
//! limits: 1,000 transform nodes in layers of 64, each needing all 64 nodes
//! of the layer before and reading one of them.
//!
//! Two measurements:
//! - 300 reviews one after another, printing p50, p99 and max (target
//!   p99 <= 20 ms);
//! - criterion's `admission_review_1000_nodes`.
//!
//! Run: `cargo bench -p sluice-operator --bench admission`.

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sluice_crds::Workflow;
use sluice_crds::workflow::{MAX_NEEDS, MAX_NODES};
use sluice_operator::admission::certs::{CertAction, CertPolicy, issue};
use sluice_operator::admission::server::{Lookup, LookupError, router};
use sluice_operator::admission::tls::{ReloadableCert, TlsListener, server_config};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REVIEWS: usize = 300;

struct Empty;

impl Lookup for Empty {
    fn workflow<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, LookupError>> {
        Box::pin(async { Ok(None) })
    }

    fn connection_names<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        Box::pin(async { Ok(vec![]) })
    }

    fn secret_exists<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async { Ok(true) })
    }
}

fn review_body() -> String {
    let nodes: Vec<Value> = (0..MAX_NODES)
        .map(|index| {
            let layer = index / MAX_NEEDS;
            let needs: Vec<String> = if layer == 0 {
                vec![]
            } else {
                ((layer - 1) * MAX_NEEDS..layer * MAX_NEEDS)
                    .map(|n| format!("n{n}"))
                    .collect()
            };
            let jq = match needs.first() {
                Some(first) => {
                    format!("{{value: (.nodes[\"{first}\"].output.value + 1), at: {index}}}")
                }
                None => format!("{{value: {index}}}"),
            };
            json!({"name": format!("n{index}"), "needs": needs, "transform": {"jq": jq}})
        })
        .collect();
    let object = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "big", "namespace": "bench"},
        "spec": {"nodes": nodes},
    });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f0d5b7e-0000-4000-8000-000000000001",
            "kind": {"group": "sluice.dev", "version": "v1alpha1", "kind": "Workflow"},
            "resource": {"group": "sluice.dev", "version": "v1alpha1", "resource": "workflows"},
            "name": "big",
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
            "object": object,
            "dryRun": false,
        }
    })
    .to_string()
}

struct Target {
    url: String,
    client: reqwest::Client,
    body: String,
}

async fn start() -> Target {
    let names = vec!["127.0.0.1".to_owned()];
    let certs = issue(
        &CertAction::IssueAll,
        None,
        &names,
        &CertPolicy::default(),
        chrono::Utc::now(),
    )
    .expect("issue certificates");
    let cert = Arc::new(ReloadableCert::default());
    let (chain, key) = certs.serving().expect("serving certificate");
    cert.load(chain, key).expect("load certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let listener =
        TlsListener::new(listener, server_config(cert).expect("tls config")).expect("tls listener");
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(Empty), None)).await });

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        CertificateDer::pem_slice_iter(certs.ca_bundle().unwrap_or_default().as_bytes())
    {
        roots
            .add(certificate.expect("CA PEM"))
            .expect("trust the CA");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Target {
        url: format!("https://{address}/validate"),
        client: reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client"),
        body: review_body(),
    }
}

async fn send(target: &Target) -> Duration {
    let started = Instant::now();
    let response = target
        .client
        .post(&target.url)
        .header("content-type", "application/json")
        .body(target.body.clone())
        .send()
        .await
        .expect("send");
    let answer: Value = response.json().await.expect("read the review");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn admission(criterion: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let target = runtime.block_on(start());
    runtime.block_on(async {
        for _ in 0..10 {
            send(&target).await;
        }
        let mut latencies = Vec::with_capacity(REVIEWS);
        for _ in 0..REVIEWS {
            latencies.push(send(&target).await);
        }
        latencies.sort();
        println!(
            "admission review, 1,000-node workflow ({} KiB body), {REVIEWS} reviews over HTTPS: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 20 ms)",
            target.body.len() / 1024,
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    });
    criterion.bench_function("admission_review_1000_nodes", |bencher| {
        bencher.iter(|| runtime.block_on(send(&target)))
    });
}

criterion_group!(benches, admission);
criterion_main!(benches);

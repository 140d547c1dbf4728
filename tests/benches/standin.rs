//! Start-up cost of the API server stand-in: bind, serve, and answer the
//! first request (`GET /version` through a kube client), which is what a
//! test waits for before it can do anything.

use criterion::{Criterion, criterion_group, criterion_main};
use kube::config::{KubeConfigOptions, Kubeconfig};
use sluice_e2e::apiserver::ApiServer;
use sluice_e2e::cluster::install_crypto_provider;

async fn start_and_answer() {
    let server = ApiServer::start().await.expect("the stand-in starts");
    let kubeconfig =
        Kubeconfig::from_yaml(&server.kubeconfig_yaml("default")).expect("a valid kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    let client = kube::Client::try_from(config).expect("a client");
    client
        .apiserver_version()
        .await
        .expect("the stand-in answers");
}

fn stand_in_start(criterion: &mut Criterion) {
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    criterion.bench_function("stand-in start + first request", |bencher| {
        bencher.iter(|| runtime.block_on(start_and_answer()));
    });
}

criterion_group!(benches, stand_in_start);
criterion_main!(benches);

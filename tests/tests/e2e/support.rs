//! Shared helpers of the end-to-end tests: the test-only `Widget` custom
//! resource, cluster start-up with its CRD, and bounded waiting.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kube::CustomResource;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use sluice_e2e::binaries::workspace_root;
use sluice_e2e::cluster::TestCluster;

/// Spec of the test resource; every field optional so merge patches stay small.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "e2e.sluice.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    schema = "disabled"
)]
pub struct WidgetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<i64>,
}

/// Status of the test resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A fixture file of this crate.
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// A cluster for one test with the Widget CRD applied.
pub async fn cluster_with_widgets(test: &str) -> TestCluster {
    let cluster = TestCluster::start(test)
        .await
        .expect("failed to start the test cluster");
    cluster
        .apply_file(&fixture("widget-crd.yaml"))
        .await
        .expect("failed to apply the Widget CRD");
    cluster
}

/// The Widgets of the test's namespace.
pub fn widgets(cluster: &TestCluster) -> Api<Widget> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

/// A Widget with a name and a spec.
pub fn widget(name: &str, spec: WidgetSpec) -> Widget {
    Widget::new(name, spec)
}

/// Polls `check` every 20 ms until it yields a value; panics after 30 s
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(30), what, check).await
}

/// How long a wait on the garbage collector may take. A real cluster's
/// collector only starts watching a CRD created seconds earlier at its
/// next discovery resync (every 30 s by default), and then works through
/// its queue: allow a few resyncs. The stand-in collects at once.
pub const GARBAGE_COLLECTOR_LIMIT: Duration = Duration::from_secs(150);

/// Polls `check` every 20 ms until it yields a value; panics after `limit`
/// with `what` in the message.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `Status` of a failed API call; panics when the call did not fail that way.
pub fn api_status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error status, got {other:?}"),
    }
}

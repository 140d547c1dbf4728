//! kubectl against the cluster under test (the stand-in by default):
//! discovery, `get`, and `apply --server-side` must work as with a real
//! API server. kubectl is required: a machine without it fails these tests
//! with a message saying to install it.

use std::path::PathBuf;
use std::process::Output;

use kube::ResourceExt;
use sluice_e2e::cluster::TestCluster;

use crate::support::{cluster_with_widgets, fixture, widgets};

/// `$KUBECTL`, else `kubectl` on `PATH`, else `/usr/bin/kubectl`.
fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubectl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/kubectl")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("kubectl not found (looked at $KUBECTL, $PATH and /usr/bin/kubectl): install kubectl v1.32 or newer to run the kubectl end-to-end tests")
        })
}

async fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
    let output: Output = tokio::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("--cache-dir")
        .arg(cluster.workdir().join("kubectl-cache"))
        .args(args)
        .output()
        .await
        .expect("failed to run kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test]
async fn kubectl_gets_namespaces() {
    let cluster = TestCluster::start("kubectl-namespaces").await.unwrap();
    let names = kubectl(&cluster, &["get", "namespaces", "-o", "name"]).await;
    assert!(
        names
            .lines()
            .any(|line| line == format!("namespace/{}", cluster.namespace())),
        "{names}"
    );
    let table = kubectl(&cluster, &["get", "namespaces"]).await;
    assert!(table.contains(cluster.namespace()), "{table}");
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn kubectl_applies_server_side_and_gets_custom_resources() {
    let cluster = cluster_with_widgets("kubectl-apply").await;
    let manifest = fixture("widget.yaml");
    let manifest = manifest.to_str().expect("a UTF-8 path");
    let applied = kubectl(&cluster, &["apply", "--server-side", "-f", manifest]).await;
    assert!(applied.contains("serverside-applied"), "{applied}");

    let stored = widgets(&cluster).get("from-kubectl").await.unwrap();
    assert_eq!(stored.spec.color.as_deref(), Some("blue"));
    assert!(
        stored
            .managed_fields()
            .iter()
            .any(|entry| entry.manager.as_deref() == Some("kubectl"))
    );

    let names = kubectl(&cluster, &["get", "widgets", "-o", "name"]).await;
    assert_eq!(names.trim(), "widget.e2e.sluice.dev/from-kubectl");
    let by_short_name = kubectl(&cluster, &["get", "wdg"]).await;
    assert!(by_short_name.contains("from-kubectl"), "{by_short_name}");
    let by_label = kubectl(
        &cluster,
        &[
            "get",
            "widgets",
            "-l",
            "app=kubectl",
            "-o",
            "jsonpath={.items[*].spec.size}",
        ],
    )
    .await;
    assert_eq!(by_label.trim(), "3");

    let reapplied = kubectl(&cluster, &["apply", "--server-side", "-f", manifest]).await;
    assert!(reapplied.contains("serverside-applied"), "{reapplied}");
    let deleted = kubectl(&cluster, &["delete", "-f", manifest]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(
        widgets(&cluster)
            .get_opt("from-kubectl")
            .await
            .unwrap()
            .is_none()
    );
    cluster.finish().await.unwrap();
}

//! Tests of the stand-in itself (they always start their own stand-in,
//! also when the suite runs against a real cluster): start-up, and the
//! bounded watch history that makes an old `resourceVersion` 410 Gone.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use sluice_e2e::apiserver::{ApiServer, ApiServerOptions};
use sluice_e2e::cluster::install_crypto_provider;

async fn client_for(server: &ApiServer) -> kube::Client {
    install_crypto_provider();
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig_yaml("default")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn stand_in_answers_version_and_discovery_on_loopback() {
    let server = ApiServer::start().await.unwrap();
    assert!(server.address().ip().is_loopback());
    let client = client_for(&server).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|group| group.name == "batch"));
}

#[tokio::test]
async fn versions_older_than_the_kept_history_are_gone() {
    let server = ApiServer::start_with(ApiServerOptions {
        history: 5,
        ..ApiServerOptions::default()
    })
    .await
    .unwrap();
    let client = client_for(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "history"}})).unwrap(),
        )
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "history");
    let created = config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "churn"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut latest = created.resource_version().unwrap();
    for counter in 0..10 {
        let patched = config_maps
            .patch(
                "churn",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"counter": counter.to_string()}})),
            )
            .await
            .unwrap();
        latest = patched.resource_version().unwrap();
    }
    let first_event = |version: String| {
        let config_maps = config_maps.clone();
        async move {
            config_maps
                .watch(&WatchParams::default().timeout(2), &version)
                .await
                .unwrap()
                .boxed()
                .next()
                .await
        }
    };
    match first_event(created.resource_version().unwrap()).await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected 410 for an evicted version, got {other:?}"),
    }
    let patched = config_maps
        .patch(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"counter": "last"}})),
        )
        .await
        .unwrap();
    match first_event(latest).await {
        Some(Ok(WatchEvent::Modified(object))) => {
            assert_eq!(object.resource_version(), patched.resource_version())
        }
        other => panic!("expected the next change for a kept version, got {other:?}"),
    }
}

//! Served types: discovery, CRDs becoming served (with their status
//! subresource), and the built-in types Sluice uses.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event as EventsV1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::json;

use crate::support::cluster_with_widgets;

#[tokio::test]
async fn discovery_maps_builtin_and_custom_kinds() {
    let cluster = cluster_with_widgets("discovery").await;
    let client = cluster.client();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for (group, version, kind, namespaced) in [
        ("", "v1", "Namespace", false),
        ("", "v1", "Secret", true),
        ("", "v1", "ConfigMap", true),
        ("", "v1", "Pod", true),
        ("", "v1", "Event", true),
        ("", "v1", "ServiceAccount", true),
        ("batch", "v1", "Job", true),
        ("coordination.k8s.io", "v1", "Lease", true),
        ("events.k8s.io", "v1", "Event", true),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            false,
        ),
        ("e2e.sluice.dev", "v1", "Widget", true),
    ] {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{gvk:?} is not discoverable"));
        assert_eq!(
            capabilities.scope == Scope::Namespaced,
            namespaced,
            "{gvk:?}"
        );
        for verb in [
            verbs::GET,
            verbs::LIST,
            verbs::WATCH,
            verbs::CREATE,
            verbs::PATCH,
            verbs::DELETE,
        ] {
            assert!(
                capabilities.supports_operation(verb),
                "{gvk:?} lacks {verb}"
            );
        }
        assert!(!resource.plural.is_empty());
    }
    let (_, widget_capabilities) = kube::discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("e2e.sluice.dev", "v1", "Widget"),
    )
    .await
    .unwrap();
    assert!(
        widget_capabilities
            .subresources
            .iter()
            .any(|(subresource, _)| subresource.plural == "widgets/status"
                || subresource.plural == "status"),
        "the status subresource is discoverable: {:?}",
        widget_capabilities.subresources
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn creating_a_crd_serves_its_resources() {
    let cluster = cluster_with_widgets("crd-serving").await;
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let suffix = &cluster.namespace()[cluster.namespace().len() - 5..];
    let group = format!("g{suffix}.e2e.sluice.dev");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    cluster
        .wait_established(&format!("gadgets.{group}"))
        .await
        .unwrap();

    let gvk = GroupVersionKind::gvk(&group, "v1", "Gadget");
    let (resource, _) = crate::support::eventually("the new kind to be discoverable", || {
        let client = cluster.client();
        let gvk = gvk.clone();
        async move { kube::discovery::pinned_kind(&client, &gvk).await.ok() }
    })
    .await;
    let gadgets: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), cluster.namespace(), &resource);
    let gadget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Gadget",
        "metadata": {"name": "first"}, "spec": {"any": "thing"},
    }))
    .unwrap();
    gadgets
        .create(&PostParams::default(), &gadget)
        .await
        .unwrap();
    let stored = gadgets.get("first").await.unwrap();
    assert_eq!(stored.data["spec"]["any"], "thing");
    crds.delete(&format!("gadgets.{group}"), &Default::default())
        .await
        .unwrap();
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn builtin_types_sluice_uses_are_served() {
    let cluster = cluster_with_widgets("builtins").await;
    let client = cluster.client();
    let namespace = cluster.namespace();
    let params = PostParams::default();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}),
    )
    .unwrap();
    secrets.create(&params, &secret).await.unwrap();
    let stored = secrets.get("creds").await.unwrap();
    assert_eq!(
        stored.data.unwrap()["token"].0,
        b"s3cret",
        "stringData is folded into data"
    );

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "1"}}))
            .unwrap();
    config_maps.create(&params, &config_map).await.unwrap();

    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    accounts
        .create(
            &params,
            &serde_json::from_value(json!({"metadata": {"name": "runner"}})).unwrap(),
        )
        .await
        .unwrap();

    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "one", "leaseDurationSeconds": 15, "acquireTime": "2025-01-01T00:00:00.000000Z"},
    }))
    .unwrap();
    leases.create(&params, &lease).await.unwrap();
    assert_eq!(
        leases
            .get("leader")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("one")
    );

    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "core-event"},
        "involvedObject": {"kind": "ConfigMap", "name": "settings", "namespace": namespace},
        "reason": "Tested", "message": "core/v1 event", "type": "Normal",
    }))
    .unwrap();
    events.create(&params, &event).await.unwrap();
    let new_events: Api<EventsV1> = Api::namespaced(client.clone(), namespace);
    let new_event: EventsV1 = serde_json::from_value(json!({
        "metadata": {"name": "events-v1"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "sluice.dev/e2e", "reportingInstance": "e2e",
        "action": "Test", "reason": "Tested", "type": "Normal", "note": "events.k8s.io/v1 event",
        "regarding": {"kind": "ConfigMap", "name": "settings", "namespace": namespace},
    }))
    .unwrap();
    new_events.create(&params, &new_event).await.unwrap();
    assert!(
        !new_events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "served-job"},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}},
    }))
    .unwrap();
    let created = jobs.create(&params, &job).await.unwrap();
    assert_eq!(
        created.spec.unwrap().backoff_limit,
        Some(6),
        "the Job default backoffLimit"
    );

    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lonely"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap();
    let created = pods.create(&params, &pod).await.unwrap();
    assert_eq!(
        created.status.and_then(|status| status.phase).as_deref(),
        Some("Pending")
    );
    cluster.finish().await.unwrap();
}

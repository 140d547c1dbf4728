//! Deletion: finalizers and `deletionTimestamp`, ownerReference garbage
//! collection (background, foreground, orphan) and namespaces.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::support::{
    GARBAGE_COLLECTOR_LIMIT, Widget, WidgetSpec, api_status, cluster_with_widgets,
    eventually_within, widget, widgets,
};

fn owned_by(owner: &Widget) -> OwnerReference {
    owner
        .controller_owner_ref(&())
        .expect("the owner has a uid")
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_gone_within(api, name, std::time::Duration::from_secs(30)).await;
}

/// Waits for an object whose removal is the garbage collector's (or the
/// namespace controller's) work, which on a real cluster can lag a new CRD
/// by a discovery resync.
async fn wait_collected<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_gone_within(api, name, GARBAGE_COLLECTOR_LIMIT).await;
}

async fn wait_gone_within<K>(api: &Api<K>, name: &str, limit: std::time::Duration)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually_within(limit, &format!("{name} to be deleted"), || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            api.get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn finalizer_holds_deletion_until_removed() {
    let cluster = cluster_with_widgets("finalizer").await;
    let api = widgets(&cluster);
    let mut object = widget("held", WidgetSpec::default());
    object.meta_mut().finalizers = Some(vec!["e2e.sluice.dev/hold".into()]);
    api.create(&PostParams::default(), &object).await.unwrap();

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = api.get("held").await.unwrap();
    assert!(terminating.meta().deletion_timestamp.is_some());
    assert_eq!(terminating.finalizers(), ["e2e.sluice.dev/hold"]);

    let patch = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_gone(&api, "held").await;
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn background_deletion_removes_dependents() {
    let cluster = cluster_with_widgets("gc-background").await;
    let api = widgets(&cluster);
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), cluster.namespace());
    let owner = api
        .create(
            &PostParams::default(),
            &widget("owner", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let mut child = widget("child", WidgetSpec::default());
    child.meta_mut().owner_references = Some(vec![owned_by(&owner)]);
    api.create(&PostParams::default(), &child).await.unwrap();
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "owned-config", "ownerReferences": [owned_by(&owner)]},
        "data": {"key": "value"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();

    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&api, "owner").await;
    wait_collected(&api, "child").await;
    wait_collected(&config_maps, "owned-config").await;
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let cluster = cluster_with_widgets("gc-foreground").await;
    let api = widgets(&cluster);
    let owner = api
        .create(
            &PostParams::default(),
            &widget("parent", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let mut child = widget("held-child", WidgetSpec::default());
    child.meta_mut().owner_references = Some(vec![owned_by(&owner)]);
    child.meta_mut().finalizers = Some(vec!["e2e.sluice.dev/hold".into()]);
    api.create(&PostParams::default(), &child).await.unwrap();

    api.delete("parent", &DeleteParams::foreground())
        .await
        .unwrap();
    let child_terminating = eventually_within(
        GARBAGE_COLLECTOR_LIMIT,
        "the collector to mark the child for deletion",
        || {
            let api = api.clone();
            async move {
                let child = api.get("held-child").await.ok()?;
                child.meta().deletion_timestamp.is_some().then_some(child)
            }
        },
    )
    .await;
    assert_eq!(child_terminating.finalizers(), ["e2e.sluice.dev/hold"]);
    let parent = api
        .get("parent")
        .await
        .expect("the owner waits for its dependents");
    assert!(parent.meta().deletion_timestamp.is_some());
    assert!(
        parent
            .finalizers()
            .iter()
            .any(|finalizer| finalizer == "foregroundDeletion")
    );

    let release = json!({"metadata": {"finalizers": null}});
    api.patch(
        "held-child",
        &PatchParams::default(),
        &Patch::Merge(&release),
    )
    .await
    .unwrap();
    wait_gone(&api, "held-child").await;
    wait_collected(&api, "parent").await;
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents() {
    let cluster = cluster_with_widgets("gc-orphan").await;
    let api = widgets(&cluster);
    let owner = api
        .create(
            &PostParams::default(),
            &widget("leaving", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let mut child = widget("orphan", WidgetSpec::default());
    child.meta_mut().owner_references = Some(vec![owned_by(&owner)]);
    api.create(&PostParams::default(), &child).await.unwrap();

    api.delete("leaving", &DeleteParams::orphan())
        .await
        .unwrap();
    wait_collected(&api, "leaving").await;
    let orphan = eventually_within(
        GARBAGE_COLLECTOR_LIMIT,
        "the collector to remove the orphan's owner reference",
        || {
            let api = api.clone();
            async move {
                let orphan = api.get("orphan").await.ok()?;
                orphan.owner_references().is_empty().then_some(orphan)
            }
        },
    )
    .await;
    assert!(orphan.meta().deletion_timestamp.is_none());
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn namespaces_scope_objects_and_delete_their_contents() {
    let cluster = cluster_with_widgets("namespaces").await;
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let missing: Api<Widget> = Api::namespaced(cluster.client(), "no-such-namespace-e2e");
    let status = api_status(
        missing
            .create(
                &PostParams::default(),
                &widget("lost", WidgetSpec::default()),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));

    let extra_name = format!("{}-extra", cluster.namespace());
    let extra: Namespace =
        serde_json::from_value(json!({"metadata": {"name": extra_name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &extra)
        .await
        .unwrap();
    let active = namespaces.get(&extra_name).await.unwrap();
    assert_eq!(
        active.status.and_then(|status| status.phase).as_deref(),
        Some("Active")
    );
    let in_extra: Api<Widget> = Api::namespaced(cluster.client(), &extra_name);
    in_extra
        .create(
            &PostParams::default(),
            &widget("inside", WidgetSpec::default()),
        )
        .await
        .unwrap();
    assert!(
        widgets(&cluster).get_opt("inside").await.unwrap().is_none(),
        "objects are per namespace"
    );

    namespaces
        .delete(&extra_name, &DeleteParams::default())
        .await
        .unwrap();
    wait_collected(&in_extra, "inside").await;
    wait_collected(&namespaces, &extra_name).await;
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_adds_and_removes_its_finalizer() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    use std::sync::Arc;

    const NAME: &str = "e2e.sluice.dev/cleanup";
    let cluster = cluster_with_widgets("finalizer-helper").await;
    let api = widgets(&cluster);
    let created = api
        .create(
            &PostParams::default(),
            &widget("managed", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let step = |object: Widget| {
        let api = api.clone();
        async move {
            finalizer(&api, NAME, Arc::new(object), |event| async move {
                Ok::<_, std::convert::Infallible>(match event {
                    Event::Apply(_) | Event::Cleanup(_) => Action::await_change(),
                })
            })
            .await
            .expect("the finalizer helper succeeds")
        }
    };
    step(created).await;
    let with_finalizer = api.get("managed").await.unwrap();
    assert_eq!(with_finalizer.finalizers(), [NAME]);

    api.delete("managed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = api.get("managed").await.unwrap();
    assert!(terminating.meta().deletion_timestamp.is_some());
    step(terminating).await;
    wait_gone(&api, "managed").await;
    cluster.finish().await.unwrap();
}

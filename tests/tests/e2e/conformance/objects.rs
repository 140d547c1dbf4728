//! Object writes: create/get/list/replace/delete, server-set fields,
//! errors, optimistic concurrency, generation, the status subresource,
//! patches, server-side apply, selectors, pagination and delete-collection.

use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use serde_json::json;

use crate::support::{WidgetSpec, WidgetStatus, api_status, cluster_with_widgets, widget, widgets};

fn spec(color: &str) -> WidgetSpec {
    WidgetSpec {
        color: Some(color.to_string()),
        ..WidgetSpec::default()
    }
}

#[tokio::test]
async fn create_get_list_replace_delete_with_server_set_metadata() {
    let cluster = cluster_with_widgets("crud").await;
    let api = widgets(&cluster);
    let created = api
        .create(&PostParams::default(), &widget("first", spec("red")))
        .await
        .unwrap();
    assert!(created.uid().is_some_and(|uid| !uid.is_empty()));
    assert!(created.creation_timestamp().is_some());
    assert!(
        created
            .resource_version()
            .is_some_and(|version| !version.is_empty())
    );
    assert_eq!(created.meta().generation, Some(1));
    assert_eq!(created.namespace().as_deref(), Some(cluster.namespace()));

    let fetched = api.get("first").await.unwrap();
    assert_eq!(fetched.spec, spec("red"));
    assert_eq!(fetched.uid(), created.uid());

    let mut changed = fetched.clone();
    changed.spec.color = Some("green".into());
    let replaced = api
        .replace("first", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.spec.color.as_deref(), Some("green"));
    assert_ne!(replaced.resource_version(), fetched.resource_version());
    assert_eq!(replaced.uid(), created.uid());
    assert_eq!(replaced.creation_timestamp(), created.creation_timestamp());

    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["first"]
    );
    assert!(
        listed
            .metadata
            .resource_version
            .is_some_and(|version| !version.is_empty())
    );

    api.delete("first", &DeleteParams::default()).await.unwrap();
    let status = api_status(api.get("first").await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    cluster.finish().await.unwrap();
}

/// Two thousand `generateName` creates all succeed with distinct names of
/// five characters from the server's alphabet: a clash of random suffixes
/// is retried by the server (Kubernetes 1.32 and later), not answered 409.
#[tokio::test]
async fn generated_names_are_distinct_and_never_clash() {
    let cluster = cluster_with_widgets("generated").await;
    let api = widgets(&cluster);
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let mut object = widget("unused", spec("red"));
        object.metadata.name = None;
        object.metadata.generate_name = Some("w-".into());
        let created = api.create(&PostParams::default(), &object).await.unwrap();
        let name = created.name_any();
        let suffix = name.strip_prefix("w-").expect("the prefix is kept");
        assert!(
            suffix.len() == 5
                && suffix
                    .chars()
                    .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{name}"
        );
        assert!(names.insert(name.clone()), "{name} was generated twice");
    }
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn error_bodies_carry_code_and_reason() {
    let cluster = cluster_with_widgets("errors").await;
    let api = widgets(&cluster);
    let missing = api_status(api.get("nothing-here").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert!(
        missing.message.contains("nothing-here"),
        "{}",
        missing.message
    );

    api.create(&PostParams::default(), &widget("taken", spec("red")))
        .await
        .unwrap();
    let duplicate = api_status(
        api.create(&PostParams::default(), &widget("taken", spec("red")))
            .await,
    );
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (409, "AlreadyExists")
    );

    let invalid = api_status(
        api.create(&PostParams::default(), &widget("Not_A_Name", spec("red")))
            .await,
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let cluster = cluster_with_widgets("conflict").await;
    let api = widgets(&cluster);
    let original = api
        .create(&PostParams::default(), &widget("contended", spec("red")))
        .await
        .unwrap();
    let mut first = original.clone();
    first.spec.color = Some("green".into());
    api.replace("contended", &PostParams::default(), &first)
        .await
        .unwrap();

    let mut stale = original.clone();
    stale.spec.color = Some("blue".into());
    let status = api_status(
        api.replace("contended", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let stale_patch =
        json!({"metadata": {"resourceVersion": original.resource_version()}, "spec": {"size": 9}});
    let status = api_status(
        api.patch(
            "contended",
            &PatchParams::default(),
            &Patch::Merge(&stale_patch),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        api.get("contended").await.unwrap().spec.color.as_deref(),
        Some("green")
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let cluster = cluster_with_widgets("generation").await;
    let api = widgets(&cluster);
    api.create(&PostParams::default(), &widget("counted", spec("red")))
        .await
        .unwrap();
    let params = PatchParams::default();
    let labelled = api
        .patch(
            "counted",
            &params,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.meta().generation, Some(1));
    let with_status = api
        .patch_status(
            "counted",
            &params,
            &Patch::Merge(json!({"status": {"phase": "Ready"}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.meta().generation, Some(1));
    let respecced = api
        .patch(
            "counted",
            &params,
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(respecced.meta().generation, Some(2));
    let unchanged = api
        .patch(
            "counted",
            &params,
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(unchanged.meta().generation, Some(2));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn status_and_main_writes_cannot_cross() {
    let cluster = cluster_with_widgets("status").await;
    let api = widgets(&cluster);
    let mut initial = widget("split", spec("red"));
    initial.status = Some(WidgetStatus {
        phase: Some("ignored-on-create".into()),
    });
    let created = api.create(&PostParams::default(), &initial).await.unwrap();
    assert_eq!(
        created.status, None,
        "create must drop status when the status subresource exists"
    );

    let params = PatchParams::default();
    let status_write = json!({"spec": {"color": "hacked"}, "status": {"phase": "Ready"}});
    let after_status = api
        .patch_status("split", &params, &Patch::Merge(&status_write))
        .await
        .unwrap();
    assert_eq!(after_status.spec.color.as_deref(), Some("red"));
    assert_eq!(
        after_status
            .status
            .and_then(|status| status.phase)
            .as_deref(),
        Some("Ready")
    );

    let main_write = json!({"spec": {"color": "green"}, "status": {"phase": "hacked"}});
    let after_main = api
        .patch("split", &params, &Patch::Merge(&main_write))
        .await
        .unwrap();
    assert_eq!(after_main.spec.color.as_deref(), Some("green"));
    assert_eq!(
        after_main.status.and_then(|status| status.phase).as_deref(),
        Some("Ready")
    );

    let mut replaced_status = api.get_status("split").await.unwrap();
    replaced_status.spec.color = Some("hacked-again".into());
    replaced_status.status = Some(WidgetStatus {
        phase: Some("Done".into()),
    });
    let after_replace = api
        .replace_status("split", &PostParams::default(), &replaced_status)
        .await
        .unwrap();
    assert_eq!(after_replace.spec.color.as_deref(), Some("green"));
    assert_eq!(
        after_replace
            .status
            .and_then(|status| status.phase)
            .as_deref(),
        Some("Done")
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn json_patch_applies_and_a_failed_test_is_invalid() {
    let cluster = cluster_with_widgets("json-patch").await;
    let api = widgets(&cluster);
    api.create(&PostParams::default(), &widget("patched", spec("red")))
        .await
        .unwrap();
    let passing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/color", "value": "red"},
        {"op": "replace", "path": "/spec/color", "value": "green"},
        {"op": "add", "path": "/spec/size", "value": 4},
    ]))
    .unwrap();
    let patched = api
        .patch(
            "patched",
            &PatchParams::default(),
            &Patch::Json::<()>(passing),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec,
        WidgetSpec {
            color: Some("green".into()),
            size: Some(4),
            counter: None
        }
    );

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/color", "value": "red"},
        {"op": "replace", "path": "/spec/color", "value": "blue"},
    ]))
    .unwrap();
    let status = api_status(
        api.patch(
            "patched",
            &PatchParams::default(),
            &Patch::Json::<()>(failing),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        api.get("patched").await.unwrap().spec.color.as_deref(),
        Some("green")
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_and_releases_fields() {
    let cluster = cluster_with_widgets("apply").await;
    let api = widgets(&cluster);
    let params = PatchParams::apply("e2e-applier").force();
    let first = json!({
        "apiVersion": "e2e.sluice.dev/v1", "kind": "Widget",
        "metadata": {"name": "applied", "labels": {"owner": "e2e"}},
        "spec": {"color": "red", "size": 1},
    });
    let created = api
        .patch("applied", &params, &Patch::Apply(&first))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert_eq!(
        created.spec,
        WidgetSpec {
            color: Some("red".into()),
            size: Some(1),
            counter: None
        }
    );
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|entry| entry.manager.clone())
        .collect();
    assert!(
        managers.contains(&"e2e-applier".to_string()),
        "{managers:?}"
    );

    api.patch(
        "applied",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"counter": 7}})),
    )
    .await
    .unwrap();
    let second = json!({
        "apiVersion": "e2e.sluice.dev/v1", "kind": "Widget",
        "metadata": {"name": "applied"},
        "spec": {"color": "green"},
    });
    let updated = api
        .patch("applied", &params, &Patch::Apply(&second))
        .await
        .unwrap();
    assert_eq!(updated.spec.color.as_deref(), Some("green"));
    assert_eq!(
        updated.spec.size, None,
        "a field the applier stopped applying is removed"
    );
    assert_eq!(
        updated.spec.counter,
        Some(7),
        "fields written by others stay"
    );
    assert!(
        updated.labels().get("owner").is_none(),
        "the applier's label is released"
    );
    assert_eq!(updated.meta().generation, Some(3));
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn label_selectors_filter_lists() {
    let cluster = cluster_with_widgets("selectors").await;
    let api = widgets(&cluster);
    for (name, app, tier) in [
        ("a", "web", Some("front")),
        ("b", "web", Some("back")),
        ("c", "db", None),
    ] {
        let mut object = widget(name, spec("red"));
        object.labels_mut().insert("app".into(), app.into());
        if let Some(tier) = tier {
            object.labels_mut().insert("tier".into(), tier.into());
        }
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    let names = |selector: &'static str| {
        let api = api.clone();
        async move {
            let mut names: Vec<String> = api
                .list(&ListParams::default().labels(selector))
                .await
                .unwrap()
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(names("app=web").await, ["a", "b"]);
    assert_eq!(names("app!=web").await, ["c"]);
    assert_eq!(names("tier in (front,middle)").await, ["a"]);
    assert_eq!(names("app=web,tier notin (front)").await, ["b"]);
    assert_eq!(names("!tier").await, ["c"]);
    assert_eq!(names("tier").await, ["a", "b"]);
    let by_field = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(
        by_field
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["b"]
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn list_pages_with_continue_tokens() {
    let cluster = cluster_with_widgets("pages").await;
    let api = widgets(&cluster);
    for index in 0..5 {
        api.create(
            &PostParams::default(),
            &widget(&format!("page-{index}"), spec("red")),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(ResourceExt::name_any));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen, ["page-0", "page-1", "page-2", "page-3", "page-4"]);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn delete_collection_removes_only_the_selection() {
    let cluster = cluster_with_widgets("delete-collection").await;
    let api = widgets(&cluster);
    for (name, doomed) in [("keep", false), ("drop-1", true), ("drop-2", true)] {
        let mut object = widget(name, spec("red"));
        object
            .labels_mut()
            .insert("doomed".into(), doomed.to_string());
        api.create(&PostParams::default(), &object).await.unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("doomed=true"),
    )
    .await
    .unwrap();
    crate::support::eventually("the selected widgets to be deleted", || {
        let api = api.clone();
        async move {
            let names: Vec<String> = api
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect();
            (names == ["keep"]).then_some(())
        }
    })
    .await;
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn metadata_only_reads_return_partial_object_metadata() {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{WatchEvent, WatchParams};

    let cluster = cluster_with_widgets("metadata-only").await;
    let api = widgets(&cluster);
    let mut object = widget("described", spec("red"));
    object.labels_mut().insert("app".into(), "meta".into());
    let created = api.create(&PostParams::default(), &object).await.unwrap();

    let single = api.get_metadata("described").await.unwrap();
    assert_eq!(
        single.types.as_ref().map(|types| types.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(single.metadata.uid, created.uid());
    let listed = api
        .list_metadata(&ListParams::default().labels("app=meta"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].metadata.labels.as_ref().unwrap()["app"],
        "meta"
    );

    api.patch(
        "described",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 1}})),
    )
    .await
    .unwrap();
    let events: Vec<_> = api
        .watch_metadata(
            &WatchParams::default().timeout(10),
            &created.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .try_filter(|event| std::future::ready(!matches!(event, WatchEvent::Bookmark(_))))
        .take(1)
        .try_collect()
        .await
        .unwrap();
    match &events[0] {
        WatchEvent::Modified(partial) => {
            assert_eq!(
                partial.types.as_ref().map(|types| types.kind.as_str()),
                Some("PartialObjectMetadata")
            );
            assert_eq!(partial.metadata.generation, Some(2));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    cluster.finish().await.unwrap();
}

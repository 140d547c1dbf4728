//! Watches: kube-runtime's watcher over many changes without relisting,
//! resuming from a `resourceVersion`, 410 Gone, bookmarks and selector
//! transitions.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

use serde_json::json;

use crate::support::{Widget, WidgetSpec, cluster_with_widgets, widget, widgets};

/// What the watcher reported, in order.
#[derive(Debug, Default)]
struct Observed {
    inits: usize,
    init_dones: usize,
    init_applies: Vec<String>,
    applies: Vec<(String, String)>,
    deletes: Vec<String>,
    errors: Vec<String>,
}

impl Observed {
    fn changes(&self) -> usize {
        self.applies.len() + self.deletes.len()
    }
}

#[tokio::test]
async fn watcher_sees_a_thousand_changes_from_one_initial_list() {
    let cluster = cluster_with_widgets("watcher-1000").await;
    let api = widgets(&cluster);
    for index in 0..3 {
        api.create(
            &PostParams::default(),
            &widget(&format!("pre-{index}"), WidgetSpec::default()),
        )
        .await
        .unwrap();
    }
    let (sender, mut receiver) = tokio::sync::watch::channel(Observed::default());
    let stream_api = api.clone();
    let consumer = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(stream_api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            sender.send_modify(|observed| match event {
                Ok(watcher::Event::Init) => observed.inits += 1,
                Ok(watcher::Event::InitApply(object)) => {
                    observed.init_applies.push(object.name_any())
                }
                Ok(watcher::Event::InitDone) => observed.init_dones += 1,
                Ok(watcher::Event::Apply(object)) => observed.applies.push((
                    object.name_any(),
                    object.resource_version().unwrap_or_default(),
                )),
                Ok(watcher::Event::Delete(object)) => observed.deletes.push(object.name_any()),
                Err(error) => observed.errors.push(error.to_string()),
            });
        }
    });
    receiver
        .wait_for(|observed| observed.init_dones == 1)
        .await
        .expect("the watcher stopped before its initial list");

    let mut expected_applies = Vec::new();
    let mut expected_deletes = Vec::new();
    for index in 0..100 {
        let name = format!("w-{index}");
        let created = api
            .create(
                &PostParams::default(),
                &widget(&name, WidgetSpec::default()),
            )
            .await
            .unwrap();
        expected_applies.push((name, created.resource_version().unwrap()));
    }
    for change in 0..800 {
        let name = format!("w-{}", change % 100);
        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"counter": change}})),
            )
            .await
            .unwrap();
        expected_applies.push((name, patched.resource_version().unwrap()));
    }
    for index in 0..100 {
        let name = format!("w-{index}");
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        expected_deletes.push(name);
    }

    let observed = tokio::time::timeout(
        Duration::from_secs(30),
        receiver.wait_for(|observed| observed.changes() >= 1000),
    )
    .await
    .expect("timed out waiting for the watcher to see 1000 changes")
    .expect("the watcher stopped");
    assert_eq!(observed.inits, 1, "exactly one initial list (no relists)");
    assert_eq!(
        observed.init_dones, 1,
        "exactly one initial list (no relists)"
    );
    assert_eq!(observed.errors, Vec::<String>::new());
    let mut initial = observed.init_applies.clone();
    initial.sort();
    assert_eq!(initial, ["pre-0", "pre-1", "pre-2"]);
    assert_eq!(observed.applies, expected_applies);
    assert_eq!(observed.deletes, expected_deletes);
    drop(observed);
    consumer.abort();
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn watch_resumes_after_a_resource_version() {
    let cluster = cluster_with_widgets("watch-resume").await;
    let api = widgets(&cluster);
    let created = api
        .create(
            &PostParams::default(),
            &widget("resumed", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let start = created.resource_version().unwrap();
    for counter in 1..=3 {
        api.patch(
            "resumed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"counter": counter}})),
        )
        .await
        .unwrap();
    }
    let events: Vec<WatchEvent<Widget>> = api
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .unwrap()
        .try_filter(|event| std::future::ready(!matches!(event, WatchEvent::Bookmark(_))))
        .take(3)
        .try_collect()
        .await
        .unwrap();
    let counters: Vec<Option<i64>> = events
        .iter()
        .map(|event| match event {
            WatchEvent::Modified(object) => object.spec.counter,
            other => panic!("expected MODIFIED, got {other:?}"),
        })
        .collect();
    assert_eq!(counters, [Some(1), Some(2), Some(3)]);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn watch_from_a_too_old_version_is_gone() {
    let cluster = cluster_with_widgets("watch-gone").await;
    let api = widgets(&cluster);
    api.create(
        &PostParams::default(),
        &widget("recent", WidgetSpec::default()),
    )
    .await
    .unwrap();
    let first = api
        .watch(&WatchParams::default().timeout(10), "1")
        .await
        .unwrap()
        .boxed()
        .next()
        .await
        .expect("the watch ended without an event")
        .unwrap();
    match first {
        WatchEvent::Error(status) => assert_eq!(status.code, 410, "{status:?}"),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn watch_sends_bookmarks_when_asked() {
    let cluster = cluster_with_widgets("watch-bookmarks").await;
    let api = widgets(&cluster);
    let created = api
        .create(
            &PostParams::default(),
            &widget("marked", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let version: u64 = created.resource_version().unwrap().parse().unwrap();
    let events: Vec<WatchEvent<Widget>> = api
        .watch(&WatchParams::default().timeout(4), &version.to_string())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let bookmarks: Vec<u64> = events
        .iter()
        .filter_map(|event| match event {
            WatchEvent::Bookmark(bookmark) => bookmark.metadata.resource_version.parse().ok(),
            _ => None,
        })
        .collect();
    assert!(!bookmarks.is_empty(), "no bookmark in {events:?}");
    assert!(
        bookmarks.iter().all(|bookmark| *bookmark >= version),
        "{bookmarks:?} < {version}"
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn filtered_watch_turns_selection_changes_into_added_and_deleted() {
    let cluster = cluster_with_widgets("watch-selector").await;
    let api = widgets(&cluster);
    let created = api
        .create(
            &PostParams::default(),
            &widget("moving", WidgetSpec::default()),
        )
        .await
        .unwrap();
    let start = created.resource_version().unwrap();
    let label = |value: &str| Patch::Merge(json!({"metadata": {"labels": {"selected": value}}}));
    api.patch("moving", &PatchParams::default(), &label("yes"))
        .await
        .unwrap();
    api.patch("moving", &PatchParams::default(), &label("no"))
        .await
        .unwrap();
    let events: Vec<WatchEvent<Widget>> = api
        .watch(
            &WatchParams::default().labels("selected=yes").timeout(10),
            &start,
        )
        .await
        .unwrap()
        .try_filter(|event| std::future::ready(!matches!(event, WatchEvent::Bookmark(_))))
        .take(2)
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(events[0], WatchEvent::Added(_)), "{events:?}");
    assert!(matches!(events[1], WatchEvent::Deleted(_)), "{events:?}");
    cluster.finish().await.unwrap();
}

//! Several watches (one per namespace) as one watch.
//!
//! A reflector store, and the run index, read a watch's `Init` …
//! `InitApply` … `InitDone` as "replace everything with this list". Fed
//! several watches side by side, one namespace's `InitDone` would replace
//! every other namespace's objects with its own. So the merged stream
//! keeps the promise of a single watch:
//!
//! - it lists once: one `Init`, every namespace's `InitApply`, and one
//!   `InitDone` after the last namespace's list is done. Changes of
//!   namespaces already listed wait until then (the last one per object),
//!   since a reflector would drop them at `InitDone`;
//! - a namespace whose watch must list again (its resource version
//!   expired, or its list broke half way) makes the whole merged watch
//!   list again: every watch restarts and the stream says `Init` again.
//!   A cluster-wide watch lists everything again in the same case.
//!
//! [`Merge`] decides (pure); [`merge`] drives the watches.

use super::WatchStream;
use futures::StreamExt;
use futures::stream::{self, SelectAll};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use std::collections::{HashMap, VecDeque};

/// Where one source's watch is in the merged stream's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Nothing seen, or `Init` but no object yet: a list that fails now
    /// left nothing behind.
    Waiting,
    /// Some of its objects were passed on.
    Listing,
    /// Its list is complete.
    Listed,
}

/// What the stream does with one event of one source.
#[derive(Debug)]
pub enum Step<K> {
    /// Pass these events on (maybe none).
    Emit(Vec<Event<K>>),
    /// Start every source again and list again.
    Restart,
}

/// The merged stream's state: its sources while it lists, then nothing.
pub struct Merge<K: Resource<DynamicType = ()>> {
    sources: Vec<Source>,
    /// Changes of sources listed already, held until every source is:
    /// the last event per object.
    held: HashMap<ObjectRef<K>, Event<K>>,
    listed: bool,
}

impl<K: Resource<DynamicType = ()> + Clone> Merge<K> {
    /// A merge of `sources` watches, about to list.
    pub fn new(sources: usize) -> Self {
        Self {
            sources: vec![Source::Waiting; sources],
            held: HashMap::new(),
            listed: sources == 0,
        }
    }

    /// Takes `event` from source `source`.
    pub fn step(&mut self, source: usize, event: Event<K>) -> Step<K> {
        if self.listed {
            return match event {
                Event::Apply(_) | Event::Delete(_) => Step::Emit(vec![event]),
                Event::Init | Event::InitApply(_) | Event::InitDone => Step::Restart,
            };
        }
        let Some(state) = self.sources.get_mut(source) else {
            return Step::Emit(Vec::new());
        };
        match event {
            Event::Init => match state {
                Source::Waiting => Step::Emit(Vec::new()),
                Source::Listing | Source::Listed => Step::Restart,
            },
            Event::InitApply(object) => {
                *state = Source::Listing;
                Step::Emit(vec![Event::InitApply(object)])
            }
            Event::InitDone => {
                *state = Source::Listed;
                if self.sources.iter().all(|state| *state == Source::Listed) {
                    self.listed = true;
                    let mut events = vec![Event::InitDone];
                    events.extend(self.held.drain().map(|(_, event)| event));
                    Step::Emit(events)
                } else {
                    Step::Emit(Vec::new())
                }
            }
            Event::Apply(ref object) | Event::Delete(ref object) => {
                self.held.insert(ObjectRef::from_obj(object), event);
                Step::Emit(Vec::new())
            }
        }
    }
}

type Tagged<K> = (usize, Result<Event<K>, watcher::Error>);

struct Driver<K: Resource<DynamicType = ()>, F> {
    build: F,
    watches: SelectAll<stream::BoxStream<'static, Tagged<K>>>,
    merge: Merge<K>,
    out: VecDeque<Result<Event<K>, watcher::Error>>,
}

impl<K, F> Driver<K, F>
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
    F: Fn() -> Vec<WatchStream<K>>,
{
    fn start(build: F) -> Self {
        let mut driver = Self {
            build,
            watches: SelectAll::new(),
            merge: Merge::new(0),
            out: VecDeque::new(),
        };
        driver.restart();
        driver
    }

    fn restart(&mut self) {
        let watches = (self.build)();
        self.merge = Merge::new(watches.len());
        self.watches = stream::select_all(
            watches
                .into_iter()
                .enumerate()
                .map(|(source, watch)| watch.map(move |event| (source, event)).boxed()),
        );
        self.out.clear();
        self.out.push_back(Ok(Event::Init));
        if self.merge.listed {
            // No sources: an empty list, done at once.
            self.out.push_back(Ok(Event::InitDone));
        }
    }
}

/// One watch made of the watches `build` returns (called again on each
/// restart). Errors of any source pass through as they come.
pub fn merge<K, F>(build: F) -> WatchStream<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
    F: Fn() -> Vec<WatchStream<K>> + Send + 'static,
{
    stream::unfold(Driver::start(build), |mut driver| async move {
        loop {
            if let Some(item) = driver.out.pop_front() {
                return Some((item, driver));
            }
            let (source, event) = driver.watches.next().await?;
            match event {
                Err(error) => return Some((Err(error), driver)),
                Ok(event) => match driver.merge.step(source, event) {
                    Step::Emit(events) => driver.out.extend(events.into_iter().map(Ok)),
                    Step::Restart => {
                        tracing::info!(
                            "a namespace's watch lists again: listing every watched namespace again"
                        );
                        driver.restart();
                    }
                },
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector;
    use std::sync::{Arc, Mutex};

    fn object(namespace: &str, name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// `Init`, `InitApply a/x@1`, … (events have no `PartialEq`).
    fn describe(event: &Event<ConfigMap>) -> String {
        let object = |kind: &str, object: &ConfigMap| {
            format!(
                "{kind} {}/{}@{}",
                object.metadata.namespace.as_deref().unwrap_or_default(),
                object.metadata.name.as_deref().unwrap_or_default(),
                object
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default()
            )
        };
        match event {
            Event::Init => "Init".into(),
            Event::InitDone => "InitDone".into(),
            Event::InitApply(o) => object("InitApply", o),
            Event::Apply(o) => object("Apply", o),
            Event::Delete(o) => object("Delete", o),
        }
    }

    fn emitted(step: Step<ConfigMap>) -> Vec<String> {
        match step {
            Step::Emit(events) => events.iter().map(describe).collect(),
            Step::Restart => panic!("unexpected restart"),
        }
    }

    fn restarts(step: Step<ConfigMap>) -> bool {
        matches!(step, Step::Restart)
    }

    #[test]
    fn lists_once_across_sources_and_holds_changes_until_then() {
        let mut merge = Merge::new(2);
        assert!(emitted(merge.step(0, Event::Init)).is_empty());
        assert!(emitted(merge.step(1, Event::Init)).is_empty());
        assert_eq!(
            emitted(merge.step(0, Event::InitApply(object("a", "x", "1")))),
            ["InitApply a/x@1"]
        );
        assert!(emitted(merge.step(0, Event::InitDone)).is_empty());
        // Source 0 is listed: its changes wait for source 1's list, the
        // last one per object.
        for event in [
            Event::Apply(object("a", "x", "2")),
            Event::Apply(object("a", "y", "3")),
            Event::Delete(object("a", "y", "4")),
        ] {
            assert!(emitted(merge.step(0, event)).is_empty());
        }
        assert_eq!(
            emitted(merge.step(1, Event::InitApply(object("b", "x", "5")))),
            ["InitApply b/x@5"]
        );
        let mut done = emitted(merge.step(1, Event::InitDone));
        assert_eq!(done.remove(0), "InitDone");
        done.sort();
        assert_eq!(done, ["Apply a/x@2", "Delete a/y@4"]);
        // Listed: changes pass at once.
        assert_eq!(
            emitted(merge.step(1, Event::Apply(object("b", "x", "6")))),
            ["Apply b/x@6"]
        );
    }

    #[test]
    fn a_failed_list_that_passed_nothing_on_is_retried_in_place() {
        let mut merge = Merge::<ConfigMap>::new(2);
        assert!(emitted(merge.step(0, Event::Init)).is_empty());
        // The list failed (a Role is missing, say): the watch says Init again.
        assert!(emitted(merge.step(0, Event::Init)).is_empty());
    }

    #[test]
    fn a_source_listing_again_restarts_the_merge() {
        let mut merge = Merge::new(2);
        merge.step(0, Event::Init);
        merge.step(0, Event::InitApply(object("a", "x", "1")));
        // Half way through its list, source 0 starts again.
        assert!(restarts(merge.step(0, Event::Init)));

        let mut merge = Merge::new(1);
        merge.step(0, Event::Init);
        assert_eq!(emitted(merge.step(0, Event::InitDone)), ["InitDone"]);
        assert_eq!(
            emitted(merge.step(0, Event::Apply(object("a", "x", "2")))),
            ["Apply a/x@2"]
        );
        // Its resource version expired: it lists again.
        assert!(restarts(merge.step(0, Event::Init)));
    }

    /// Two namespaces through the real stream into a real reflector: each
    /// namespace's list and deletes reach the store, neither namespace's
    /// list wipes the other's objects, and a restart lists both again.
    #[tokio::test]
    async fn a_reflector_fed_by_the_merge_holds_every_namespace() {
        let builds = Arc::new(Mutex::new(0));
        let counter = builds.clone();
        let merged = merge(move || {
            let mut count = counter.lock().unwrap();
            *count += 1;
            let a = vec![
                Ok(Event::Init),
                Ok(Event::InitApply(object("a", "x", "1"))),
                Ok(Event::InitApply(object("a", "y", "2"))),
                Ok(Event::InitDone),
                Ok(Event::Delete(object("a", "y", "3"))),
            ];
            let mut b = vec![
                Ok(Event::Init),
                Ok(Event::InitApply(object("b", "x", "4"))),
                Ok(Event::InitDone),
                Ok(Event::Apply(object("b", "z", "5"))),
            ];
            if *count == 1 {
                // b's resource version expires once: everything lists again.
                b.push(Ok(Event::Init));
            }
            vec![stream::iter(a).boxed(), stream::iter(b).boxed()]
        });
        let (reader, writer) = reflector::store::<ConfigMap>();
        let events: Vec<_> = reflector(writer, merged).try_collect().await.unwrap();
        assert_eq!(*builds.lock().unwrap(), 2);
        let described: Vec<String> = events.iter().map(describe).collect();
        assert_eq!(described.iter().filter(|e| *e == "Init").count(), 2);
        let last = |wanted: &str| described.iter().rposition(|e| e == wanted);
        assert!(last("Init") < last("InitDone"), "{described:?}");
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .map(|object| {
                format!(
                    "{}/{}",
                    object.metadata.namespace.as_deref().unwrap_or_default(),
                    object.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        names.sort();
        assert_eq!(names, ["a/x", "b/x", "b/z"]);
    }
}

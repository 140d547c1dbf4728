//! Which namespaces the operator watches: every one, or a list
//! (`--watch-namespaces`). Every list and watch of the operator goes
//! through [`WatchScope`], so a namespace outside the list is never read.
//!
//! A list of namespaces is watched with one watch per namespace (the API
//! has no "these namespaces" watch); [`merge`] turns them into one stream
//! that a reflector, a controller or an index reads exactly as it reads one
//! cluster-wide watch.

pub mod merge;

use futures::stream::BoxStream;
use futures::{StreamExt, future};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A stream of watch events, as [`watcher`] yields.
pub type WatchStream<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// The namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace.
    Cluster,
    /// Only these namespaces: sorted, without duplicates, never empty.
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// The scope of a `--watch-namespaces` list: every namespace when it
    /// names none (blank entries are ignored).
    pub fn new(namespaces: &[String]) -> Self {
        let mut names: Vec<String> = namespaces
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            Self::Cluster
        } else {
            Self::Namespaces(names)
        }
    }

    /// Whether the operator watches `namespace`.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::Cluster => true,
            Self::Namespaces(names) => names.iter().any(|name| name == namespace),
        }
    }

    /// The listed namespaces; `None` for every namespace.
    pub fn namespaces(&self) -> Option<&[String]> {
        match self {
            Self::Cluster => None,
            Self::Namespaces(names) => Some(names),
        }
    }

    /// One Api per watched namespace, or one over every namespace.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Self::Cluster => vec![Api::all(client.clone())],
            Self::Namespaces(names) => names
                .iter()
                .map(|name| Api::namespaced(client.clone(), name))
                .collect(),
        }
    }

    /// Watches `K` in the scope: a plain watch for every namespace or for
    /// one, the [`merge`] of one watch per namespace for several.
    pub fn watch<K>(&self, client: &Client, config: watcher::Config) -> WatchStream<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + 'static,
    {
        let mut apis = self.apis::<K>(client);
        if apis.len() == 1 {
            let api = apis.remove(0);
            return watcher(api, config).boxed();
        }
        merge::merge(move || {
            apis.iter()
                .map(|api| watcher(api.clone(), config.clone()).boxed())
                .collect()
        })
        .boxed()
    }

    /// Lists `K` in the scope (one list per watched namespace).
    pub async fn list<K>(&self, client: &Client) -> Result<Vec<K>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let params = &kube::api::ListParams::default();
        let lists = future::try_join_all(
            self.apis::<K>(client)
                .into_iter()
                .map(|api| async move { api.list(params).await }),
        )
        .await?;
        Ok(lists.into_iter().flat_map(|list| list.items).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn an_empty_list_is_every_namespace() {
        assert_eq!(WatchScope::new(&[]), WatchScope::Cluster);
        assert_eq!(WatchScope::new(&names(&["", " "])), WatchScope::Cluster);
        assert!(WatchScope::Cluster.contains("anything"));
        assert_eq!(WatchScope::Cluster.namespaces(), None);
    }

    #[test]
    fn a_list_is_trimmed_sorted_and_deduplicated() {
        let scope = WatchScope::new(&names(&["team-b", " team-a", "team-b", ""]));
        assert_eq!(scope, WatchScope::Namespaces(names(&["team-a", "team-b"])));
        assert!(scope.contains("team-a"));
        assert!(scope.contains("team-b"));
        assert!(!scope.contains("team-c"));
        assert!(!scope.contains(""));
    }
}

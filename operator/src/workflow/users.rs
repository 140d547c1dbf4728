//! Which Workflows use which Connections, so that a change of a Connection
//! (created, deleted, Ready after its Secret's keys arrive) re-validates at
//! once exactly the Workflows that name it, rather than at a later poll.
//!
//! The Workflow reconciler records a Workflow's connections *before* it
//! reads them, so a Connection change that lands after that read always
//! finds the Workflow here. Holds names only; no I/O.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// A namespace and a name in it.
type Key = (String, String);

/// The index of Connection users, by namespace.
#[derive(Default)]
pub struct ConnectionUsers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    workflows_by_connection: HashMap<Key, BTreeSet<String>>,
    connections_by_workflow: HashMap<Key, Vec<String>>,
}

impl ConnectionUsers {
    /// Records that `workflow` names exactly `connections` (none: forgets it).
    pub fn set(&self, namespace: &str, workflow: &str, connections: &[String]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let workflow_key = (namespace.to_owned(), workflow.to_owned());
        let previous = inner
            .connections_by_workflow
            .remove(&workflow_key)
            .unwrap_or_default();
        for connection in previous {
            let key = (namespace.to_owned(), connection);
            if let Some(users) = inner.workflows_by_connection.get_mut(&key) {
                users.remove(workflow);
                if users.is_empty() {
                    inner.workflows_by_connection.remove(&key);
                }
            }
        }
        if connections.is_empty() {
            return;
        }
        for connection in connections {
            inner
                .workflows_by_connection
                .entry((namespace.to_owned(), connection.clone()))
                .or_default()
                .insert(workflow.to_owned());
        }
        inner
            .connections_by_workflow
            .insert(workflow_key, connections.to_vec());
    }

    /// The Workflows of `namespace` that name `connection`.
    pub fn users(&self, namespace: &str, connection: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .workflows_by_connection
            .get(&(namespace.to_owned(), connection.to_owned()))
            .map(|users| users.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl ConnectionUsers {
    /// The Workflows of every namespace that name `name` (a cluster-wide
    /// object such as a ClusterNodeType), as (namespace, workflow).
    pub fn users_in_every_namespace(&self, name: &str) -> Vec<(String, String)> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut users: Vec<(String, String)> = inner
            .workflows_by_connection
            .iter()
            .filter(|((_, used), _)| used == name)
            .flat_map(|((namespace, _), workflows)| {
                workflows
                    .iter()
                    .map(move |workflow| (namespace.clone(), workflow.clone()))
            })
            .collect();
        users.sort();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn users_follow_each_workflows_latest_connections() {
        let users = ConnectionUsers::default();
        users.set("team", "a", &names(&["crm", "slack"]));
        users.set("team", "b", &names(&["crm"]));
        users.set("other", "a", &names(&["crm"]));
        assert_eq!(users.users("team", "crm"), names(&["a", "b"]));
        assert_eq!(users.users("team", "slack"), names(&["a"]));

        users.set("team", "a", &names(&["db"]));
        assert_eq!(users.users("team", "crm"), names(&["b"]));
        assert!(users.users("team", "slack").is_empty());
        assert_eq!(users.users("team", "db"), names(&["a"]));
        assert_eq!(users.users("other", "crm"), names(&["a"]), "by namespace");
    }

    #[test]
    fn users_of_a_cluster_wide_name_come_from_every_namespace() {
        let users = ConnectionUsers::default();
        users.set("team", "b", &names(&["greeter"]));
        users.set("other", "a", &names(&["greeter", "mailer"]));
        users.set("team", "c", &names(&["mailer"]));
        assert_eq!(
            users.users_in_every_namespace("greeter"),
            [
                ("other".to_owned(), "a".to_owned()),
                ("team".to_owned(), "b".to_owned())
            ]
        );
    }

    #[test]
    fn a_workflow_without_connections_is_forgotten() {
        let users = ConnectionUsers::default();
        users.set("team", "a", &names(&["crm"]));
        users.set("team", "a", &[]);
        assert!(users.users("team", "crm").is_empty());
        let inner = users.inner.lock().unwrap();
        assert!(inner.workflows_by_connection.is_empty());
        assert!(inner.connections_by_workflow.is_empty());
    }
}

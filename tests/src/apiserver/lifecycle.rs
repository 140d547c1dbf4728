//! Deletion in the stand-in: finalizers and `deletionTimestamp`, delete
//! preconditions, propagation policies, ownerReference garbage collection
//! and namespace termination.
//!
//! Garbage collection runs synchronously after every change (the real
//! collector is asynchronous; clients must not tell the difference, because
//! they have to wait for dependents either way). Background: the owner goes
//! at once and its dependents right after it. Foreground: the owner gets the
//! `foregroundDeletion` finalizer and a `deletionTimestamp`, its dependents
//! are deleted, and the owner goes when none is left. Orphan: the owner's
//! references are removed from its dependents first. An object all of whose
//! owners are absent is deleted. `blockOwnerDeletion` is not distinguished:
//! every dependent holds a foreground deletion.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::registry::{ResourceKey, ResourceType, namespace_key};
use super::status::{ApiError, ApiResult};
use super::store::{EventType, State, meta_str, metadata_mut, now_timestamp};

const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents lose their owner reference and stay.
    Orphan,
    /// The owner goes now, dependents after it.
    Background,
    /// Dependents go first, then the owner.
    Foreground,
}

impl Propagation {
    /// Parses the API spelling.
    pub fn parse(text: &str) -> ApiResult<Self> {
        match text {
            "Orphan" => Ok(Self::Orphan),
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_request(format!(
                "unknown propagationPolicy {other:?}"
            ))),
        }
    }
}

/// The parts of `DeleteOptions` the stand-in honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`; the type's default when absent.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (may be empty) and the query's `propagationPolicy`.
    pub fn from_request(body: &[u8], query_policy: Option<&str>) -> ApiResult<Self> {
        let mut options = Self::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let parsed: Value = serde_json::from_slice(body).map_err(|error| {
                ApiError::bad_request(format!("invalid DeleteOptions: {error}"))
            })?;
            if let Some(policy) = parsed.get("propagationPolicy").and_then(Value::as_str) {
                options.propagation = Some(Propagation::parse(policy)?);
            }
            if parsed.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                options.propagation = Some(Propagation::Orphan);
            }
            let precondition = |field: &str| {
                parsed
                    .pointer(&format!("/preconditions/{field}"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            options.uid = precondition("uid");
            options.resource_version = precondition("resourceVersion");
        }
        if let Some(policy) = query_policy {
            options.propagation = Some(Propagation::parse(policy)?);
        }
        Ok(options)
    }
}

fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|owners| {
            owners
                .iter()
                .filter_map(|owner| owner.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// An object's address: its type, namespace and name.
pub(crate) type ObjectRef = (ResourceKey, String, String);

/// Garbage collection's index and work list, kept up to date by every
/// store write, so that collecting after a write looks only at the objects
/// that write can affect instead of scanning the whole store.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    /// Owner UID → the objects whose `ownerReferences` name it.
    dependents: HashMap<String, HashSet<ObjectRef>>,
    /// Work still to look at.
    pending: Vec<Pending>,
    /// Set while collecting, so the collector's own writes do not recurse into it.
    running: bool,
}

/// One item of the collector's work list.
#[derive(Debug)]
enum Pending {
    /// An object whose owners, deletion state or dependents changed.
    Object(ObjectRef),
    /// A namespace that has just started terminating: delete its contents.
    Sweep(String),
}

enum Action {
    Delete(ObjectRef),
    Remove(ObjectRef),
    DropForegroundFinalizer(ObjectRef),
}

fn reference_of(key: &ResourceKey, object: &Value) -> ObjectRef {
    (
        key.clone(),
        meta_str(object, "namespace").to_string(),
        meta_str(object, "name").to_string(),
    )
}

impl State {
    fn type_of(&self, key: &ResourceKey) -> Option<ResourceType> {
        self.registry.get(key).cloned()
    }

    fn dependents_of(&self, uid: &str) -> Vec<ObjectRef> {
        self.collector
            .dependents
            .get(uid)
            .map(|found| found.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn queue_owner(&mut self, uid: &str) {
        if let Some(owner) = self.uids.get(uid).cloned() {
            self.collector.pending.push(Pending::Object(owner));
        }
    }

    fn unindex(&mut self, owner: &str, dependent: &ObjectRef) {
        if let Some(found) = self.collector.dependents.get_mut(owner) {
            found.remove(dependent);
            if found.is_empty() {
                self.collector.dependents.remove(owner);
            }
        }
    }

    /// Records a stored write (`old` is what it replaced) for collection.
    pub(crate) fn track_write(&mut self, key: &ResourceKey, old: Option<&Value>, new: &Value) {
        let reference = reference_of(key, new);
        let old_owners = old.map(owner_uids).unwrap_or_default();
        let new_owners = owner_uids(new);
        if old_owners != new_owners {
            for owner in &old_owners {
                self.unindex(owner, &reference);
            }
            for owner in &new_owners {
                self.collector
                    .dependents
                    .entry(owner.clone())
                    .or_default()
                    .insert(reference.clone());
            }
        }
        // An owner in foreground deletion must delete a dependent that
        // appears while it waits.
        for owner in &new_owners {
            self.queue_owner(owner);
        }
        if *key == namespace_key() && is_deleting(new) && !old.is_some_and(is_deleting) {
            self.collector
                .pending
                .push(Pending::Sweep(reference.2.clone()));
        }
        self.collector.pending.push(Pending::Object(reference));
    }

    /// Records a removal for collection: dependents may now be orphans,
    /// owners in foreground deletion may be done waiting, and the namespace
    /// may now be empty.
    pub(crate) fn track_remove(&mut self, key: &ResourceKey, object: &Value) {
        let reference = reference_of(key, object);
        for owner in owner_uids(object) {
            self.unindex(&owner, &reference);
            self.queue_owner(&owner);
        }
        for dependent in self.dependents_of(meta_str(object, "uid")) {
            self.collector.pending.push(Pending::Object(dependent));
        }
        if !reference.1.is_empty() {
            self.collector.pending.push(Pending::Object((
                namespace_key(),
                String::new(),
                reference.1,
            )));
        }
    }

    fn namespace_is_empty(&self, namespace: &str) -> bool {
        self.registry
            .namespaced_keys()
            .iter()
            .all(|key| self.list(key, Some(namespace)).is_empty())
    }

    /// Deletes an object under the API's rules and returns its last state.
    pub(crate) fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let key = resource.key();
        let Some(current) = self.get(&key, namespace, name).cloned() else {
            return Err(ApiError::not_found(State::subject(resource, name)));
        };
        let uid = meta_str(&current, "uid").to_string();
        if options.uid.as_ref().is_some_and(|wanted| *wanted != uid)
            || options
                .resource_version
                .as_ref()
                .is_some_and(|wanted| wanted != meta_str(&current, "resourceVersion"))
        {
            return Err(ApiError::conflict(State::subject(resource, name)));
        }
        let default_policy = if resource.group == "batch" && resource.plural == "jobs" {
            // batch/v1 Jobs keep the legacy default: their pods are orphaned.
            Propagation::Orphan
        } else {
            Propagation::Background
        };
        let policy = options.propagation.unwrap_or(default_policy);
        if policy == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let mut object_finalizers = finalizers(&current);
        if policy == Propagation::Foreground
            && !self.dependents_of(&uid).is_empty()
            && !object_finalizers
                .iter()
                .any(|finalizer| finalizer == FOREGROUND_FINALIZER)
        {
            object_finalizers.push(FOREGROUND_FINALIZER.to_string());
        }
        let is_namespace = key == namespace_key();
        if object_finalizers.is_empty() && !is_namespace {
            let removed = self.remove(&key, namespace, name);
            self.collect_garbage();
            return removed.ok_or_else(|| ApiError::not_found(State::subject(resource, name)));
        }
        let mut next = current.clone();
        {
            let meta = metadata_mut(&mut next);
            meta.entry("deletionTimestamp")
                .or_insert_with(|| json!(now_timestamp()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if !object_finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(object_finalizers));
            }
        }
        if is_namespace {
            next["status"] = json!({"phase": "Terminating"});
        }
        if next == current {
            return Ok(current);
        }
        let stored = self.replace(&key, next, EventType::Modified, Some(current))?;
        Ok(self.get(&key, namespace, name).cloned().unwrap_or(stored))
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (key, namespace, name) in self.dependents_of(uid) {
            let Some(previous) = self.get(&key, &namespace, &name).cloned() else {
                continue;
            };
            let mut dependent = previous.clone();
            if let Some(owners) = dependent
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                owners.retain(|owner| owner.get("uid").and_then(Value::as_str) != Some(uid));
            }
            // Replacing an existing object cannot fail.
            let _ = self.replace(&key, dependent, EventType::Modified, Some(previous));
        }
    }

    /// What one object's lifecycle needs now.
    fn plan_object(&self, reference: &ObjectRef) -> Vec<Action> {
        let (key, namespace, name) = reference;
        let Some(object) = self.get(key, namespace, name) else {
            return Vec::new();
        };
        if !is_deleting(object) {
            let owners = owner_uids(object);
            let orphaned =
                !owners.is_empty() && owners.iter().all(|owner| !self.uids.contains_key(owner));
            return if orphaned {
                vec![Action::Delete(reference.clone())]
            } else {
                Vec::new()
            };
        }
        let object_finalizers = finalizers(object);
        if *key == namespace_key() {
            // Its contents were swept when it started terminating.
            return if object_finalizers.is_empty() && self.namespace_is_empty(name) {
                vec![Action::Remove(reference.clone())]
            } else {
                Vec::new()
            };
        }
        if object_finalizers.is_empty() {
            return vec![Action::Remove(reference.clone())];
        }
        if !object_finalizers
            .iter()
            .any(|finalizer| finalizer == FOREGROUND_FINALIZER)
        {
            return Vec::new();
        }
        let waiting = self.dependents_of(meta_str(object, "uid"));
        if waiting.is_empty() {
            return vec![Action::DropForegroundFinalizer(reference.clone())];
        }
        waiting
            .into_iter()
            .filter(|(key, namespace, name)| {
                self.get(key, namespace, name)
                    .is_some_and(|dependent| !is_deleting(dependent))
            })
            .map(Action::Delete)
            .collect()
    }

    /// Deletes every object of a terminating namespace.
    fn plan_sweep(&self, namespace: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        for key in self.registry.namespaced_keys() {
            for content in self.list(&key, Some(namespace)) {
                if !is_deleting(content) {
                    actions.push(Action::Delete(reference_of(&key, content)));
                }
            }
        }
        actions
    }

    /// Works through the collector's list until nothing is left to do.
    pub(crate) fn collect_garbage(&mut self) {
        if self.collector.running {
            return;
        }
        self.collector.running = true;
        while let Some(item) = self.collector.pending.pop() {
            let actions = match item {
                Pending::Object(reference) => self.plan_object(&reference),
                Pending::Sweep(namespace) => self.plan_sweep(&namespace),
            };
            for action in actions {
                match action {
                    Action::Delete((key, namespace, name)) => {
                        if let Some(resource) = self.type_of(&key) {
                            // Already gone (two owners, two paths): nothing to do.
                            let _ = self.delete(
                                &resource,
                                &namespace,
                                &name,
                                &DeleteOptions {
                                    propagation: Some(Propagation::Background),
                                    ..DeleteOptions::default()
                                },
                            );
                        }
                    }
                    Action::Remove((key, namespace, name)) => {
                        self.remove(&key, &namespace, &name);
                    }
                    Action::DropForegroundFinalizer((key, namespace, name)) => {
                        if let Some(current) = self.get(&key, &namespace, &name).cloned() {
                            let mut next = current.clone();
                            let kept: Vec<String> = finalizers(&current)
                                .into_iter()
                                .filter(|finalizer| finalizer != FOREGROUND_FINALIZER)
                                .collect();
                            metadata_mut(&mut next).insert("finalizers".into(), json!(kept));
                            let _ = self.replace(&key, next, EventType::Modified, Some(current));
                        }
                    }
                }
            }
        }
        self.collector.running = false;
    }
}

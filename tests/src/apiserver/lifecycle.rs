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

use std::collections::HashMap;

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

type ObjectRef = (ResourceKey, String, String);

enum Action {
    Delete(ObjectRef),
    Remove(ObjectRef),
    DropForegroundFinalizer(ObjectRef),
}

impl State {
    fn type_of(&self, key: &ResourceKey) -> Option<ResourceType> {
        self.registry.get(key).cloned()
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ObjectRef, Value)> {
        let mut found = Vec::new();
        for (key, table) in &self.tables {
            for ((namespace, name), object) in &table.objects {
                if owner_uids(object).iter().any(|owner| owner == uid) {
                    found.push((
                        (key.clone(), namespace.clone(), name.clone()),
                        object.clone(),
                    ));
                }
            }
        }
        found
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
        for ((key, _, _), mut dependent) in self.dependents_of(uid) {
            let previous = dependent.clone();
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

    fn plan_garbage(&self) -> Vec<Action> {
        let mut dependents: HashMap<&str, Vec<(ObjectRef, bool)>> = HashMap::new();
        let mut namespace_sizes: HashMap<&str, usize> = HashMap::new();
        for (key, table) in &self.tables {
            for ((namespace, name), object) in &table.objects {
                if !namespace.is_empty() {
                    *namespace_sizes.entry(namespace.as_str()).or_default() += 1;
                }
                if let Some(owners) = object
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                {
                    for owner in owners
                        .iter()
                        .filter_map(|owner| owner.get("uid").and_then(Value::as_str))
                    {
                        dependents.entry(owner).or_default().push((
                            (key.clone(), namespace.clone(), name.clone()),
                            is_deleting(object),
                        ));
                    }
                }
            }
        }
        let mut actions = Vec::new();
        for (key, table) in &self.tables {
            for ((namespace, name), object) in &table.objects {
                let reference = || (key.clone(), namespace.clone(), name.clone());
                let owners = owner_uids(object);
                let deleting = is_deleting(object);
                if !deleting
                    && !owners.is_empty()
                    && owners.iter().all(|owner| !self.uids.contains_key(owner))
                {
                    actions.push(Action::Delete(reference()));
                    continue;
                }
                if !deleting {
                    continue;
                }
                let object_finalizers = finalizers(object);
                let is_namespace = *key == namespace_key();
                if is_namespace {
                    if namespace_sizes.get(name.as_str()).copied().unwrap_or(0) == 0 {
                        if object_finalizers.is_empty() {
                            actions.push(Action::Remove(reference()));
                        }
                    } else {
                        for namespaced_key in self.registry.namespaced_keys() {
                            for content in self.list(&namespaced_key, Some(name)) {
                                if !is_deleting(content) {
                                    actions.push(Action::Delete((
                                        namespaced_key.clone(),
                                        name.clone(),
                                        meta_str(content, "name").to_string(),
                                    )));
                                }
                            }
                        }
                    }
                    continue;
                }
                if object_finalizers.is_empty() {
                    actions.push(Action::Remove(reference()));
                } else if object_finalizers
                    .iter()
                    .any(|finalizer| finalizer == FOREGROUND_FINALIZER)
                {
                    let uid = meta_str(object, "uid");
                    let waiting = dependents.get(uid).map(Vec::as_slice).unwrap_or_default();
                    if waiting.is_empty() {
                        actions.push(Action::DropForegroundFinalizer(reference()));
                    }
                    for (dependent, dependent_deleting) in waiting {
                        if !dependent_deleting {
                            actions.push(Action::Delete(dependent.clone()));
                        }
                    }
                }
            }
        }
        actions
    }

    /// Runs garbage collection until nothing is left to do.
    pub(crate) fn collect_garbage(&mut self) {
        if self.collecting_garbage {
            return;
        }
        self.collecting_garbage = true;
        loop {
            let actions = self.plan_garbage();
            if actions.is_empty() {
                break;
            }
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
        self.collecting_garbage = false;
    }
}

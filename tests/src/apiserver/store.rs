//! The object store of the stand-in: tables of JSON objects, one global
//! `resourceVersion` counter and a bounded event log per resource type.
//!
//! Every change bumps the counter, is appended to its type's log (the watch
//! source) and wakes the watchers. The store enforces what the API server
//! enforces on every write — server-set metadata, `generation` bumped only
//! when something other than metadata and status changes, stale
//! `resourceVersion` → 409, the status subresource split, no-op writes that
//! change nothing — and leaves deletion, finalizers and garbage collection
//! to `lifecycle.rs` and CRD serving to `crds.rs`. It does not parse HTTP
//! or patches.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};

use super::patch::record_managed_fields;
use super::registry::{Registry, ResourceKey, ResourceType, crd_key, namespace_key};
use super::selector::Selector;
use super::status::{ApiError, ApiResult, Subject};

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in a type's event log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The `resourceVersion` the change produced.
    pub resource_version: u64,
    /// What happened.
    pub event: EventType,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Value>,
    /// The object before a modification, so filtered watches can turn a
    /// change that leaves or enters the selection into DELETED/ADDED.
    pub previous: Option<Arc<Value>>,
}

/// Objects of one resource type and their recent history.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) objects: BTreeMap<(String, String), Value>,
    log: VecDeque<LogEntry>,
    /// Every change after this version is still in `log`.
    oldest_resource_version: u64,
}

impl Table {
    /// An empty table whose history starts at `resource_version`.
    pub(crate) fn starting_at(resource_version: u64) -> Self {
        Self {
            oldest_resource_version: resource_version,
            ..Self::default()
        }
    }
}

/// Who writes, for `metadata.managedFields`.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// `fieldManager` of the request.
    pub manager: String,
    /// `Apply` for server-side apply, `Update` otherwise.
    pub operation: &'static str,
    /// The `fieldsV1` set an apply claimed (apply only).
    pub fields: Option<Value>,
}

impl WriteContext {
    /// A plain update by `manager`.
    pub fn update(manager: impl Into<String>) -> Self {
        Self {
            manager: manager.into(),
            operation: "Update",
            fields: None,
        }
    }
}

/// The mutable state behind the store's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) resource_version: u64,
    pub(crate) registry: Registry,
    pub(crate) tables: HashMap<ResourceKey, Table>,
    /// Every live object by UID, for owner lookups.
    pub(crate) uids: HashMap<String, (ResourceKey, String, String)>,
    history: usize,
    latest: tokio::sync::watch::Sender<u64>,
    /// Garbage collection's owner index and work list.
    pub(crate) collector: super::lifecycle::Collector,
}

/// The shared store.
#[derive(Debug, Clone)]
pub struct Store {
    state: Arc<Mutex<State>>,
    latest: tokio::sync::watch::Receiver<u64>,
}

/// `metadata.creationTimestamp`-style time, second precision as Kubernetes writes it.
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn metadata(object: &Value) -> &Value {
    object.get("metadata").unwrap_or(&Value::Null)
}

/// A metadata string field, "" when absent.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object)
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata` as a mutable map, created when missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// The object without metadata and status: what `generation` tracks.
fn generation_relevant(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    copy
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    copy
}

/// Names the server tries for one `generateName` create.
const GENERATE_NAME_TRIES: usize = 8;

/// Five random characters as the API server picks them for `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect()
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || character == '-'
                || character == '.'
        })
        && name.starts_with(|character: char| character.is_ascii_alphanumeric())
        && name.ends_with(|character: char| character.is_ascii_alphanumeric())
}

impl Store {
    /// An empty store serving the built-in types, keeping `history` changes
    /// per resource type for watches from an old `resourceVersion`.
    pub fn new(history: usize) -> Self {
        let (sender, receiver) = tokio::sync::watch::channel(0);
        let state = State {
            resource_version: 0,
            registry: Registry::default(),
            tables: HashMap::new(),
            uids: HashMap::new(),
            history: history.max(1),
            latest: sender,
            collector: Default::default(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            latest: receiver,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data behind
        // (every mutation is a single insert/remove), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that changes whenever the global `resourceVersion` does.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.latest.clone()
    }

    /// A copy of the served types.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }
}

impl State {
    pub(crate) fn subject<'a>(resource: &'a ResourceType, name: &'a str) -> Subject<'a> {
        Subject {
            group: &resource.group,
            plural: &resource.plural,
            name,
        }
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// The table of a type; built-in types' tables start empty with their
    /// whole history kept (custom types get theirs in `serve_crd`).
    fn table(&mut self, key: &ResourceKey) -> &mut Table {
        self.tables.entry(key.clone()).or_default()
    }

    fn record(&mut self, key: &ResourceKey, entry: LogEntry) {
        let history = self.history;
        let resource_version = entry.resource_version;
        let table = self.table(key);
        table.log.push_back(entry);
        while table.log.len() > history {
            if let Some(evicted) = table.log.pop_front() {
                table.oldest_resource_version = evicted.resource_version;
            }
        }
        self.latest.send_replace(resource_version);
    }

    pub(crate) fn get(&self, key: &ResourceKey, namespace: &str, name: &str) -> Option<&Value> {
        self.tables.get(key).and_then(|table| {
            table
                .objects
                .get(&(namespace.to_string(), name.to_string()))
        })
    }

    /// Objects of a type, in (namespace, name) order, optionally one namespace.
    pub(crate) fn list(&self, key: &ResourceKey, namespace: Option<&str>) -> Vec<&Value> {
        let Some(table) = self.tables.get(key) else {
            return Vec::new();
        };
        match namespace {
            // Keys sort by namespace first: one namespace is one range.
            Some(wanted) => table
                .objects
                .range((wanted.to_owned(), String::new())..)
                .take_while(|((object_namespace, _), _)| object_namespace == wanted)
                .map(|(_, object)| object)
                .collect(),
            None => table.objects.values().collect(),
        }
    }

    /// Changes after `since`, or 410 when they are no longer all kept.
    pub(crate) fn events_since(&self, key: &ResourceKey, since: u64) -> ApiResult<Vec<LogEntry>> {
        let Some(table) = self.tables.get(key) else {
            // Nothing of this type was ever written: nothing was missed.
            return Ok(Vec::new());
        };
        if since < table.oldest_resource_version {
            return Err(ApiError::gone(format!(
                "too old resource version: {since} ({})",
                table.oldest_resource_version + 1
            )));
        }
        // The log is in resourceVersion order: skip to the first newer entry
        // (every watcher calls this on every write of any type).
        let first = table
            .log
            .partition_point(|entry| entry.resource_version <= since);
        Ok(table.log.range(first..).cloned().collect())
    }

    /// Whether a list continued from version `since` is still consistent.
    pub(crate) fn check_continue(&self, key: &ResourceKey, since: u64) -> ApiResult<()> {
        match self.tables.get(key) {
            Some(table) if since < table.oldest_resource_version => Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            )),
            _ => Ok(()),
        }
    }

    fn namespace_usable(&self, namespace: &str) -> ApiResult<()> {
        let Some(object) = self.get(&namespace_key(), "", namespace) else {
            return Err(ApiError::not_found(Subject {
                group: "",
                plural: "namespaces",
                name: namespace,
            }));
        };
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Inserts a new object; fills in name (from `generateName`), uid,
    /// creation time, generation and resource version.
    pub(crate) fn create(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        mut object: Value,
        context: &WriteContext,
    ) -> ApiResult<Value> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let mut name = meta_str(&object, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&object, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    State::subject(resource, ""),
                    "metadata.name",
                    "name or generateName is required",
                ));
            }
            // Like the real server: five characters of an alphabet without
            // vowels and look-alikes, and (since Kubernetes 1.32) a few
            // more tries before a clash becomes AlreadyExists.
            let key = resource.key();
            for _ in 0..GENERATE_NAME_TRIES {
                name = format!("{prefix}{}", random_suffix());
                if self.get(&key, namespace, &name).is_none() {
                    break;
                }
            }
        }
        if !is_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                State::subject(resource, &name),
                "metadata.name",
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ));
        }
        if resource.namespaced {
            self.namespace_usable(namespace)?;
        }
        let key = resource.key();
        if self.get(&key, namespace, &name).is_some() {
            return Err(ApiError::already_exists(State::subject(resource, &name)));
        }
        if resource.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        super::kinds::prepare_create(resource, &mut object)?;
        let resource_version = self.next_resource_version();
        let uid = uuid::Uuid::new_v4().to_string();
        {
            let meta = metadata_mut(&mut object);
            meta.insert("name".into(), json!(name));
            if resource.namespaced {
                meta.insert("namespace".into(), json!(namespace));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uid));
            meta.insert("creationTimestamp".into(), json!(now_timestamp()));
            meta.insert(
                "resourceVersion".into(),
                json!(resource_version.to_string()),
            );
            meta.insert("generation".into(), json!(1));
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
        }
        record_managed_fields(&mut object, context, false);
        if key == crd_key() {
            self.serve_crd(resource, &mut object)?;
        }
        self.uids
            .insert(uid, (key.clone(), namespace.to_string(), name.clone()));
        self.table(&key)
            .objects
            .insert((namespace.to_string(), name), object.clone());
        self.track_write(&key, None, &object);
        self.record(
            &key,
            LogEntry {
                resource_version,
                event: EventType::Added,
                object: Arc::new(object.clone()),
                previous: None,
            },
        );
        self.collect_garbage();
        Ok(object)
    }

    /// Writes `desired` over the stored object under the API's rules: a
    /// status write changes only `status`, a main write keeps the stored
    /// status (when the type has the subresource), server-set metadata is
    /// kept, a stale `resourceVersion` is a conflict and a write that changes
    /// nothing is not recorded.
    pub(crate) fn update(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        desired: Value,
        status_write: bool,
        context: &WriteContext,
    ) -> ApiResult<Value> {
        let key = resource.key();
        let Some(current) = self.get(&key, namespace, name).cloned() else {
            return Err(ApiError::not_found(State::subject(resource, name)));
        };
        if !desired.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let requested_version = meta_str(&desired, "resourceVersion");
        if !requested_version.is_empty()
            && requested_version != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(State::subject(resource, name)));
        }
        let mut next = if status_write {
            let mut next = current.clone();
            match desired.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            next
        } else {
            let mut next = desired;
            if resource.status_subresource
                && let Some(map) = next.as_object_mut()
            {
                match current.get("status") {
                    Some(status) => {
                        map.insert("status".into(), status.clone());
                    }
                    None => {
                        map.remove("status");
                    }
                }
            }
            next
        };
        {
            let current_meta = metadata(&current).clone();
            let meta = metadata_mut(&mut next);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match current_meta.get(field) {
                    Some(value) => meta.insert(field.into(), value.clone()),
                    None => meta.remove(field),
                };
            }
            if !meta.contains_key("managedFields")
                && let Some(fields) = current_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), fields.clone());
            }
        }
        if !status_write {
            super::kinds::prepare_update(resource, &mut next)?;
        }
        if generation_relevant(&next) != generation_relevant(&current) {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut next).insert("generation".into(), json!(generation + 1));
        }
        if key == crd_key() {
            self.serve_crd(resource, &mut next)?;
        }
        if without_managed_fields(&next) == without_managed_fields(&current) {
            return Ok(current);
        }
        record_managed_fields(&mut next, context, status_write);
        self.replace(&key, next, EventType::Modified, Some(current))
    }

    /// Stores `object` with a fresh resource version and logs the change.
    pub(crate) fn replace(
        &mut self,
        key: &ResourceKey,
        mut object: Value,
        event: EventType,
        previous: Option<Value>,
    ) -> ApiResult<Value> {
        let resource_version = self.next_resource_version();
        metadata_mut(&mut object).insert(
            "resourceVersion".into(),
            json!(resource_version.to_string()),
        );
        let namespace = meta_str(&object, "namespace").to_string();
        let name = meta_str(&object, "name").to_string();
        let old = self
            .table(key)
            .objects
            .insert((namespace, name), object.clone());
        self.track_write(key, old.as_ref(), &object);
        self.record(
            key,
            LogEntry {
                resource_version,
                event,
                object: Arc::new(object.clone()),
                previous: previous.map(Arc::new),
            },
        );
        self.collect_garbage();
        Ok(object)
    }

    /// Removes an object for good and logs the deletion.
    pub(crate) fn remove(
        &mut self,
        key: &ResourceKey,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut object = self
            .tables
            .get_mut(key)?
            .objects
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.uids.remove(meta_str(&object, "uid"));
        self.track_remove(key, &object);
        let resource_version = self.next_resource_version();
        metadata_mut(&mut object).insert(
            "resourceVersion".into(),
            json!(resource_version.to_string()),
        );
        self.record(
            key,
            LogEntry {
                resource_version,
                event: EventType::Deleted,
                object: Arc::new(object.clone()),
                previous: None,
            },
        );
        if *key == crd_key() {
            self.stop_serving_crd(&object);
        }
        Some(object)
    }

    /// The selection a list or watch asked for.
    pub(crate) fn select<'a>(
        objects: impl IntoIterator<Item = &'a Value>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        objects
            .into_iter()
            .filter(|object| labels.matches_labels(object) && fields.matches_fields(object))
            .cloned()
            .collect()
    }
}

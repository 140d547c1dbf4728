//! Which resources the stand-in serves, and the discovery documents for them.
//!
//! The registry holds the built-in resource types (core/v1 Namespace, Secret,
//! ConfigMap, Pod, Event, ServiceAccount; batch/v1 Job; coordination/v1 Lease;
//! events.k8s.io/v1 Event; apiextensions.k8s.io/v1 CustomResourceDefinition)
//! and turns each stored CustomResourceDefinition into a served type. It
//! renders `/api`, `/apis`, `/apis/<group>` and the per group/version
//! resource lists. It does not store objects and does not validate custom
//! resources against their OpenAPI schema.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Identity of a stored resource type: objects of all versions of one
/// group/plural share one table (no conversion between versions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group, "" for core.
    pub group: String,
    /// Plural name (`widgets`).
    pub plural: String,
}

/// One served resource type.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, "" for core.
    pub group: String,
    /// Served versions, preferred (storage) first.
    pub versions: Vec<String>,
    /// Kind (`Widget`).
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether `/status` is a subresource with its own write rules.
    pub status_subresource: bool,
    /// `kubectl` short names.
    pub short_names: Vec<String>,
    /// `kubectl get <category>` names.
    pub categories: Vec<String>,
    /// UID of the CustomResourceDefinition that defines it, if any.
    pub crd_uid: Option<String>,
}

impl ResourceType {
    /// The table key of this type.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `apiVersion` for the given version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `apiVersion` of the preferred version.
    pub fn preferred_api_version(&self) -> String {
        self.api_version(self.versions.first().map(String::as_str).unwrap_or("v1"))
    }

    fn builtin(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        Self {
            group: group.to_string(),
            versions: vec![version.to_string()],
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            namespaced,
            status_subresource: status,
            short_names: Vec::new(),
            categories: Vec::new(),
            crd_uid: None,
        }
    }

    fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|name| name.to_string()).collect();
        self
    }

    /// Reads a CustomResourceDefinition object into a served type, or `None`
    /// when it names nothing servable.
    pub fn from_crd(crd: &Value) -> Option<Self> {
        let spec = crd.get("spec")?;
        let names = spec.get("names")?;
        let served: Vec<&Value> = spec
            .get("versions")?
            .as_array()?
            .iter()
            .filter(|version| {
                version
                    .get("served")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
            })
            .collect();
        let mut ordered: Vec<&Value> = served
            .iter()
            .copied()
            .filter(|version| {
                version
                    .get("storage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .collect();
        ordered.extend(served.iter().copied().filter(|version| {
            !version
                .get("storage")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }));
        let versions: Vec<String> = ordered
            .iter()
            .filter_map(|version| {
                version
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        if versions.is_empty() {
            return None;
        }
        let status_subresource = ordered
            .iter()
            .any(|version| version.pointer("/subresources/status").is_some());
        let strings = |value: Option<&Value>| -> Vec<String> {
            value
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let kind = names.get("kind")?.as_str()?.to_string();
        Some(Self {
            group: spec.get("group")?.as_str()?.to_string(),
            versions,
            plural: names.get("plural")?.as_str()?.to_string(),
            singular: names
                .get("singular")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase()),
            kind,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            status_subresource,
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            crd_uid: crd
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// All served resource types.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<ResourceKey, ResourceType>,
}

/// The key of the CustomResourceDefinition type, whose writes change the registry.
pub fn crd_key() -> ResourceKey {
    ResourceKey {
        group: "apiextensions.k8s.io".to_string(),
        plural: "customresourcedefinitions".to_string(),
    }
}

/// The key of the Namespace type.
pub fn namespace_key() -> ResourceKey {
    ResourceKey {
        group: String::new(),
        plural: "namespaces".to_string(),
    }
}

impl Default for Registry {
    fn default() -> Self {
        let builtins = [
            ResourceType::builtin("", "v1", "Namespace", "namespaces", false, true)
                .with_short_names(&["ns"]),
            ResourceType::builtin("", "v1", "Secret", "secrets", true, false),
            ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true, false)
                .with_short_names(&["cm"]),
            ResourceType::builtin("", "v1", "Pod", "pods", true, true).with_short_names(&["po"]),
            ResourceType::builtin("", "v1", "Event", "events", true, false)
                .with_short_names(&["ev"]),
            ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true, false)
                .with_short_names(&["sa"]),
            ResourceType::builtin("batch", "v1", "Job", "jobs", true, true),
            ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true, false),
            // Stored and watched only (the operator mirrors the ones that
            // grant Sluice roles); the stand-in's own access checks come
            // from `access::Identities`, not from these.
            ResourceType::builtin(
                "rbac.authorization.k8s.io",
                "v1",
                "RoleBinding",
                "rolebindings",
                true,
                false,
            ),
            ResourceType::builtin(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                false,
                false,
            ),
            ResourceType::builtin(
                "admissionregistration.k8s.io",
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                false,
                false,
            ),
            ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true, false)
                .with_short_names(&["ev"]),
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                true,
            )
            .with_short_names(&["crd", "crds"]),
        ];
        Self {
            types: builtins
                .into_iter()
                .map(|resource| (resource.key(), resource))
                .collect(),
        }
    }
}

impl Registry {
    /// The type served at `group/version` under `plural`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        let key = ResourceKey {
            group: group.to_string(),
            plural: plural.to_string(),
        };
        self.types
            .get(&key)
            .filter(|resource| resource.versions.iter().any(|served| served == version))
    }

    /// The type stored under `key`.
    pub fn get(&self, key: &ResourceKey) -> Option<&ResourceType> {
        self.types.get(key)
    }

    /// Starts serving (or re-serves with new names/versions) a CRD's type.
    pub fn register(&mut self, resource: ResourceType) {
        self.types.insert(resource.key(), resource);
    }

    /// Stops serving a type; returns it if it was served.
    pub fn unregister(&mut self, key: &ResourceKey) -> Option<ResourceType> {
        self.types.remove(key)
    }

    /// Types whose objects live in namespaces.
    pub fn namespaced_keys(&self) -> Vec<ResourceKey> {
        self.types
            .values()
            .filter(|resource| resource.namespaced)
            .map(ResourceType::key)
            .collect()
    }

    /// All served types.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    fn groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for resource in self
            .types
            .values()
            .filter(|resource| !resource.group.is_empty())
        {
            let versions = groups.entry(resource.group.as_str()).or_default();
            for version in &resource.versions {
                if !versions.contains(&version.as_str()) {
                    versions.push(version.as_str());
                }
            }
        }
        groups
    }

    /// `GET /api`.
    pub fn core_versions(&self) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })
    }

    fn group_document(name: &str, versions: &[&str]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|version| json!({"groupVersion": format!("{name}/{version}"), "version": version}))
            .collect();
        json!({
            "name": name,
            "versions": versions,
            "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        })
    }

    /// `GET /apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(name, versions)| Self::group_document(name, versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`.
    pub fn group(&self, group: &str) -> Option<Value> {
        let groups = self.groups();
        let versions = groups.get(group)?;
        let mut document = Self::group_document(group, versions);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        Some(document)
    }

    /// `GET /api/v1` or `GET /apis/<group>/<version>`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for resource in self.types.values().filter(|resource| {
            resource.group == group && resource.versions.iter().any(|served| served == version)
        }) {
            resources.push(json!({
                "name": resource.plural,
                "singularName": resource.singular,
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": resource.short_names,
                "categories": resource.categories,
            }));
            if resource.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", resource.plural),
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }
}

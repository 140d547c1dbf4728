//! The smallest OpenAPI v3 documents kubectl needs.
//!
//! `kubectl apply` (with the default `--validate=strict`) asks
//! `/openapi/v3/<group-version>` whether the PATCH operation of a kind
//! accepts the `fieldValidation` query parameter; when it does, kubectl
//! leaves validation to the server and needs no schema. These documents
//! therefore list one PATCH operation per kind, tagged with
//! `x-kubernetes-group-version-kind` and declaring `fieldValidation`, and
//! contain no schemas. `/openapi/v2` stays 404 (kubectl only falls back to
//! it when v3 is missing).

use serde_json::{Map, Value, json};

use super::registry::Registry;

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: one entry per served group/version.
pub fn index(registry: &Registry, resource_version: u64) -> Value {
    let mut paths = Map::new();
    for resource in registry.all() {
        for version in &resource.versions {
            let path = group_version_path(&resource.group, version);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={resource_version}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<api/v1 | apis/group/version>`, or `None` when nothing is served there.
pub fn group_version(registry: &Registry, path: &str) -> Option<Value> {
    let mut paths = Map::new();
    for resource in registry.all() {
        for version in &resource.versions {
            if group_version_path(&resource.group, version) != path {
                continue;
            }
            let scope = if resource.namespaced {
                "namespaces/{namespace}/"
            } else {
                ""
            };
            let operation = json!({
                "patch": {
                    "operationId": format!("patch{}", resource.kind),
                    "x-kubernetes-group-version-kind": {"group": resource.group, "version": version, "kind": resource.kind},
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            });
            paths.insert(
                format!("/{path}/{scope}{}/{{name}}", resource.plural),
                operation,
            );
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "sluice-e2e api server stand-in", "version": "v1"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

//! HTTP side of the stand-in: parses Kubernetes API paths and query
//! parameters, maps verbs onto the store and renders objects, lists and
//! `Status` errors.
//!
//! Served: discovery (`/api`, `/apis`, `/apis/<group>`, resource lists,
//! `/version`); get, list (label and field selectors, `limit` with continue
//! tokens), watch, create, replace, patch (merge, JSON, strategic, apply),
//! delete and delete-collection on objects and on their `/status`
//! subresource (also as `PartialObjectMetadata` when the Accept header
//! asks for it), and the minimal `/openapi/v3` documents kubectl apply needs
//! (see `openapi.rs`); writes go through `writes.rs` (admission, `dryRun`). Not served: `/openapi/v2` (404),
//! protobuf, Table output, pod logs, exec, authentication and
//! authorization of requests (every request is allowed; TokenReview and
//! SubjectAccessReview are answered by `access.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::lifecycle::DeleteOptions;
use super::openapi;
use super::patch::{self, PatchKind};
use super::registry::ResourceType;
use super::routes::{ResourcePath, Route, parse_route};
use super::selector::Selector;
use super::status::{ApiError, ApiResult};
use super::store::{State as StoreState, Store, WriteContext, meta_str};
use super::watch::{self, WatchRequest};

#[path = "writes.rs"]
mod writes;

/// Settings of one stand-in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle time before a watch sends a bookmark.
    pub bookmark_interval: Duration,
}

/// State shared by all requests.
#[derive(Debug)]
pub struct Shared {
    /// The objects.
    pub store: Store,
    /// Server settings.
    pub settings: Settings,
    /// LIST requests answered, by resource plural (for tests that bound
    /// how often a client lists).
    pub lists: Arc<std::sync::Mutex<HashMap<String, u64>>>,
}

/// Counts a LIST (a collection GET that is not a watch).
fn count_list(shared: &Shared, method: &Method, uri: &Uri) {
    if *method != Method::GET {
        return;
    }
    let Some(Route::Resource(path)) = parse_route(uri.path()) else {
        return;
    };
    let query = uri.query().unwrap_or_default();
    let watching = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    if path.name.is_none() && !watching {
        // A LIST is counted once, by its first page: the pages after it
        // carry `continue`.
        let key = if query.split('&').any(|pair| pair.starts_with("continue=")) {
            format!("{}#page", path.plural)
        } else {
            path.plural
        };
        *shared
            .lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
    }
}

const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The `PartialObjectMetadata` form of an object.
pub(crate) fn partial_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.status_code(), &error.to_status())
}

/// The single entry point for every request.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(body) => body,
        Err(error) => {
            return error_response(&ApiError::bad_request(format!(
                "failed to read body: {error}"
            )));
        }
    };
    count_list(&shared, &parts.method, &parts.uri);
    match dispatch(&shared, &parts.method, &parts.uri, &parts.headers, body) {
        Ok(Dispatched::Done(response)) => response,
        Ok(Dispatched::Write(request)) => request.write(&parts.method).await,
        Err(error) => error_response(&error),
    }
}

/// What a request needs after routing: nothing more, or a write (which
/// may call admission webhooks, so it finishes outside the store's lock).
enum Dispatched<'a> {
    Done(Response),
    Write(Box<ResourceRequest<'a>>),
}

fn dispatch<'a>(
    shared: &'a Shared,
    method: &Method,
    uri: &Uri,
    headers: &'a HeaderMap,
    body: Bytes,
) -> ApiResult<Dispatched<'a>> {
    let query: HashMap<String, String> = Query::try_from_uri(uri)
        .map(|Query(query)| query)
        .unwrap_or_default();
    let not_found = || ApiError::no_route(uri.path());
    let route = parse_route(uri.path()).ok_or_else(not_found)?;
    let registry = shared.store.registry();
    let document = match route {
        Route::CoreVersions => Some(registry.core_versions()),
        Route::GroupList => Some(registry.group_list()),
        Route::Group(group) => registry.group(&group),
        Route::ResourceList { group, version } => registry.resource_list(&group, &version),
        Route::OpenApiIndex => Some(openapi::index(
            &registry,
            shared.store.lock().resource_version,
        )),
        Route::OpenApiGroupVersion(path) => openapi::group_version(&registry, &path),
        Route::Version => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-sluice-e2e", "platform": "linux/amd64",
        })),
        Route::Resource(path) => {
            let resource = registry
                .resolve(&path.group, &path.version, &path.plural)
                .cloned()
                .ok_or_else(not_found)?;
            let request = ResourceRequest {
                shared,
                resource,
                path,
                query,
                headers,
                body,
            };
            return request.serve(method);
        }
    };
    let document = document.ok_or_else(not_found)?;
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not allowed on discovery documents"
        )));
    }
    Ok(Dispatched::Done(json_response(StatusCode::OK, &document)))
}

struct ResourceRequest<'a> {
    shared: &'a Shared,
    resource: ResourceType,
    path: ResourcePath,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Bytes,
}

impl<'a> ResourceRequest<'a> {
    fn namespace(&self) -> &str {
        self.path.namespace.as_deref().unwrap_or("")
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn manager(&self) -> String {
        if let Some(manager) = self.param("fieldManager") {
            return manager.to_string();
        }
        self.headers
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .and_then(|agent| agent.split('/').next())
            .filter(|agent| !agent.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    /// Stamps `apiVersion`/`kind` of the requested version on an object.
    fn present(&self, mut object: Value) -> Value {
        object["apiVersion"] = json!(self.resource.api_version(&self.path.version));
        object["kind"] = json!(self.resource.kind);
        object
    }

    /// Whether the client asked for `PartialObjectMetadata` (kube's
    /// `get_metadata`/`list_metadata`/metadata watcher).
    fn metadata_only(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"))
    }

    /// An object as returned to the client.
    fn output(&self, object: Value) -> Value {
        let object = self.present(object);
        if self.metadata_only() {
            partial_metadata(&object)
        } else {
            object
        }
    }

    fn serve(self, method: &Method) -> ApiResult<Dispatched<'a>> {
        if self.resource.namespaced != self.path.namespace.is_some()
            && !(self.resource.namespaced
                && self.path.name.is_none()
                && matches!(*method, Method::GET))
        {
            return Err(ApiError::no_route(&format!(
                "{} is {}namespaced",
                self.resource.plural,
                if self.resource.namespaced { "" } else { "not " }
            )));
        }
        let status = match self.path.subresource.as_deref() {
            None => false,
            Some("status") if self.resource.status_subresource => true,
            Some(other) => {
                return Err(ApiError::no_route(&format!(
                    "{}/{other}",
                    self.resource.plural
                )));
            }
        };
        let response = match (method.clone(), self.path.name.clone()) {
            (Method::GET, None) if self.flag("watch") => self.watch(),
            (Method::GET, None) => self.list(),
            (Method::POST, None) | (Method::PUT | Method::PATCH, Some(_)) => {
                return Ok(Dispatched::Write(Box::new(self)));
            }
            (Method::DELETE, None) => self.delete_collection(),
            (Method::GET, Some(name)) => self.get(&name),
            (Method::DELETE, Some(name)) if !status => self.delete(&name),
            (method, _) => Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on {}",
                self.resource.plural
            ))),
        };
        response.map(Dispatched::Done)
    }

    /// Whether the request writes the status subresource.
    fn is_status(&self) -> bool {
        self.path.subresource.as_deref() == Some("status")
    }

    fn body_object(&self) -> ApiResult<Value> {
        let object = patch::parse_body(&self.body)?;
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_namespace = meta_str(&object, "namespace");
        if self.resource.namespaced
            && !body_namespace.is_empty()
            && body_namespace != self.namespace()
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(self.present(object))
    }

    fn check_name(&self, object: &Value, name: &str) -> ApiResult<()> {
        let body_name = meta_str(object, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        Ok(())
    }

    fn selectors(&self) -> ApiResult<(Selector, Selector)> {
        Ok((
            Selector::parse(self.param("labelSelector"))?,
            Selector::parse(self.param("fieldSelector"))?,
        ))
    }

    fn get(&self, name: &str) -> ApiResult<Response> {
        let state = self.shared.store.lock();
        let object = state
            .get(&self.resource.key(), self.namespace(), name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(StoreState::subject(&self.resource, name)))?;
        Ok(json_response(StatusCode::OK, &self.output(object)))
    }

    fn list(&self) -> ApiResult<Response> {
        let (labels, fields) = self.selectors()?;
        let limit = self
            .param("limit")
            .and_then(|limit| limit.parse::<usize>().ok())
            .filter(|limit| *limit > 0);
        let state = self.shared.store.lock();
        let key = self.resource.key();
        // A continue token is "<list resourceVersion>/<namespace>/<name>" of the last item sent.
        let (list_version, after) = match self.param("continue") {
            Some(token) => {
                let mut parts = token.splitn(3, '/');
                let version = parts.next().and_then(|version| version.parse::<u64>().ok());
                let (Some(version), Some(namespace), Some(name)) =
                    (version, parts.next(), parts.next())
                else {
                    return Err(ApiError::bad_request("invalid continue token"));
                };
                state.check_continue(&key, version)?;
                (version, Some((namespace.to_string(), name.to_string())))
            }
            None => (state.resource_version, None),
        };
        let candidates = state
            .list(&key, self.path.namespace.as_deref())
            .into_iter()
            .filter(|object| {
                after.as_ref().is_none_or(|(namespace, name)| {
                    (meta_str(object, "namespace"), meta_str(object, "name"))
                        > (namespace.as_str(), name.as_str())
                })
            });
        // Only the page is copied out of the store; the rest is counted.
        let mut matching = candidates
            .filter(|object| labels.matches_labels(object) && fields.matches_fields(object));
        let items: Vec<Value> = matching
            .by_ref()
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        let remaining = matching.count();
        let continue_token = items.last().filter(|_| remaining > 0).map(|last| {
            (
                format!(
                    "{list_version}/{}/{}",
                    meta_str(last, "namespace"),
                    meta_str(last, "name")
                ),
                remaining,
            )
        });
        drop(state);
        let items: Vec<Value> = items
            .into_iter()
            .map(|object| self.output(object))
            .collect();
        let mut metadata = json!({"resourceVersion": list_version.to_string()});
        if let Some((token, remaining)) = continue_token {
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json_response(
            StatusCode::OK,
            &self.list_document(items, metadata),
        ))
    }

    fn list_document(&self, items: Vec<Value>, metadata: Value) -> Value {
        let (api_version, kind) = if self.metadata_only() {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            (
                self.resource.api_version(&self.path.version),
                format!("{}List", self.resource.kind),
            )
        };
        json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": metadata,
            "items": items,
        })
    }

    fn watch(&self) -> ApiResult<Response> {
        let (labels, fields) = self.selectors()?;
        let since = match self.param("resourceVersion") {
            None | Some("0") => None,
            Some(version) => Some(version.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {version:?}"))
            })?),
        };
        let timeout = self
            .param("timeoutSeconds")
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .unwrap_or(1800);
        Ok(watch::respond(
            self.shared.store.clone(),
            WatchRequest {
                resource: self.resource.clone(),
                version: self.path.version.clone(),
                namespace: self.path.namespace.clone(),
                labels,
                fields,
                since,
                bookmarks: self.flag("allowWatchBookmarks"),
                timeout: Duration::from_secs(timeout),
                bookmark_interval: self.shared.settings.bookmark_interval,
                metadata_only: self.metadata_only(),
            },
        ))
    }

    fn delete(&self, name: &str) -> ApiResult<Response> {
        let options = DeleteOptions::from_request(&self.body, self.param("propagationPolicy"))?;
        let mut state = self.shared.store.lock();
        let last = state.delete(&self.resource, self.namespace(), name, &options)?;
        let still_there = state
            .get(&self.resource.key(), self.namespace(), name)
            .is_some();
        drop(state);
        let code = if still_there {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        Ok(json_response(code, &self.output(last)))
    }

    fn delete_collection(&self) -> ApiResult<Response> {
        let (labels, fields) = self.selectors()?;
        let options = DeleteOptions::from_request(&self.body, self.param("propagationPolicy"))?;
        let mut state = self.shared.store.lock();
        let key = self.resource.key();
        let selected = StoreState::select(
            state.list(&key, self.path.namespace.as_deref()),
            &labels,
            &fields,
        );
        let mut deleted = Vec::new();
        for object in selected {
            let namespace = meta_str(&object, "namespace").to_string();
            let name = meta_str(&object, "name").to_string();
            match state.delete(&self.resource, &namespace, &name, &options) {
                Ok(last) => deleted.push(self.output(last)),
                // Removed meanwhile by garbage collection of an earlier item.
                Err(error) if error.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let metadata = json!({"resourceVersion": state.resource_version.to_string()});
        drop(state);
        Ok(json_response(
            StatusCode::OK,
            &self.list_document(deleted, metadata),
        ))
    }
}

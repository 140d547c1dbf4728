//! The `kubernetes` node type: gets, server-side applies, patches or
//! deletes one Kubernetes object of any kind, with the credentials of the
//! process.
//!
//! - Credentials: `kube::Client::try_default()` — `KUBECONFIG` (or
//!   `~/.kube/config`) when present, else the pod's ServiceAccount. The
//!   operator mounts a ServiceAccount token into runner pods only when the
//!   workflow sets `spec.runner.serviceAccountName`, so that account (and
//!   the Roles bound to it) decides what these nodes may touch. The client
//!   is built lazily, once per process, on the first `kubernetes` node:
//!   workflows without one never read a kubeconfig or a token.
//! - Kinds: `apiVersion` + `kind` are resolved through API discovery (one
//!   request per group version, cached per process), so built-in kinds and
//!   custom resources work alike, namespaced or cluster-scoped.
//! - Namespace: `namespace`, else `manifest.metadata.namespace` (Apply),
//!   else the run's namespace. Ignored for cluster-scoped kinds.
//! - Output: Get, Apply and Patch return the object as the API server
//!   answered it, without `metadata.managedFields` (bookkeeping that would
//!   only bloat the output); Delete returns `{deleted: true}`, or
//!   `{deleted: false}` when the object did not exist.
//! - Apply is server-side apply with field manager `sluice-runner` and
//!   `force`: the workflow owns the fields it sets. The patch types are
//!   RFC 7386 merge patch (an object) and RFC 6902 JSON patch (a list).
//!
//! Errors: 403 is permanent and says which RBAC grant is missing; 404 on
//! Get/Patch, 400, 422 (invalid object, failed JSON-patch `test`) and bad
//! parameters are permanent; 409, 429, 5xx and unreachable servers are
//! retryable. Messages carry the API server's reason, never a credential.
//!
//! Nothing here retries or schedules: one call per attempt.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError, parse_params};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::{Value, json};
use sluice_crds::NodeType;
use sluice_crds::nodes::{
    KubernetesAction, KubernetesNode as KubernetesParams, KubernetesPatchType,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// Field manager of server-side applies made by workflows.
pub const FIELD_MANAGER: &str = "sluice-runner";

/// The `kubernetes` node type.
#[derive(Default)]
pub struct KubernetesNode {
    client: tokio::sync::OnceCell<kube::Client>,
    resources: Mutex<HashMap<(String, String), Resolved>>,
}

impl std::fmt::Debug for KubernetesNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesNode")
            .field("connected", &self.client.initialized())
            .finish_non_exhaustive()
    }
}

/// A kind resolved through discovery.
#[derive(Clone, Debug)]
struct Resolved {
    resource: ApiResource,
    namespaced: bool,
}

/// What one attempt sends, worked out from the parameters alone.
#[derive(Debug, PartialEq)]
struct Request {
    action: KubernetesAction,
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    body: Body,
}

#[derive(Debug, PartialEq)]
enum Body {
    None,
    Manifest(Value),
    Merge(Value),
    Json(json_patch::Patch),
}

impl KubernetesNode {
    /// A node that builds its client on first use (`KUBECONFIG`, else the
    /// pod's ServiceAccount).
    pub fn new() -> Self {
        Self::default()
    }

    /// A node using `client` (tests, or a process that already has one).
    pub fn with_client(client: kube::Client) -> Self {
        Self {
            client: tokio::sync::OnceCell::new_with(Some(client)),
            resources: Mutex::default(),
        }
    }

    async fn client(&self) -> Result<kube::Client, NodeError> {
        self.client
            .get_or_try_init(|| async {
                kube::Client::try_default().await.map_err(|error| {
                    NodeError::permanent(format!(
                        "failed to build a Kubernetes client: {error}: kubernetes nodes use the \
                         pod's ServiceAccount (set spec.runner.serviceAccountName on the \
                         workflow) or, for local runs, KUBECONFIG"
                    ))
                })
            })
            .await
            .cloned()
    }

    async fn resolve(
        &self,
        client: &kube::Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Resolved, NodeError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.cached(&key) {
            return Ok(found);
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|error| discovery_error(error, api_version, kind))?;
        let resolved = Resolved {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        };
        if let Ok(mut cache) = self.resources.lock() {
            cache.insert(key, resolved.clone());
        }
        Ok(resolved)
    }

    fn cached(&self, key: &(String, String)) -> Option<Resolved> {
        self.resources.lock().ok()?.get(key).cloned()
    }

    async fn perform(&self, request: Request) -> Result<Value, NodeError> {
        let client = self.client().await?;
        let resolved = self
            .resolve(&client, &request.api_version, &request.kind)
            .await?;
        let api: Api<DynamicObject> = if resolved.namespaced {
            Api::namespaced_with(client, &request.namespace, &resolved.resource)
        } else {
            Api::all_with(client, &resolved.resource)
        };
        let target = Target::new(&request, &resolved);
        let name = request.name.as_str();
        let object = match request.body {
            Body::None if request.action == KubernetesAction::Delete => {
                return match api.delete(name, &DeleteParams::background()).await {
                    Ok(_) => Ok(json!({"deleted": true})),
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        Ok(json!({"deleted": false}))
                    }
                    Err(error) => Err(target.error(request.action, &error)),
                };
            }
            Body::None => api.get(name).await,
            Body::Manifest(manifest) => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                api.patch(name, &params, &Patch::Apply(&manifest)).await
            }
            Body::Merge(patch) => {
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            Body::Json(patch) => {
                api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
                    .await
            }
        }
        .map_err(|error| target.error(request.action, &error))?;
        let mut value = serde_json::to_value(object).map_err(|error| {
            NodeError::permanent(format!("failed to encode {}: {error}", target.what))
        })?;
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
        Ok(value)
    }
}

impl Node for KubernetesNode {
    fn node_type(&self) -> NodeType {
        NodeType::Kubernetes
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        _attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let params: KubernetesParams = parse_params(NodeType::Kubernetes, params)?;
            let request = build_request(params, &context.run.namespace)?;
            self.perform(request).await
        })
    }
}

/// Checks the parameters of one action and fills in what defaults to
/// the manifest or the run's namespace.
fn build_request(params: KubernetesParams, run_namespace: &str) -> Result<Request, NodeError> {
    let action = params.action.unwrap_or_default();
    let manifest = match (action, params.manifest) {
        (KubernetesAction::Apply, Some(manifest @ Value::Object(_))) => Some(manifest),
        (KubernetesAction::Apply, Some(_)) => {
            return Err(invalid(
                "kubernetes.manifest must be an object (the object to apply)",
            ));
        }
        (KubernetesAction::Apply, None) => {
            return Err(invalid(
                "kubernetes.manifest is required for action Apply: give the object to apply",
            ));
        }
        _ => None,
    };
    let in_manifest = |pointer: &str| {
        manifest
            .as_ref()
            .and_then(|manifest| manifest.pointer(pointer))
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    // A field may come from the parameters or the manifest; both is fine
    // only when they agree.
    let pick = |name: &str, given: Option<String>, pointer: &str| {
        let given = given.filter(|value| !value.is_empty());
        match (given, in_manifest(pointer)) {
            (Some(given), Some(found)) if given != found => Err(invalid(format!(
                "kubernetes.{name} is {given:?} but the manifest says {found:?}: set it in one place"
            ))),
            (Some(value), _) | (None, Some(value)) => Ok(Some(value)),
            (None, None) => Ok(None),
        }
    };
    let required = |name: &str, value: Option<String>| {
        value.ok_or_else(|| {
            invalid(if action == KubernetesAction::Apply {
                format!("kubernetes.{name} (or the manifest's) is required for action Apply")
            } else {
                format!("kubernetes.{name} is required for action {action:?}")
            })
        })
    };
    let api_version = required(
        "apiVersion",
        pick("apiVersion", params.api_version, "/apiVersion")?,
    )?;
    let kind = required("kind", pick("kind", params.kind, "/kind")?)?;
    let name = required("name", pick("name", params.name, "/metadata/name")?)?;
    let namespace = pick("namespace", params.namespace, "/metadata/namespace")?
        .unwrap_or_else(|| run_namespace.to_owned());
    let body = match (action, manifest) {
        (KubernetesAction::Apply, Some(Value::Object(mut manifest))) => {
            manifest.insert("apiVersion".into(), Value::String(api_version.clone()));
            manifest.insert("kind".into(), Value::String(kind.clone()));
            let metadata = manifest.entry("metadata").or_insert_with(|| json!({}));
            if let Some(metadata) = metadata.as_object_mut() {
                metadata.insert("name".into(), Value::String(name.clone()));
            }
            Body::Manifest(Value::Object(manifest))
        }
        (KubernetesAction::Patch, _) => {
            patch_body(params.patch_type.unwrap_or_default(), params.patch)?
        }
        _ => Body::None,
    };
    Ok(Request {
        action,
        api_version,
        kind,
        name,
        namespace,
        body,
    })
}

fn patch_body(patch_type: KubernetesPatchType, patch: Option<Value>) -> Result<Body, NodeError> {
    match (patch_type, patch) {
        (_, None) => Err(invalid("kubernetes.patch is required for action Patch")),
        (KubernetesPatchType::Merge, Some(patch @ Value::Object(_))) => Ok(Body::Merge(patch)),
        (KubernetesPatchType::Merge, Some(_)) => Err(invalid(
            "kubernetes.patch must be an object for patchType Merge (use patchType Json for a list of operations)",
        )),
        (KubernetesPatchType::Json, Some(patch)) => serde_json::from_value(patch)
            .map(Body::Json)
            .map_err(|error| {
                invalid(format!(
                    "kubernetes.patch is not a JSON patch ({error}): give a list of operations like \
                     [{{\"op\": \"replace\", \"path\": \"/data/key\", \"value\": \"v\"}}]"
                ))
            }),
    }
}

fn invalid(message: impl Into<String>) -> NodeError {
    NodeError::permanent(message)
}

/// The object an attempt concerns, for messages.
struct Target {
    /// e.g. `configmaps "settings" in namespace "team-a"`.
    what: String,
    /// e.g. `configmaps` or `deployments.apps`.
    resource: String,
}

impl Target {
    fn new(request: &Request, resolved: &Resolved) -> Self {
        let resource = if resolved.resource.group.is_empty() {
            resolved.resource.plural.clone()
        } else {
            format!("{}.{}", resolved.resource.plural, resolved.resource.group)
        };
        let what = if resolved.namespaced {
            format!(
                "{resource} {:?} in namespace {:?}",
                request.name, request.namespace
            )
        } else {
            format!("{resource} {:?}", request.name)
        };
        Self { what, resource }
    }

    fn error(&self, action: KubernetesAction, error: &kube::Error) -> NodeError {
        match error {
            kube::Error::Api(status) => api_error(
                action,
                &self.what,
                &self.resource,
                status.code,
                &status.message,
            ),
            other => client_error(other),
        }
    }
}

/// Classifies an error answer of the API server.
fn api_error(
    action: KubernetesAction,
    what: &str,
    resource: &str,
    code: u16,
    message: &str,
) -> NodeError {
    let verb = match action {
        KubernetesAction::Get => "get",
        KubernetesAction::Apply => "apply (create and patch)",
        KubernetesAction::Patch => "patch",
        KubernetesAction::Delete => "delete",
    };
    let verb_name = verb.split(' ').next().unwrap_or(verb);
    match code {
        401 => NodeError::permanent(format!(
            "the Kubernetes API did not accept the runner's credentials ({message}): check the \
             ServiceAccount named in spec.runner.serviceAccountName"
        )),
        403 => NodeError::permanent(format!(
            "the run's ServiceAccount may not {verb} {resource}: grant it with a Role, or set \
             spec.runner.serviceAccountName ({message})"
        )),
        404 => NodeError::permanent(format!(
            "failed to {verb_name} {what}: not found ({message})"
        )),
        409 | 429 => NodeError::retryable(format!(
            "failed to {verb_name} {what}: {message} (HTTP {code})"
        )),
        500.. | 0 => NodeError::retryable(format!(
            "failed to {verb_name} {what}: the Kubernetes API answered {code}: {message}"
        )),
        _ => NodeError::permanent(format!(
            "failed to {verb_name} {what}: the Kubernetes API refused it ({code}): {message}"
        )),
    }
}

/// Classifies an error that is not an answer of the API server.
fn client_error(error: &kube::Error) -> NodeError {
    match error {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            NodeError::retryable(format!("failed to reach the Kubernetes API: {error}"))
        }
        _ => NodeError::permanent(format!("failed to call the Kubernetes API: {error}")),
    }
}

fn discovery_error(error: kube::Error, api_version: &str, kind: &str) -> NodeError {
    match error {
        kube::Error::Discovery(_) => NodeError::permanent(format!(
            "the cluster serves no kind {kind:?} in apiVersion {api_version:?}: check kubernetes.kind \
             and kubernetes.apiVersion (kubectl api-resources lists them)"
        )),
        kube::Error::Api(status) if status.code == 404 => NodeError::permanent(format!(
            "the cluster does not serve apiVersion {api_version:?}: check kubernetes.apiVersion \
             (kubectl api-versions lists them)"
        )),
        kube::Error::Api(status) => api_error(
            KubernetesAction::Get,
            &format!("the resources of apiVersion {api_version:?}"),
            "API discovery",
            status.code,
            &status.message,
        ),
        other => client_error(&other),
    }
}

#[cfg(test)]
mod tests;

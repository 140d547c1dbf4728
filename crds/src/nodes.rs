//! The parameter block of each built-in node type (`http:`, `transform:` …).
//!
//! These structs are part of the Workflow API: their schemas end up in the
//! CRD and in the runner's node catalog. Behaviour lives in the runner; this
//! module holds only the shapes, their defaults and the closed set of type
//! names ([`NodeType`]).
//!
//! Any string parameter may embed `${{ <jq> }}` templates, evaluated against
//! the run context `{input, nodes, item, index, run, env}` just before the
//! node runs. A string that is exactly one template yields the JSON value
//! itself rather than its text.

use crate::common::{any_json_list_schema, any_json_schema, free_object_schema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The closed set of node types a Workflow node can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeType {
    /// Send an HTTP request.
    Http,
    /// Compute a value with jq.
    Transform,
    /// Wait for a duration or until a time.
    Wait,
    /// Run parameterised SQL against PostgreSQL.
    Postgres,
    /// Run a command in the runner container.
    Shell,
    /// Get, apply, patch or delete a Kubernetes object.
    Kubernetes,
    /// Start a run of another Workflow and wait for it.
    Workflow,
    /// Send a message to Slack, a webhook or an SMTP server.
    Notify,
    /// Fail the node with a message.
    Fail,
    /// Call a custom node type (a NodeType or ClusterNodeType) served by
    /// its own container.
    Custom,
}

impl NodeType {
    /// Every node type, in catalog order.
    pub const ALL: [NodeType; 10] = [
        NodeType::Http,
        NodeType::Transform,
        NodeType::Wait,
        NodeType::Postgres,
        NodeType::Shell,
        NodeType::Kubernetes,
        NodeType::Workflow,
        NodeType::Notify,
        NodeType::Fail,
        NodeType::Custom,
    ];

    /// The key of the node's parameter block, e.g. `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Http => "http",
            NodeType::Transform => "transform",
            NodeType::Wait => "wait",
            NodeType::Postgres => "postgres",
            NodeType::Shell => "shell",
            NodeType::Kubernetes => "kubernetes",
            NodeType::Workflow => "workflow",
            NodeType::Notify => "notify",
            NodeType::Fail => "fail",
            NodeType::Custom => "custom",
        }
    }
}

impl std::fmt::Display for NodeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP method of an `http` node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (the default).
    #[default]
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
}

/// How an `http` node reads the response body into `output.body`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ResponseFormat {
    /// JSON when the response says `application/json` (or parses as JSON), text otherwise.
    #[default]
    Auto,
    /// Always parse as JSON; a body that is not JSON fails the node.
    Json,
    /// Always keep the body as text.
    Text,
}

/// Send an HTTP request. Output: `{status, headers, body}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpNode {
    /// HTTP method. Defaults to GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// URL to call. With a `connection`, a relative URL (`/api/people`) is
    /// resolved against the connection's `baseUrl`. May embed `${{ }}`:
    /// each value spliced into a longer URL is percent-encoded as one
    /// component (`/people/${{ .input.id }}` with `a/b` calls
    /// `/people/a%2Fb`), so data cannot change the URL's shape; only a
    /// template filling the whole url (`${{ .input.base + "/ping" }}`) is
    /// taken as it is. Put query parameters in `query`.
    #[schemars(length(min = 1, max = 4096))]
    pub url: String,
    /// Request headers. Values may embed `${{ }}`; a value that is one
    /// template gets the result's text (numbers, objects as JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::common::string_map_schema")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters appended to the URL, names and values
    /// form-encoded (`a b&c` is sent as `a+b%26c`). Values may embed
    /// `${{ }}`; a value that is one template gets the result's text.
    /// Templates inside `url` itself are percent-encoded as one component
    /// each; a template filling the whole `url` is taken as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::common::string_map_schema")]
    pub query: BTreeMap<String, String>,
    /// Request body. An object or list is sent as JSON, keys in the order
    /// written; a string is sent as text. Strings inside may embed
    /// `${{ }}`; a string that is one template becomes the result itself
    /// (number, object, list …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub body: Option<serde_json::Value>,
    /// Name of a Connection (type `http`) giving the base URL and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub connection: Option<String>,
    /// How to read the response body. Defaults to Auto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Status codes that count as success. Defaults to any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(range(min = 100, max = 599)))]
    pub success_status: Vec<u16>,
    /// Whether to follow redirects (at most 10). Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
}

/// Compute a value with jq over the run context. Output: the jq result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformNode {
    /// jq program evaluated against `{input, nodes, item, index, run, env}`.
    /// Its first result is the node's output.
    #[schemars(length(min = 1, max = 16384))]
    pub jq: String,
}

/// Wait for a duration or until a point in time. Set exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitNode {
    /// How long to wait, e.g. `30s`. May be a `${{ }}` template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub duration: Option<String>,
    /// RFC 3339 time to wait until, e.g. `2026-01-01T09:00:00Z`. May be a `${{ }}` template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub until: Option<String>,
}

/// Run one SQL statement with bind parameters. Output: `{rows, rowCount}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresNode {
    /// Name of a Connection (type `postgres`) giving the server and credentials.
    #[schemars(length(min = 1, max = 253))]
    pub connection: String,
    /// SQL with `$1`, `$2` … placeholders. Never interpolate values into it;
    /// pass them as `params`.
    #[schemars(length(min = 1, max = 65536))]
    pub query: String,
    /// Values bound to `$1`, `$2` …. Strings may be `${{ }}` templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "any_json_list_schema")]
    pub params: Vec<serde_json::Value>,
    /// Maximum rows returned in the output. Defaults to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_rows: Option<u32>,
}

/// Run a command in the runner container. Output: `{exitCode, stdout, stderr}`.
/// Set exactly one of `script` and `command`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShellNode {
    /// Script run by `/bin/sh -c`. May not embed `${{ }}`: data spliced
    /// into shell source would run as code. Pass values through `env` and
    /// quote them: `env: {NAME: "${{ .input.name }}"}`, then `"$NAME"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub script: Option<String>,
    /// Program and arguments, run without a shell. Items may embed `${{ }}`
    /// (an item that is one template gets the result's text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Extra environment variables. Values may embed `${{ }}`; a value that
    /// is one template gets the result's text (`42`, `true`, `{"a":1}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::common::string_map_schema")]
    pub env: BTreeMap<String, String>,
    /// Text written to the command's standard input. May embed `${{ }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub stdin: Option<String>,
    /// Parse stdout as JSON into `output.json` when it is valid JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_json: Option<bool>,
    /// Exit codes that count as success. Defaults to `[0]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(range(min = 0, max = 255)))]
    pub success_exit_codes: Vec<i32>,
}

/// What a `kubernetes` node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KubernetesAction {
    /// Read an object. Output: the object.
    #[default]
    Get,
    /// Server-side apply `manifest`. Output: the object after apply.
    Apply,
    /// Patch an object with `patch`. Output: the object after the patch.
    Patch,
    /// Delete an object. Output: `{deleted: true|false}`.
    Delete,
}

/// Patch type of a `kubernetes` node's `Patch` action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KubernetesPatchType {
    /// RFC 7386 JSON merge patch (the default).
    #[default]
    Merge,
    /// RFC 6902 JSON patch (a list of operations).
    Json,
}

/// Read or change a Kubernetes object with the run's ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesNode {
    /// What to do. Defaults to Get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<KubernetesAction>,
    /// API version of the object, e.g. `v1` or `apps/v1`. Taken from
    /// `manifest` for Apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub api_version: Option<String>,
    /// Kind of the object, e.g. `ConfigMap`. Taken from `manifest` for Apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub kind: Option<String>,
    /// Name of the object. May embed `${{ }}`. Taken from `manifest` for Apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub name: Option<String>,
    /// Namespace of the object. Defaults to the run's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Object to apply (Apply). Strings inside may embed `${{ }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub manifest: Option<serde_json::Value>,
    /// Patch document (Patch): an object for Merge, a list for Json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub patch: Option<serde_json::Value>,
    /// Patch type (Patch). Defaults to Merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<KubernetesPatchType>,
}

/// Start a run of another Workflow in the same namespace, wait for it and
/// return its output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowNode {
    /// Name of the Workflow to run, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub workflow_ref: String,
    /// Input of the child run. Strings inside may embed `${{ }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub input: Option<serde_json::Value>,
    /// Wait for the child run to finish (the default). When false the node
    /// succeeds as soon as the child run is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// Send a message through a Connection of type `slack` (incoming webhook),
/// `http` (generic webhook, the message is POSTed as JSON) or `smtp` (email).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyNode {
    /// Name of the Connection to send through.
    #[schemars(length(min = 1, max = 253))]
    pub connection: String,
    /// Message text. May embed `${{ }}`.
    #[schemars(length(min = 1, max = 65536))]
    pub text: String,
    /// Email subject (smtp). May embed `${{ }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 998))]
    pub subject: Option<String>,
    /// Email recipients (smtp). Defaults to the connection's `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 320)))]
    pub to: Vec<String>,
    /// Extra JSON fields merged into the webhook payload (slack, http), such
    /// as Slack `blocks`. Strings inside may embed `${{ }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub payload: Option<serde_json::Value>,
}

/// Fail the node (and, unless `continueOnError`, the run) with a message.
/// Usually paired with `if:` to stop a run on a condition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailNode {
    /// Error message. May embed `${{ }}`.
    #[schemars(length(min = 1, max = 4096))]
    pub message: String,
}

/// Call a custom node type: a NodeType in the workflow's namespace or,
/// when none has that name, a ClusterNodeType. The type's container runs
/// beside the runner and gets the params, the forEach item and the run's
/// identity (see docs/node-protocol.md). Output: what the container returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomNode {
    /// Name of the NodeType or ClusterNodeType.
    #[serde(rename = "type")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub type_: String,
    /// Name of one of the type's presets; its params come first and the
    /// node's own `params` are laid over them, key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub preset: Option<String>,
    /// Parameters, checked against the type's params schema before a run.
    /// Strings inside may embed `${{ }}`; a string that is one template
    /// becomes the result itself (number, object, list …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub params: Option<serde_json::Value>,
    /// Name of a Connection of a type the node type accepts. Its Secret is
    /// mounted in the node's container as files; it never travels in params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub connection: Option<String>,
}

//! The `Workflow` resource: a named, versioned graph of nodes.
//!
//! Only the shape and the rules the API server can check cheaply (CEL) live
//! here. The full validation (cycles, expressions, parameter schemas) is the
//! runner's `validate`, called by the operator.

use crate::common::{
    Condition, Duration, LocalObjectReference, SecretKeyReference, conditions_schema,
    free_object_schema,
};
use crate::nodes::{
    CustomNode, FailNode, HttpNode, KubernetesNode, NodeType, NotifyNode, PostgresNode, ShellNode,
    TransformNode, WaitNode, WorkflowNode,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most nodes a Workflow may have; larger automations are split into child
/// workflows with a `workflow` node. Whole-graph rules (every `needs` names
/// a node, no cycles) cost nodes × needs × nodes, far over the API server's
/// CEL budget at this size: the admission webhook checks them (the runner's
/// validator), and the controller reports them in `Valid` on clusters
/// without it. Unique names need no rule: `nodes` is a list-map keyed by
/// `name`, which the API server enforces itself.
pub const MAX_NODES: usize = 1000;
/// Most `needs` entries a node may have.
pub const MAX_NEEDS: usize = 64;

/// Desired state of a Workflow: its nodes, input, triggers and limits.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Workflow",
    doc = "A Workflow describes an automation as a graph of nodes. Each node does one thing (call an API, transform data, query a database, notify someone); `needs` orders them, `if` and `forEach` shape them. Start it by creating a WorkflowRun, from a Schedule, or through a webhook trigger.",
    namespaced,
    status = "WorkflowStatus",
    shortname = "wf",
    category = "sluice",
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Nodes", "type": "integer", "jsonPath": ".status.nodeCount"}"#,
    printcolumn = r#"{"name": "Revision", "type": "integer", "jsonPath": ".status.revision"}"#,
    printcolumn = r#"{"name": "Last Run", "type": "string", "jsonPath": ".status.lastRun.phase"}"#,
    printcolumn = r#"{"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    /// What the workflow does, for people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// The input the workflow accepts: a JSON schema runs are checked
    /// against, and defaults merged under each run's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputSpec>,
    /// Environment values every node sees as `.env.NAME` in expressions
    /// (and shell nodes as environment variables). Not for secrets: use a
    /// Connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// The nodes of the graph (at most 1000), each with a unique name and exactly one
    /// node-type block (`http`, `transform`, `wait`, `postgres`, `shell`,
    /// `kubernetes`, `workflow`, `notify` or `fail`).
    #[schemars(length(min = 1, max = 1000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub nodes: Vec<NodeSpec>,
    /// jq expression computing the run's output from the context after the
    /// last node. Defaults to an object of the outputs of the nodes nothing
    /// else needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub output: Option<String>,
    /// Most nodes (and forEach items) running at once in one run. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<u32>,
    /// Most data one run may hold, as a byte quantity (`256Mi`, `1Gi`,
    /// `500M`): every node output its dependants may still read, counted
    /// as compact JSON, plus an HTTP response body while it is read. A node
    /// whose output would go over it fails, naming the node, the size and
    /// this setting. Defaults to 256Mi; keep it well under the runner
    /// pod's memory limit (held data takes several times its JSON size in
    /// memory). Outputs are never cut to fit: the output cap only shortens
    /// the copies that are reported (status, events, history), and marks
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory_budget: Option<String>,
    /// How many runs of this workflow may be active at once, and what
    /// happens to a run beyond that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// Seconds a run may take in total before it is stopped and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How many finished run objects to keep in the cluster. Older ones are
    /// deleted once PostgreSQL holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_limits: Option<HistoryLimits>,
    /// Webhook endpoints that start runs. (Schedules are separate objects.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub triggers: Vec<TriggerSpec>,
    /// Overrides of the operator's defaults for this workflow's runner pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerOverrides>,
    /// When true, new runs are refused (schedules and webhooks included);
    /// runs already started continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// The input a workflow accepts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputSpec {
    /// JSON schema (draft 2020-12 subset: type, properties, required, items,
    /// enum, minimum/maximum, minLength/maxLength, pattern) each run's input
    /// must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub schema: Option<serde_json::Value>,
    /// Values used for top-level input fields a run does not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub defaults: Option<serde_json::Value>,
}

/// A plain environment value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name: letters, digits and '_', not starting with a digit.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub name: String,
    /// Value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// When a node runs, given the outcome of the nodes it `needs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunWhen {
    /// Run only when every needed node succeeded; a skipped or failed need
    /// skips this node (the default).
    #[default]
    AllSucceeded,
    /// Run when no needed node failed: skipped needs are fine.
    NoneFailed,
    /// Run once every needed node finished, whatever the outcome (cleanup,
    /// notifications). Runs even after the run has failed.
    AllDone,
}

/// One step of the workflow.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new("(has(self.http) ? 1 : 0) + (has(self.transform) ? 1 : 0) + (has(self.wait) ? 1 : 0) + (has(self.postgres) ? 1 : 0) + (has(self.shell) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) + (has(self.workflow) ? 1 : 0) + (has(self.notify) ? 1 : 0) + (has(self.fail) ? 1 : 0) + (has(self.custom) ? 1 : 0) == 1")
        .message("a node must have exactly one node-type block: http, transform, wait, postgres, shell, kubernetes, workflow, notify, fail or custom"),
    validation = Rule::new("!has(self.needs) || !(self.name in self.needs)")
        .message("a node cannot need itself: remove its own name from needs")
        .field_path(".needs"),
    validation = Rule::new("!has(self.wait) || (has(self.wait.duration) ? 1 : 0) + (has(self.wait.until) ? 1 : 0) == 1")
        .message("a wait node needs exactly one of duration and until")
        .field_path(".wait"),
    validation = Rule::new("!has(self.shell) || (has(self.shell.script) ? 1 : 0) + (has(self.shell.command) && size(self.shell.command) > 0 ? 1 : 0) == 1")
        .message("a shell node needs exactly one of script and command")
        .field_path(".shell"),
    validation = Rule::new("!has(self.parallelism) || has(self.forEach)")
        .message("parallelism only applies to a node with forEach: remove it or add forEach")
        .field_path(".parallelism")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Unique name of the node within the workflow (lowercase letters,
    /// digits and '-'). Other nodes refer to it in `needs` and read its
    /// output as `.nodes.<name>.output`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// What the node does, for people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Names of nodes (at most 64) that must finish before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub needs: Vec<String>,
    /// When the node runs given the outcome of its needs. Defaults to
    /// AllSucceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_when: Option<RunWhen>,
    /// jq condition; the node runs only when it is true, and is skipped
    /// otherwise (its dependants are then skipped too, unless their
    /// `runWhen` allows it).
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub condition: Option<String>,
    /// jq expression yielding a list; the node runs once per item (`.item`,
    /// `.index`) and its output is the list of results, in item order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub for_each: Option<String>,
    /// Most items of `forEach` running at once. Defaults to the workflow's
    /// parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<u32>,
    /// Retry a failed attempt, with exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Longest one attempt may take, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// When true, a failure of this node does not fail the run; dependants
    /// see it as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_on_error: Option<bool>,
    /// Send an HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpNode>,
    /// Compute a value with jq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformNode>,
    /// Wait for a duration or until a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitNode>,
    /// Run parameterised SQL against PostgreSQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresNode>,
    /// Run a command in the runner container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellNode>,
    /// Get, apply, patch or delete a Kubernetes object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesNode>,
    /// Start a run of another Workflow and wait for its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowNode>,
    /// Send a message through a Slack, webhook or SMTP Connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyNode>,
    /// Fail with a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailNode>,
    /// Call a custom node type (a NodeType or ClusterNodeType).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomNode>,
}

/// A node's parameter block, borrowed from a [`NodeSpec`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NodeAction<'a> {
    /// `http:`
    Http(&'a HttpNode),
    /// `transform:`
    Transform(&'a TransformNode),
    /// `wait:`
    Wait(&'a WaitNode),
    /// `postgres:`
    Postgres(&'a PostgresNode),
    /// `shell:`
    Shell(&'a ShellNode),
    /// `kubernetes:`
    Kubernetes(&'a KubernetesNode),
    /// `workflow:`
    Workflow(&'a WorkflowNode),
    /// `notify:`
    Notify(&'a NotifyNode),
    /// `fail:`
    Fail(&'a FailNode),
    /// `custom:`
    Custom(&'a CustomNode),
}

impl NodeAction<'_> {
    /// The type of this block.
    pub fn node_type(&self) -> NodeType {
        match self {
            NodeAction::Http(_) => NodeType::Http,
            NodeAction::Transform(_) => NodeType::Transform,
            NodeAction::Wait(_) => NodeType::Wait,
            NodeAction::Postgres(_) => NodeType::Postgres,
            NodeAction::Shell(_) => NodeType::Shell,
            NodeAction::Kubernetes(_) => NodeType::Kubernetes,
            NodeAction::Workflow(_) => NodeType::Workflow,
            NodeAction::Notify(_) => NodeType::Notify,
            NodeAction::Fail(_) => NodeType::Fail,
            NodeAction::Custom(_) => NodeType::Custom,
        }
    }
}

impl NodeSpec {
    /// Every node-type block present on this node, in catalog order. A valid
    /// node has exactly one.
    pub fn actions(&self) -> Vec<NodeAction<'_>> {
        let blocks = [
            self.http.as_ref().map(NodeAction::Http),
            self.transform.as_ref().map(NodeAction::Transform),
            self.wait.as_ref().map(NodeAction::Wait),
            self.postgres.as_ref().map(NodeAction::Postgres),
            self.shell.as_ref().map(NodeAction::Shell),
            self.kubernetes.as_ref().map(NodeAction::Kubernetes),
            self.workflow.as_ref().map(NodeAction::Workflow),
            self.notify.as_ref().map(NodeAction::Notify),
            self.fail.as_ref().map(NodeAction::Fail),
            self.custom.as_ref().map(NodeAction::Custom),
        ];
        blocks.into_iter().flatten().collect()
    }

    /// The node's single parameter block, or `None` when it has none or
    /// more than one (validation reports both).
    pub fn action(&self) -> Option<NodeAction<'_>> {
        match self.actions().as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// How the node reacts to its needs' outcomes.
    pub fn run_when(&self) -> RunWhen {
        self.run_when.unwrap_or_default()
    }
}

/// Retry policy of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `limit: 3` allows 4 attempts).
    #[schemars(range(min = 0, max = 100))]
    pub limit: u32,
    /// Wait between attempts. Defaults to 1s doubling up to 5m, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Exponential backoff between attempts: `initial`, then multiplied by
/// `factor` each time, never above `max`, each wait randomised by up to
/// ±`jitterPercent`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First wait. Defaults to 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<Duration>,
    /// Longest wait. Defaults to 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
    /// Multiplier between waits. Defaults to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub factor: Option<u32>,
    /// Random spread of each wait, in percent. Defaults to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub jitter_percent: Option<u32>,
}

/// What happens to a run when `limit` runs are already active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Wait in a queue, started in priority then creation order (the default).
    #[default]
    Queue,
    /// Refuse the new run: it ends as Failed with reason ConcurrencyLimit.
    Forbid,
    /// Cancel the oldest active run to make room for the new one.
    Replace,
}

/// Concurrency limit of a workflow's runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencySpec {
    /// Most runs active at once.
    #[schemars(range(min = 1, max = 10000))]
    pub limit: u32,
    /// What to do with a run beyond the limit. Defaults to Queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ConcurrencyPolicy>,
}

/// How many finished run objects stay in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLimits {
    /// Succeeded runs kept. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub successful: Option<u32>,
    /// Failed and cancelled runs kept. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub failed: Option<u32>,
}

/// A way to start runs from outside the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// Name of the trigger, part of its URL:
    /// `POST /hooks/<namespace>/<workflow>/<name>`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Set false to turn the trigger off without deleting it (requests get 404).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The webhook endpoint.
    pub webhook: WebhookTrigger,
}

/// How a webhook request proves it may start a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WebhookAuthType {
    /// HMAC-SHA256 signature of the body, keyed by the Secret value (the default).
    #[default]
    Hmac,
    /// `Authorization: Bearer <token>` equal to the Secret value.
    Bearer,
}

/// Signature header format for HMAC authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SignatureFormat {
    /// `sha256=<hex>` over the raw body, as GitHub sends in
    /// `X-Hub-Signature-256` (the default).
    #[default]
    GitHub,
    /// `v0=<hex>` over `v0:<timestamp>:<body>`, as Slack sends in
    /// `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
    Slack,
    /// Bare hex digest over the raw body.
    Hex,
}

/// Authentication of a webhook trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAuth {
    /// Hmac (signature over the body) or Bearer (token). Defaults to Hmac.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<WebhookAuthType>,
    /// The Secret key holding the HMAC key or bearer token.
    pub secret_ref: SecretKeyReference,
    /// Header carrying the signature. Defaults by format:
    /// `X-Hub-Signature-256` (GitHub), `X-Slack-Signature` (Slack),
    /// `X-Signature` (Hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub header: Option<String>,
    /// Signature format (Hmac only). Defaults to GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_format: Option<SignatureFormat>,
}

/// When the webhook answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WebhookResponse {
    /// Answer 202 with the run's name as soon as the run exists (the default).
    #[default]
    Async,
    /// Wait for the run to finish (up to `timeout`) and answer with its output.
    Sync,
}

/// Requests allowed per trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per minute.
    #[schemars(range(min = 1, max = 1000000))]
    pub per_minute: u32,
    /// Requests allowed in a burst above the sustained rate. Defaults to `perMinute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: Option<u32>,
}

/// A webhook endpoint that creates a run per accepted request. The request's
/// JSON body becomes the run's input; body, headers (minus credentials) and
/// query become its trigger data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTrigger {
    /// How callers authenticate.
    pub auth: WebhookAuth,
    /// Async (202 at once) or Sync (wait for the output). Defaults to Async.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<WebhookResponse>,
    /// Longest wait in Sync mode before answering 202 anyway. Defaults to 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Largest accepted body in bytes; larger requests get 413. Defaults to 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10485760))]
    pub max_body_bytes: Option<u32>,
    /// Requests allowed; the excess gets 429. Defaults to 60 per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Overrides of the operator's runner pod defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerOverrides {
    /// Runner container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the runner container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount the runner pod runs as; `kubernetes` nodes act with its
    /// permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
    /// Node labels the runner pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::common::string_map_schema")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the runner pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
}

/// Observed state of a Workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Valid` (the spec passed validation) and `Ready` (valid, not
    /// suspended, every referenced Connection present).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Revision of the spec, bumped on each spec change. Runs record the
    /// revision they ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// SHA-256 of the spec of `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub spec_hash: Option<String>,
    /// Number of nodes in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count: Option<i32>,
    /// Every validation error, each with its field path and how to fix it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub validation_errors: Vec<ValidationIssue>,
    /// The most recently created run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// Run counts by outcome, for runs still in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<RunCounts>,
}

/// One validation error of a Workflow spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationIssue {
    /// Field path, e.g. `spec.nodes[3].http.url`.
    #[schemars(length(max = 512))]
    pub path: String,
    /// What is wrong and how to fix it.
    #[schemars(length(max = 2048))]
    pub message: String,
}

/// Summary of the latest run of a workflow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// Name of the WorkflowRun.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Its phase when last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::workflow_run::RunPhase>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
}

/// Run counts by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCounts {
    /// Runs not finished yet (pending, queued or running).
    #[serde(default)]
    pub active: i32,
    /// Runs that succeeded.
    #[serde(default)]
    pub succeeded: i32,
    /// Runs that failed.
    #[serde(default)]
    pub failed: i32,
    /// Runs that were cancelled.
    #[serde(default)]
    pub cancelled: i32,
}

/// A reference to a Workflow in the same namespace.
pub type WorkflowReference = LocalObjectReference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::FIXTURE_NAMESPACE;
    use kube::core::cel::validate_cel;

    fn valid() -> Workflow {
        Workflow::fixture("w")
            .with_node(NodeSpec::http_get("fetch", "https://example.com"))
            .with_node(NodeSpec::transform("shape", ".nodes.fetch.output").needs(&["fetch"]))
    }

    /// The messages of the CEL rules `workflow` breaks.
    fn cel_errors(workflow: &Workflow) -> Vec<String> {
        match validate_cel(workflow) {
            Ok(()) => vec![],
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn assert_rejected(workflow: &Workflow, expected: &str, field: &str) {
        let errors = cel_errors(workflow);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(expected) && e.contains(field)),
            "expected an error naming {field:?} with {expected:?}, got {errors:?}"
        );
    }

    #[test]
    fn a_valid_workflow_passes_every_rule() {
        assert_eq!(cel_errors(&valid()), Vec::<String>::new());
    }

    #[test]
    fn a_node_with_two_type_blocks_is_rejected() {
        let workflow = valid().with_node(
            NodeSpec::transform("both", ".")
                .with(|n| n.http = NodeSpec::http_get("x", "https://a").http),
        );
        assert_rejected(&workflow, "exactly one node-type block", "spec.nodes");
    }

    #[test]
    fn a_node_without_a_type_block_is_rejected() {
        let workflow = valid().with_node(NodeSpec::named("empty"));
        assert_rejected(&workflow, "exactly one node-type block", "spec.nodes");
    }

    #[test]
    fn node_names_are_unique_by_the_api_servers_list_map_not_by_cel() {
        let crd = serde_json::to_value(<Workflow as kube::CustomResourceExt>::crd()).unwrap();
        let nodes = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["nodes"];
        assert_eq!(nodes["x-kubernetes-list-type"], "map");
        assert_eq!(
            nodes["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
        assert_eq!(nodes["maxItems"], MAX_NODES);
        let needs = &nodes["items"]["properties"]["needs"];
        assert_eq!(needs["maxItems"], MAX_NEEDS);
    }

    #[test]
    fn whole_graph_rules_are_left_to_admission() {
        // A dangling `needs` costs nodes × needs × nodes in CEL: at 1,000
        // nodes the webhook (the runner's validator) refuses it instead.
        let workflow = valid().with_node(NodeSpec::transform("late", ".").needs(&["fecth"]));
        assert_eq!(cel_errors(&workflow), Vec::<String>::new());
    }

    #[test]
    fn a_node_needing_itself_is_rejected() {
        let workflow = valid().with_node(NodeSpec::transform("loop", ".").needs(&["loop"]));
        assert_rejected(&workflow, "cannot need itself", "needs");
    }

    #[test]
    fn a_wait_node_needs_exactly_one_of_duration_and_until() {
        let both =
            valid()
                .with_node(NodeSpec::wait("pause", "10s").with(|n| {
                    n.wait.as_mut().unwrap().until = Some("2030-01-01T00:00:00Z".into())
                }));
        assert_rejected(&both, "exactly one of duration and until", "wait");
        let neither = valid()
            .with_node(NodeSpec::named("pause").with(|n| n.wait = Some(WaitNode::default())));
        assert_rejected(&neither, "exactly one of duration and until", "wait");
    }

    #[test]
    fn a_shell_node_needs_exactly_one_of_script_and_command() {
        let both = valid().with_node(
            NodeSpec::shell("sh", "echo hi")
                .with(|n| n.shell.as_mut().unwrap().command = vec!["echo".into()]),
        );
        assert_rejected(&both, "exactly one of script and command", "shell");
    }

    #[test]
    fn node_parallelism_without_for_each_is_rejected() {
        let workflow =
            valid().with_node(NodeSpec::transform("p", ".").with(|n| n.parallelism = Some(2)));
        assert_rejected(
            &workflow,
            "only applies to a node with forEach",
            "parallelism",
        );
    }

    #[test]
    fn trigger_names_are_unique_by_the_api_servers_list_map() {
        let crd = serde_json::to_value(<Workflow as kube::CustomResourceExt>::crd()).unwrap();
        let triggers = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["triggers"];
        assert_eq!(triggers["x-kubernetes-list-type"], "map");
        assert_eq!(
            triggers["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
    }

    fn parse(yaml: &str) -> Result<Workflow, serde_saphyr::Error> {
        serde_saphyr::from_str(yaml)
    }

    #[test]
    fn missing_required_fields_are_named_in_the_error() {
        let header = format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w, namespace: {FIXTURE_NAMESPACE}}}\n"
        );
        let cases = [
            ("spec: {}\n", "nodes"),
            ("spec:\n  nodes:\n    - transform: {jq: .}\n", "name"),
            (
                "spec:\n  nodes:\n    - name: a\n      http: {method: GET}\n",
                "url",
            ),
            (
                "spec:\n  nodes:\n    - name: a\n      retry: {backoff: {}}\n      fail: {message: x}\n",
                "limit",
            ),
        ];
        for (spec, field) in cases {
            let error = parse(&format!("{header}{spec}")).unwrap_err().to_string();
            assert!(
                error.contains(&format!("missing field `{field}`")),
                "{spec}: {error}"
            );
        }
    }

    #[test]
    fn the_schema_marks_required_fields_required() {
        let crd = serde_json::to_value(<Workflow as kube::CustomResourceExt>::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["nodes"]));
        assert_eq!(
            spec["properties"]["nodes"]["items"]["required"],
            serde_json::json!(["name"])
        );
        let http = &spec["properties"]["nodes"]["items"]["properties"]["http"];
        assert_eq!(http["required"], serde_json::json!(["url"]));
    }

    #[test]
    fn bad_enum_values_and_durations_are_rejected_when_read() {
        let header = "apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n";
        let bad_method = format!(
            "{header}spec:\n  nodes:\n    - name: a\n      http: {{url: /, method: FETCH}}\n"
        );
        assert!(
            parse(&bad_method)
                .unwrap_err()
                .to_string()
                .contains("FETCH")
        );
        let bad_timeout = format!(
            "{header}spec:\n  nodes:\n    - name: a\n      timeout: 10 seconds\n      fail: {{message: x}}\n"
        );
        assert!(
            parse(&bad_timeout)
                .unwrap_err()
                .to_string()
                .contains("e.g. 500ms")
        );
    }

    #[test]
    fn action_returns_the_single_block() {
        let node = NodeSpec::transform("t", ".");
        assert_eq!(
            node.action().map(|a| a.node_type()),
            Some(NodeType::Transform)
        );
        let two = node.with(|n| {
            n.fail = Some(FailNode {
                message: "x".into(),
            })
        });
        assert_eq!(two.actions().len(), 2);
        assert_eq!(two.action(), None);
    }
}

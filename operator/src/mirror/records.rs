//! Plain records: the mirror's input.
//!
//! The operator converts Kubernetes objects and runner events into these
//! structs; the mirror turns them into rows. They deliberately do not use
//! the CRD types, so the mirror is testable on its own and the conversion
//! lives in one place in the operator. Records never carry secret material:
//! a secret is always a [`SecretKeyRef`] or a fingerprint.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A namespace. `uid` is the namespace's UID.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceRecord {
    pub uid: Uuid,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: Option<DateTime<Utc>>,
    /// The namespace is being deleted (or is gone).
    pub deleted: bool,
}

/// Lifecycle of a Workflow as stored in `workflows.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowState {
    /// Valid and not suspended.
    Active,
    /// `spec.suspend: true`.
    Inactive,
    /// Not (yet) valid.
    Draft,
    /// Deleted from Kubernetes; history stays in PostgreSQL.
    Archived,
}

impl WorkflowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Active => "active",
            WorkflowState::Inactive => "inactive",
            WorkflowState::Draft => "draft",
            WorkflowState::Archived => "archived",
        }
    }
}

/// A Workflow at one revision, with the parts mirrored to side tables.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub uid: Uuid,
    pub workspace_uid: Uuid,
    /// The namespace's name, so the workspace row can be created if the
    /// namespace's own event has not been mirrored yet.
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    /// `spec.nodes` as JSON.
    pub nodes: Value,
    /// The `needs` edges as `[{"from": a, "to": b}]`.
    pub edges: Value,
    /// The rest of the spec (input, concurrency, runner, …).
    pub settings: Value,
    pub state: WorkflowState,
    /// `status.revision`, bumped per spec generation.
    pub revision: i32,
    pub labels: BTreeMap<String, String>,
    pub triggers: Vec<TriggerRecord>,
    pub env: Vec<EnvVarRecord>,
    pub created_at: Option<DateTime<Utc>>,
    /// Kubernetes username of the creator (`sluice.dev/created-by`);
    /// `None`: the operator's own row.
    pub created_by: Option<String>,
    /// First time the workflow became valid.
    pub published_at: Option<DateTime<Utc>>,
}

/// A reference to one key of a Secret in the object's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

impl SecretKeyRef {
    /// What is stored instead of the secret: `secretRef:<name>/<key>`.
    pub fn reference(&self) -> String {
        format!("secretRef:{}/{}", self.name, self.key)
    }
}

/// One entry of `spec.triggers`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    pub name: String,
    /// `webhook`, `manual`, `event` …
    pub trigger_type: String,
    pub settings: Value,
    pub active: bool,
    /// Set for webhook triggers: the endpoint they expose.
    pub webhook: Option<WebhookRecord>,
}

/// The HTTP endpoint of a webhook trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// `/hooks/{namespace}/{workflow}/{trigger}`.
    pub path: String,
    /// Where the HMAC key or bearer token lives; never the value.
    pub secret_ref: Option<SecretKeyRef>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// For a bearer-token trigger whose Secret was read: `sha256:` and the
    /// first 16 hex digits of the token's SHA-256 (its `api_keys` row).
    pub bearer_fingerprint: Option<String>,
}

/// One `spec.env` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvVarRecord {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Plain(String),
    /// Stored as `secretRef:<name>/<key>` with `is_secret = true`.
    Secret(SecretKeyRef),
}

/// A Schedule object.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub uid: Uuid,
    pub workflow_uid: Uuid,
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    /// Not suspended.
    pub active: bool,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Verification state of a Connection (`Verified` condition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Unverified,
    Verified,
    Failed,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Unverified => "unverified",
            Verification::Verified => "verified",
            Verification::Failed => "failed",
        }
    }
}

/// A Connection object. `config` is masked again by the mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRecord {
    pub uid: Uuid,
    pub workspace_uid: Uuid,
    pub namespace: String,
    pub name: String,
    pub connection_type: String,
    pub config: Value,
    /// `spec.secretRef.name`.
    pub secret_name: Option<String>,
    /// Hex SHA-256 over the Secret's data, computed by the operator; lets a
    /// reader see that credentials changed without seeing them. Anything
    /// that is not 64 hex digits is dropped by the mirror.
    pub secret_fingerprint: Option<String>,
    /// `Ready`: the Secret is present with the required keys.
    pub ready: bool,
    pub verification: Verification,
    pub last_verified_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    /// With `spec.oauth2`: what is known of the token the operator keeps.
    pub oauth2: Option<OAuth2Record>,
}

/// The `oauth_connections` row of an OAuth2 Connection: status, expiry,
/// scopes and last refresh. There is no field for a token.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Record {
    /// Preset name or `custom`.
    pub provider: String,
    /// `ClientCredentials`, `RefreshToken` or `AuthorizationCode`.
    pub grant: String,
    /// `authorized`, `refresh_failed`, `authorization_required`, `not_ready` or `unknown`.
    pub status: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
}

/// WorkflowRun phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    Pending,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunPhase {
    /// The seed's vocabulary for `workflow_executions.status`.
    pub fn as_status(self) -> &'static str {
        match self {
            RunPhase::Pending => "pending",
            RunPhase::Queued => "queued",
            RunPhase::Running => "running",
            RunPhase::Succeeded => "completed",
            RunPhase::Failed => "failed",
            RunPhase::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

/// A WorkflowRun.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub uid: Uuid,
    pub workflow_uid: Uuid,
    pub name: String,
    pub phase: RunPhase,
    pub workflow_revision: Option<i32>,
    pub priority: i32,
    /// `spec.input`.
    pub input: Option<Value>,
    /// `status.output` (or the full output the runner reported).
    pub output: Option<Value>,
    pub error: Option<String>,
    /// `status.trigger`: manual, schedule or webhook, with its data.
    pub trigger: Option<Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Kubernetes username of the creator (`sluice.dev/created-by`; a
    /// trigger's `system:sluice:…` name for runs the operator started);
    /// `None`: the operator's own row.
    pub created_by: Option<String>,
    /// The Job's name, stored as the queue entry's worker.
    pub job_name: Option<String>,
    /// The run's workflow (and its workspace) as the run carries it: from
    /// its frozen snapshot, revision and workflow UID. Written first, only
    /// where no row exists yet, so a run's row never waits for a parent
    /// that may never come (a replaced database, a dropped event).
    pub parent: Option<Box<WorkflowRecord>>,
}

/// Phase of one node attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl NodePhase {
    pub fn as_status(self) -> &'static str {
        match self {
            NodePhase::Pending => "pending",
            NodePhase::Running => "running",
            NodePhase::Succeeded => "completed",
            NodePhase::Failed => "failed",
            NodePhase::Skipped => "skipped",
            NodePhase::Cancelled => "cancelled",
        }
    }
}

/// One attempt of one node (or forEach item) of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeExecutionRecord {
    pub execution_uid: Uuid,
    /// The node's name; a forEach item is `name[index]`.
    pub node_id: String,
    /// 0 for the first try, then 1, 2 … per retry.
    pub attempt: i32,
    pub node_type: String,
    pub phase: NodePhase,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `None` keeps what is stored (a finish event need not repeat the input).
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// The runner pod.
    pub worker_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One log line of a run, numbered by the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub execution_uid: Uuid,
    /// Per-run sequence number: the idempotency key of the line.
    pub seq: i64,
    /// The node (and attempt) that logged it, if any.
    pub node: Option<(String, i32)>,
    pub level: LogLevel,
    /// Raw bytes: a process may print invalid UTF-8.
    pub message: Vec<u8>,
    pub metadata: Option<Value>,
    pub logged_at: DateTime<Utc>,
}

/// One entry of the built-in node catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDefinitionRecord {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// trigger, action, condition, loop …
    pub kind: String,
    pub category: Option<String>,
    pub icon: Option<String>,
    pub settings_schema: Option<Value>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    pub builtin: bool,
    pub active: bool,
}

/// A custom node type: a NodeType (in a workspace) or a ClusterNodeType.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTypeRecord {
    pub uid: Uuid,
    pub name: String,
    /// The NodeType's namespace (uid, name); `None` for a ClusterNodeType.
    pub workspace: Option<(Uuid, String)>,
    pub spec: sluice_crds::NodeTypeSpec,
    pub created_at: Option<DateTime<Utc>>,
}

/// The kinds of Sluice objects (and namespaces) the mirror audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Workspace,
    Workflow,
    WorkflowRun,
    Schedule,
    Connection,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Workspace => "workspace",
            ResourceKind::Workflow => "workflow",
            ResourceKind::WorkflowRun => "workflow_run",
            ResourceKind::Schedule => "schedule",
            ResourceKind::Connection => "connection",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Created,
    Updated,
    Deleted,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Created => "created",
            AuditAction::Updated => "updated",
            AuditAction::Deleted => "deleted",
        }
    }
}

/// One observed create/update/delete of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub resource_uid: Uuid,
    /// With the uid and action, the idempotency key of the entry: the
    /// object's `metadata.generation` for a create or update (so status
    /// writes and replayed watch events make no new entry), its last
    /// `resourceVersion` for a delete.
    pub version: String,
    pub kind: ResourceKind,
    pub name: String,
    pub namespace: String,
    /// The namespace's uid; its workspace row is created when missing.
    pub workspace_uid: Option<Uuid>,
    pub action: AuditAction,
    /// `None` for an update or delete: the mirror takes the new state of
    /// the object's previous entry, so the operator keeps no copies.
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
    /// Field manager, user agent or similar, when known.
    pub metadata: Option<Value>,
    /// Kubernetes username of who did it, when known (the creator, for a
    /// create); `audit_logs.user_id`.
    pub user: Option<String>,
    pub observed_at: DateTime<Utc>,
}

/// A sample of an operator-level metric.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemMetricRecord {
    pub metric_type: String,
    pub value: f64,
    pub unit: Option<String>,
    pub tags: Value,
    pub recorded_at: DateTime<Utc>,
}

/// An object that is gone from Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedRecord {
    pub kind: ResourceKind,
    pub uid: Uuid,
}

/// Which namespaces an operator mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every namespace.
    #[default]
    Cluster,
    /// Only the namespaces of these names.
    Namespaces(Vec<String>),
}

/// Everything that exists in the operator's scope, as one resync listed
/// it: the rows of objects in scope that it lacks are of objects deleted
/// while no operator watched, and are archived, deactivated or removed as
/// a delete would have done.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InventoryRecord {
    pub scope: Scope,
    /// Namespaces in scope that exist and are not being deleted.
    pub namespaces: Vec<Uuid>,
    pub workflows: Vec<Uuid>,
    pub runs: Vec<Uuid>,
    pub schedules: Vec<Uuid>,
    pub connections: Vec<Uuid>,
}

/// A Sluice role, as a RoleBinding grants it (`sluice-view`, or the
/// built-in `view` that aggregates it, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberRole {
    View,
    Edit,
    Admin,
}

impl MemberRole {
    pub const ALL: [MemberRole; 3] = [MemberRole::View, MemberRole::Edit, MemberRole::Admin];

    /// `user_roles.name`: the ClusterRole's name.
    pub fn role_name(self) -> &'static str {
        match self {
            MemberRole::View => "sluice-view",
            MemberRole::Edit => "sluice-edit",
            MemberRole::Admin => "sluice-admin",
        }
    }

    /// `workspace_members.role` in the seed's words.
    pub fn member_role(self) -> &'static str {
        match self {
            MemberRole::View => "viewer",
            MemberRole::Edit => "editor",
            MemberRole::Admin => "admin",
        }
    }
}

/// One user's membership of one namespace's workspace: the highest Sluice
/// role their RoleBindings there grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub workspace_uid: Uuid,
    pub namespace: String,
    /// Kubernetes username (`system:serviceaccount:<ns>:<name>` for a
    /// ServiceAccount).
    pub username: String,
    pub role: MemberRole,
}

/// All memberships the RoleBindings in `scope` grant, as one watch saw
/// them: rows the operator wrote before that are not here are removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipRecord {
    pub scope: Scope,
    /// At most one per (workspace, username).
    pub members: Vec<MemberRecord>,
    /// (username, role) for every role some binding grants, deduplicated.
    pub assignments: Vec<(String, MemberRole)>,
}

/// A Plan (cluster-scoped): `billing_plans`, keyed by its UID.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRecord {
    pub uid: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `spec.limits` as JSON (camelCase keys, limits left out are absent).
    pub limits: Value,
    pub created_at: Option<DateTime<Utc>>,
    /// The Plan is deleted: its row stays, inactive.
    pub deleted: bool,
}

/// The plan a namespace is on from `at`: its label `sluice.dev/plan`, or
/// the operator's default plan, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub workspace_uid: Uuid,
    /// The namespace's name, for its workspace row when it has none yet.
    pub namespace: String,
    /// The Plan's name (`subscriptions.plan_id`); `None` ends the current
    /// subscription.
    pub plan: Option<String>,
    /// When the change was seen: the new subscription's start and the
    /// previous one's end.
    pub at: DateTime<Utc>,
}

/// Everything the mirror writes, one event at a time.
#[derive(Debug, Clone, PartialEq)]
pub enum MirrorEvent {
    Workspace(WorkspaceRecord),
    /// Also writes its version, tags, triggers, webhooks and environment.
    Workflow(WorkflowRecord),
    Schedule(ScheduleRecord),
    Connection(ConnectionRecord),
    /// Also writes its queue entry, its webhook endpoint's last use and,
    /// once finished, the daily metrics.
    Execution(ExecutionRecord),
    NodeExecution(NodeExecutionRecord),
    Log(LogRecord),
    NodeDefinition(NodeDefinitionRecord),
    /// `custom_nodes`, its `node_definitions` row, presets as
    /// `node_templates`, `installed_nodes`, and for a ClusterNodeType
    /// `node_marketplace`.
    NodeType(NodeTypeRecord),
    /// A deleted NodeType or ClusterNodeType, by uid.
    NodeTypeDeleted(Uuid),
    Audit(AuditRecord),
    SystemMetric(SystemMetricRecord),
    Deleted(DeletedRecord),
    /// `workspace_members`, `user_roles` and `user_role_assignments`.
    Membership(MembershipRecord),
    /// Only from a resync, after everything it lists: the sweep of rows
    /// whose objects are gone.
    Inventory(InventoryRecord),
    /// `billing_plans`.
    Plan(PlanRecord),
    /// `subscriptions`: the current one ends, the new one starts.
    Subscription(SubscriptionRecord),
}

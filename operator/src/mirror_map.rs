//! Kubernetes objects and run events → mirror records. The conversions are
//! pure functions; the `offer_*` helpers hand records to the mirror without
//! ever blocking a reconcile (a full queue is counted and resynced later).

use crate::context::Context;
use crate::mirror::{
    EnvValue, EnvVarRecord, ExecutionRecord, InventoryRecord, LogLevel, LogRecord, MirrorEvent,
    NodeExecutionRecord, NodePhase as MirrorNodePhase, RunPhase as MirrorRunPhase, ScheduleRecord,
    Scope, SecretKeyRef, TriggerRecord, WebhookRecord, WorkflowRecord, WorkflowState,
};
use crate::scope::WatchScope;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_crds::common::{condition_type, find_condition};
use sluice_crds::run_api::{RunEvent, RunEventKind};
use sluice_crds::{
    ConditionStatus, Connection, NodePhase, RunPhase, Schedule, ScheduleStatus, Workflow,
    WorkflowRun, WorkflowStatus,
};
use std::sync::Arc;
use uuid::Uuid;

/// The UID of namespace `name` (the workspace id), read from the API server
/// or remembered from a recent read.
pub async fn namespace_uid(context: &Context, name: &str) -> Option<Uuid> {
    // Remembered for a while ([`Context::namespace_uids`]); an unknown
    // namespace is not remembered, so the next use asks again.
    let read = async {
        let namespaces: Api<Namespace> = Api::all(context.client.clone());
        let namespace = namespaces.get_opt(name).await.ok().flatten();
        parse_uid(namespace.and_then(|namespace| namespace.uid()).as_deref()).ok_or(())
    };
    context.namespace_uids.get_or_read(name, read).await.ok()
}

fn parse_uid(uid: Option<&str>) -> Option<Uuid> {
    uid.and_then(|uid| Uuid::parse_str(uid).ok())
}

/// Offers `event` to the mirror if there is one; never waits.
pub fn offer(context: &Context, event: MirrorEvent) {
    if let Some(mirror) = &context.mirror
        && let Err(error) = mirror.offer(event)
    {
        tracing::warn!(%error, "mirror queue refused an event; it will be resynced");
    }
}

/// Mirrors a Workflow (and its new revision, if any).
pub fn offer_workflow(
    context: &Arc<Context>,
    workflow: &Workflow,
    status: &WorkflowStatus,
    _new_revision: Option<i64>,
) {
    if context.mirror.is_none() {
        return;
    }
    let context = context.clone();
    let workflow = workflow.clone();
    let status = status.clone();
    tokio::spawn(async move {
        let Some(namespace) = workflow.namespace() else {
            return;
        };
        let Some(workspace_uid) = namespace_uid(&context, &namespace).await else {
            return;
        };
        if let Some(mut record) = workflow_record(&workflow, &status, workspace_uid) {
            if let Err(error) =
                read_bearer_fingerprints(&context.client, &workflow, &mut record).await
            {
                tracing::warn!(%error, "failed to read a webhook trigger's secret; its api key waits for a resync");
            }
            offer(&context, MirrorEvent::Workflow(record));
        }
    });
}

/// Mirrors a Schedule with `status` (its row needs the Workflow's uid, read
/// here; a Workflow that does not exist yet is mirrored by a later resync).
pub fn offer_schedule(context: &Arc<Context>, schedule: &Schedule, status: &ScheduleStatus) {
    if context.mirror.is_none() {
        return;
    }
    let context = context.clone();
    let schedule = schedule.clone();
    let status = status.clone();
    tokio::spawn(async move {
        let Some(namespace) = schedule.namespace() else {
            return;
        };
        let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
        let Ok(Some(workflow)) = workflows.get_opt(&schedule.spec.workflow_ref.name).await else {
            return;
        };
        if let Some(record) = parse_uid(workflow.uid().as_deref())
            .and_then(|workflow_uid| schedule_record(&schedule, &status, workflow_uid))
        {
            offer(&context, MirrorEvent::Schedule(record));
        }
    });
}

/// The mirror record of `schedule` with `status`, whose Workflow has
/// `workflow_uid`: active unless suspended or paused, the next and last slots.
pub fn schedule_record(
    schedule: &Schedule,
    status: &ScheduleStatus,
    workflow_uid: Uuid,
) -> Option<ScheduleRecord> {
    let paused = find_condition(&status.conditions, crate::schedule::plan::PAUSED)
        .is_some_and(|c| c.status == ConditionStatus::True);
    Some(ScheduleRecord {
        uid: parse_uid(schedule.uid().as_deref())?,
        workflow_uid,
        name: schedule.name_any(),
        cron: schedule.spec.cron.clone(),
        time_zone: schedule
            .spec
            .time_zone
            .clone()
            .unwrap_or_else(|| "UTC".to_owned()),
        active: !schedule.spec.suspend.unwrap_or(false) && !paused,
        next_run_at: status.next_schedule_times.first().copied(),
        last_run_at: status.last_schedule_time,
        created_at: schedule
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(jiff_to_chrono),
    })
}

/// Mirrors a run's current state (the mirror keeps finished rows finished).
pub fn offer_run(context: &Context, run: &WorkflowRun) {
    if let Some(record) = workflow_uid(run).and_then(|uid| execution_record(run, uid, None)) {
        offer(context, MirrorEvent::Execution(record));
    }
}

/// The UID of the run's Workflow, from the owner reference admission sets.
pub fn workflow_uid(run: &WorkflowRun) -> Option<Uuid> {
    run.owner_references()
        .iter()
        .find(|owner| owner.kind == "Workflow")
        .and_then(|owner| Uuid::parse_str(&owner.uid).ok())
}

/// The mirror record of `workflow` with `status`.
pub fn workflow_record(
    workflow: &Workflow,
    status: &WorkflowStatus,
    workspace_uid: Uuid,
) -> Option<WorkflowRecord> {
    let uid = parse_uid(workflow.uid().as_deref())?;
    let spec = &workflow.spec;
    let valid = find_condition(&status.conditions, condition_type::VALID)
        .is_some_and(|c| c.status == ConditionStatus::True);
    let state = if workflow.metadata.deletion_timestamp.is_some() {
        WorkflowState::Archived
    } else if !valid {
        WorkflowState::Draft
    } else if spec.suspend.unwrap_or(false) {
        WorkflowState::Inactive
    } else {
        WorkflowState::Active
    };
    let edges: Vec<Value> = spec
        .nodes
        .iter()
        .flat_map(|node| {
            node.needs
                .iter()
                .map(|need| json!({"from": need, "to": node.name}))
        })
        .collect();
    let mut settings = serde_json::to_value(spec).unwrap_or_default();
    if let Some(settings) = settings.as_object_mut() {
        settings.remove("nodes");
        settings.remove("description");
    }
    let namespace = workflow.namespace().unwrap_or_default();
    let triggers = spec
        .triggers
        .iter()
        .map(|trigger| TriggerRecord {
            name: trigger.name.clone(),
            trigger_type: "webhook".to_owned(),
            settings: serde_json::to_value(&trigger.webhook).unwrap_or_default(),
            active: trigger.enabled.unwrap_or(true),
            webhook: Some(WebhookRecord {
                path: format!(
                    "/hooks/{namespace}/{}/{}",
                    workflow.name_any(),
                    trigger.name
                ),
                secret_ref: Some(SecretKeyRef {
                    name: trigger.webhook.auth.secret_ref.name.clone(),
                    key: trigger.webhook.auth.secret_ref.key.clone(),
                }),
                last_used_at: None,
                // Filled in by `read_bearer_fingerprints`, which reads Secrets.
                bearer_fingerprint: None,
            }),
        })
        .collect();
    Some(WorkflowRecord {
        uid,
        workspace_uid,
        namespace,
        name: workflow.name_any(),
        description: spec.description.clone(),
        nodes: serde_json::to_value(&spec.nodes).unwrap_or_default(),
        edges: Value::Array(edges),
        settings,
        state,
        revision: status.revision.unwrap_or(1) as i32,
        labels: workflow.labels().clone(),
        triggers,
        env: spec
            .env
            .iter()
            .map(|var| EnvVarRecord {
                name: var.name.clone(),
                value: EnvValue::Plain(var.value.clone()),
            })
            .collect(),
        created_at: workflow
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(jiff_to_chrono),
        created_by: crate::audit::creator(workflow),
        published_at: None,
    })
}

/// The `api_keys` fingerprint of a bearer token: `sha256:` and the first 16
/// hex digits of its SHA-256. Enough to tell tokens apart and to see a
/// rotation; too short to test guesses against offline with certainty.
pub fn bearer_fingerprint(token: &[u8]) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(token));
    format!("sha256:{}", &digest[..16])
}

/// Fills in the fingerprints of `record`'s bearer-token triggers from
/// their Secrets (a trigger whose Secret or key is missing gets none, and
/// so no `api_keys` row until the workflow is mirrored again).
pub async fn read_bearer_fingerprints(
    client: &kube::Client,
    workflow: &Workflow,
    record: &mut WorkflowRecord,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Secret;
    use sluice_crds::workflow::WebhookAuthType;
    let namespace = workflow.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for trigger in &workflow.spec.triggers {
        let auth = &trigger.webhook.auth;
        if auth.type_ != Some(WebhookAuthType::Bearer) {
            continue;
        }
        let Some(secret) = secrets.get_opt(&auth.secret_ref.name).await? else {
            continue;
        };
        let token = secret
            .data
            .and_then(|mut data| data.remove(&auth.secret_ref.key))
            .map(|value| value.0)
            .or_else(|| {
                secret
                    .string_data
                    .and_then(|mut data| data.remove(&auth.secret_ref.key))
                    .map(String::into_bytes)
            });
        let webhook = record
            .triggers
            .iter_mut()
            .find(|record| record.name == trigger.name)
            .and_then(|record| record.webhook.as_mut());
        if let (Some(token), Some(webhook)) = (token, webhook) {
            webhook.bearer_fingerprint = Some(bearer_fingerprint(&token));
        }
    }
    Ok(())
}

pub(crate) fn jiff_to_chrono(
    time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond() as u32)
}

/// The mirror record of `run` (belonging to the workflow with `workflow_uid`).
pub fn execution_record(
    run: &WorkflowRun,
    workflow_uid: Uuid,
    full_output: Option<Value>,
) -> Option<ExecutionRecord> {
    let uid = parse_uid(run.uid().as_deref())?;
    let status = run.status.clone().unwrap_or_default();
    Some(ExecutionRecord {
        uid,
        workflow_uid,
        name: run.name_any(),
        phase: mirror_run_phase(status.phase.unwrap_or_default()),
        workflow_revision: status.workflow_revision.map(|r| r as i32),
        priority: run.spec.priority.unwrap_or(0),
        input: run.spec.input.clone(),
        // Status holds only a capped copy; the full output comes from the
        // runner's final event, and an absent output keeps the stored one.
        output: full_output,
        error: status.message.clone(),
        trigger: run
            .spec
            .trigger
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok()),
        created_at: run
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(jiff_to_chrono),
        started_at: status.start_time,
        ended_at: status.completion_time,
        job_name: status.job_name.clone(),
        created_by: crate::audit::creator(run),
        parent: None,
    })
}

fn mirror_run_phase(phase: RunPhase) -> MirrorRunPhase {
    match phase {
        RunPhase::Pending => MirrorRunPhase::Pending,
        RunPhase::Queued => MirrorRunPhase::Queued,
        RunPhase::Running => MirrorRunPhase::Running,
        RunPhase::Succeeded => MirrorRunPhase::Succeeded,
        RunPhase::Failed => MirrorRunPhase::Failed,
        RunPhase::Cancelled => MirrorRunPhase::Cancelled,
    }
}

fn mirror_node_phase(phase: NodePhase) -> MirrorNodePhase {
    match phase {
        NodePhase::Pending => MirrorNodePhase::Pending,
        NodePhase::Running => MirrorNodePhase::Running,
        NodePhase::Succeeded => MirrorNodePhase::Succeeded,
        NodePhase::Failed => MirrorNodePhase::Failed,
        NodePhase::Skipped => MirrorNodePhase::Skipped,
        NodePhase::Cancelled => MirrorNodePhase::Cancelled,
    }
}

/// The node executions and log lines in `events` of the run `run_uid`,
/// run by the pod `worker`.
pub fn event_records(run_uid: Uuid, worker: Option<&str>, events: &[RunEvent]) -> Vec<MirrorEvent> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            RunEventKind::NodeStarted {
                node,
                node_type,
                attempt,
                input,
            } => Some(MirrorEvent::NodeExecution(NodeExecutionRecord {
                execution_uid: run_uid,
                node_id: node.clone(),
                attempt: attempt.saturating_sub(1) as i32,
                node_type: node_type.clone(),
                phase: MirrorNodePhase::Running,
                started_at: Some(event.time),
                ended_at: None,
                input: input.clone(),
                output: None,
                error: None,
                worker_id: worker.map(str::to_owned),
            })),
            RunEventKind::NodeFinished {
                node,
                node_type,
                phase,
                attempts,
                started_at,
                output,
                error,
                ..
            } => Some(MirrorEvent::NodeExecution(NodeExecutionRecord {
                execution_uid: run_uid,
                node_id: node.clone(),
                attempt: attempts.saturating_sub(1) as i32,
                node_type: node_type.clone(),
                phase: mirror_node_phase(*phase),
                started_at: *started_at,
                ended_at: Some(event.time),
                input: None,
                output: output.clone(),
                error: error.clone(),
                worker_id: worker.map(str::to_owned),
            })),
            RunEventKind::Log {
                node,
                level,
                message,
            } => Some(MirrorEvent::Log(LogRecord {
                execution_uid: run_uid,
                seq: event.seq as i64,
                node: node.clone().map(|node| (node, 0)),
                level: match level.as_str() {
                    "debug" => LogLevel::Debug,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    _ => LogLevel::Info,
                },
                message: message.clone().into_bytes(),
                metadata: None,
                logged_at: event.time,
            })),
            RunEventKind::RunFinished { .. } => None,
        })
        .collect()
}

/// Mirrors a Connection: its masked config, readiness, verification and
/// the fingerprint of its Secret's data (never the data).
pub fn offer_connection(
    context: &Arc<Context>,
    connection: &sluice_crds::Connection,
    status: &sluice_crds::ConnectionStatus,
    fingerprint: Option<String>,
) {
    if context.mirror.is_none() {
        return;
    }
    let context = context.clone();
    let connection = connection.clone();
    let status = status.clone();
    tokio::spawn(async move {
        let Some(namespace) = connection.namespace() else {
            return;
        };
        let Some(workspace_uid) = namespace_uid(&context, &namespace).await else {
            return;
        };
        if let Some(record) = connection_record(&connection, &status, workspace_uid, fingerprint) {
            offer(&context, MirrorEvent::Connection(record));
        }
    });
}

/// The mirror record of `connection` with `status` and the hex SHA-256
/// `fingerprint` of its Secret's data.
pub fn connection_record(
    connection: &sluice_crds::Connection,
    status: &sluice_crds::ConnectionStatus,
    workspace_uid: Uuid,
    fingerprint: Option<String>,
) -> Option<crate::mirror::ConnectionRecord> {
    use crate::mirror::Verification;
    let uid = parse_uid(connection.uid().as_deref())?;
    let holds =
        |type_: &str| find_condition(&status.conditions, type_).map(|condition| condition.status);
    let verification = match holds(condition_type::VERIFIED) {
        Some(ConditionStatus::True) => Verification::Verified,
        Some(ConditionStatus::False) => Verification::Failed,
        _ => Verification::Unverified,
    };
    Some(crate::mirror::ConnectionRecord {
        uid,
        workspace_uid,
        namespace: connection.namespace().unwrap_or_default(),
        name: connection.name_any(),
        connection_type: connection.spec.type_.as_str().to_owned(),
        config: serde_json::to_value(&connection.spec.config).unwrap_or_default(),
        secret_name: connection.spec.secret_ref.as_ref().map(|r| r.name.clone()),
        secret_fingerprint: fingerprint,
        ready: holds(condition_type::READY) == Some(ConditionStatus::True),
        verification,
        last_verified_at: status.last_verified_time,
        created_at: connection
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(jiff_to_chrono),
        oauth2: connection.spec.oauth2.as_ref().map(|spec| {
            let authorized = find_condition(&status.conditions, sluice_crds::oauth2::AUTHORIZED);
            let kept = status.oauth2.clone().unwrap_or_default();
            crate::mirror::OAuth2Record {
                provider: spec.provider_name().to_owned(),
                grant: spec.grant.as_str().to_owned(),
                status: match authorized {
                    Some(condition) if condition.status == ConditionStatus::True => "authorized",
                    Some(condition) => match condition.reason.as_str() {
                        "RefreshFailed" => "refresh_failed",
                        "AuthorizationRequired" => "authorization_required",
                        "NotReady" => "not_ready",
                        _ => "unknown",
                    },
                    None => "unknown",
                }
                .to_owned(),
                expires_at: kept.expires_at,
                scopes: if kept.scopes.is_empty() {
                    spec.scopes.clone()
                } else {
                    kept.scopes
                },
                last_refreshed_at: kept.last_refresh_time,
            }
        }),
    })
}

/// The built-in node catalog as `node_definitions` rows: one per node type,
/// at this operator's version, with its description, category and
/// parameter schema (what `sluice-runner nodes` prints).
pub fn node_definition_records() -> Vec<MirrorEvent> {
    sluice_crds::NodeType::ALL
        .iter()
        .map(|node_type| {
            let (description, category) = sluice_runner::nodes::describe(*node_type);
            MirrorEvent::NodeDefinition(crate::mirror::NodeDefinitionRecord {
                name: node_type.as_str().to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                description: Some(description.to_owned()),
                kind: "action".to_owned(),
                category: Some(category.to_owned()),
                icon: None,
                settings_schema: Some(sluice_runner::nodes::parameter_schema(*node_type)),
                input_schema: None,
                output_schema: None,
                builtin: true,
                active: true,
            })
        })
        .collect()
}

/// Reads the cluster for a mirror resync: the workflows (with their current
/// status), schedules, connections (with their Secret's fingerprint) and,
/// last, runs with their parents, of every namespace in scope.
pub struct ClusterResync {
    client: kube::Client,
    scope: WatchScope,
    default_plan: Option<String>,
}

impl ClusterResync {
    /// A resync over the namespaces of `scope`.
    pub fn new(client: kube::Client, scope: WatchScope) -> Self {
        Self {
            client,
            scope,
            default_plan: None,
        }
    }

    /// Namespaces without a `sluice.dev/plan` label are on `plan`.
    pub fn with_default_plan(mut self, plan: Option<String>) -> Self {
        self.default_plan = plan;
        self
    }

    /// Plans, and the subscription of each live namespace in scope (Plans
    /// are cluster-scoped: an older chart's RBAC may not let the operator
    /// read them, and the rest of the resync still counts).
    /// `listed_at` is taken before the namespaces were listed: a label
    /// change the list missed is seen by the watch later than that.
    async fn read_quotas(
        &self,
        namespaces: &[Namespace],
        listed_at: DateTime<Utc>,
    ) -> Vec<MirrorEvent> {
        let mut events = Vec::new();
        match Api::<sluice_crds::Plan>::all(self.client.clone())
            .list(&kube::api::ListParams::default())
            .await
        {
            Ok(plans) => events.extend(
                plans
                    .items
                    .iter()
                    .filter_map(|plan| crate::quota::build_plan_record(plan, false))
                    .map(MirrorEvent::Plan),
            ),
            Err(error) => tracing::warn!(%error, "failed to list plans; plans not resynced"),
        }
        events.extend(namespaces.iter().filter_map(|namespace| {
            crate::workspaces::plan_namespace(
                &kube::runtime::watcher::Event::InitApply(namespace.metadata.clone()),
                self.default_plan.as_deref(),
                listed_at,
            )
            .filter(|event| matches!(event, MirrorEvent::Subscription(_)))
        }));
        events
    }

    async fn read(&self) -> Result<Vec<MirrorEvent>, kube::Error> {
        let workflows: Vec<Workflow> = self.scope.list(&self.client).await?;
        let runs: Vec<WorkflowRun> = self.scope.list(&self.client).await?;
        let connections: Vec<Connection> = self.scope.list(&self.client).await?;
        let listed_at = Utc::now();
        let (workspace_uids, live_namespaces, listed_namespaces) = self.namespaces().await?;
        let mut events: Vec<MirrorEvent> = Vec::new();
        for workflow in &workflows {
            let Some(workspace) = workspace_uids.get(&workflow.namespace().unwrap_or_default())
            else {
                continue;
            };
            let status = workflow.status.clone().unwrap_or_default();
            if let Some(mut record) = workflow_record(workflow, &status, *workspace) {
                read_bearer_fingerprints(&self.client, workflow, &mut record).await?;
                events.push(MirrorEvent::Workflow(record));
            }
        }
        let schedules: Vec<Schedule> = self.scope.list(&self.client).await?;
        events.extend(
            schedules
                .iter()
                .filter_map(|schedule| {
                    let workflow = workflows.iter().find(|workflow| {
                        workflow.namespace() == schedule.namespace()
                            && workflow.name_any() == schedule.spec.workflow_ref.name
                    })?;
                    schedule_record(
                        schedule,
                        &schedule.status.clone().unwrap_or_default(),
                        parse_uid(workflow.uid().as_deref())?,
                    )
                })
                .map(MirrorEvent::Schedule),
        );
        for connection in &connections {
            let namespace = connection.namespace().unwrap_or_default();
            let Some(workspace) = workspace_uids.get(&namespace) else {
                continue;
            };
            let fingerprint =
                crate::connection::controller::observe_secret(connection, &self.client, &namespace)
                    .await?
                    .map(|data| crate::connection::plan::secret_fingerprint(&data));
            let status = connection.status.clone().unwrap_or_default();
            events.extend(
                connection_record(connection, &status, *workspace, fingerprint)
                    .map(MirrorEvent::Connection),
            );
        }
        // Membership, when RoleBindings can be read (an older chart's
        // RBAC may not allow it: the rest of the resync still counts).
        match self.scope.list::<RoleBinding>(&self.client).await {
            Ok(bindings) => {
                let grants: crate::membership::plan::Grants = bindings
                    .iter()
                    .map(|binding| {
                        (
                            (binding.namespace().unwrap_or_default(), binding.name_any()),
                            crate::membership::plan::grants_of(binding),
                        )
                    })
                    .filter(|(_, granted)| !granted.is_empty())
                    .collect();
                events.push(MirrorEvent::Membership(
                    crate::membership::plan::build_membership(
                        &grants,
                        &workspace_uids,
                        match self.scope.namespaces() {
                            Some(names) => Scope::Namespaces(names.to_vec()),
                            None => Scope::Cluster,
                        },
                    ),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "failed to list rolebindings; membership not resynced")
            }
        }
        events.extend(self.read_quotas(&listed_namespaces, listed_at).await);
        // Runs last, each with its parents: parents are written before
        // their children, and a run whose Workflow is gone still finds
        // (or creates) its workflow row.
        events.extend(
            runs.iter()
                .filter_map(|run| {
                    let owner = workflow_uid(run)?;
                    let gone = !workflows
                        .iter()
                        .any(|workflow| parse_uid(workflow.uid().as_deref()) == Some(owner));
                    let workspace = workspace_uids.get(&run.namespace().unwrap_or_default());
                    crate::run::parent::build_kept_record(run, workspace.copied(), None, gone)
                })
                .map(MirrorEvent::Execution),
        );
        // Last: everything above is in the database when the sweep runs.
        let uids = |metas: Vec<Option<String>>| -> Vec<Uuid> {
            metas
                .into_iter()
                .filter_map(|uid| parse_uid(uid.as_deref()))
                .collect()
        };
        events.push(MirrorEvent::Inventory(InventoryRecord {
            scope: match self.scope.namespaces() {
                Some(names) => Scope::Namespaces(names.to_vec()),
                None => Scope::Cluster,
            },
            namespaces: live_namespaces,
            workflows: uids(workflows.iter().map(ResourceExt::uid).collect()),
            runs: uids(runs.iter().map(ResourceExt::uid).collect()),
            schedules: uids(schedules.iter().map(ResourceExt::uid).collect()),
            connections: uids(connections.iter().map(ResourceExt::uid).collect()),
        }));
        Ok(events)
    }

    /// The namespaces in scope: every one's uid by name, and the uids of
    /// those not being deleted (a terminating namespace's workspace is
    /// inactive already).
    #[allow(clippy::type_complexity)]
    async fn namespaces(
        &self,
    ) -> Result<
        (
            std::collections::BTreeMap<String, Uuid>,
            Vec<Uuid>,
            Vec<Namespace>,
        ),
        kube::Error,
    > {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespaces = match self.scope.namespaces() {
            Some(names) => {
                let mut found = Vec::new();
                for name in names {
                    found.extend(api.get_opt(name).await?);
                }
                found
            }
            None => api.list(&kube::api::ListParams::default()).await?.items,
        };
        let mut by_name = std::collections::BTreeMap::new();
        let mut live = Vec::new();
        for namespace in &namespaces {
            let Some(uid) = parse_uid(namespace.uid().as_deref()) else {
                continue;
            };
            by_name.insert(namespace.name_any(), uid);
            if namespace.metadata.deletion_timestamp.is_none() {
                live.push(uid);
            }
        }
        Ok((by_name, live, namespaces))
    }
}

impl crate::mirror::ResyncSource for ClusterResync {
    fn snapshot(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<Vec<MirrorEvent>, crate::mirror::ResyncError>> {
        Box::pin(async move {
            self.read()
                .await
                .map_err(|error| crate::mirror::ResyncError(Box::new(error)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sluice_crds::NodeSpec;

    const UID: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";

    #[test]
    fn a_workflow_maps_nodes_edges_and_state() {
        let mut workflow = Workflow::fixture("w")
            .with_node(NodeSpec::transform("a", "."))
            .with_node(NodeSpec::transform("b", ".").needs(&["a"]));
        workflow.metadata.uid = Some(UID.to_owned());
        let status = WorkflowStatus {
            revision: Some(3),
            ..WorkflowStatus::default()
        };
        let record = workflow_record(&workflow, &status, Uuid::nil()).unwrap();
        assert_eq!(record.edges, json!([{"from": "a", "to": "b"}]));
        assert_eq!(record.revision, 3);
        assert_eq!(record.state, WorkflowState::Draft, "not yet validated");
        assert!(record.settings.get("nodes").is_none());
    }

    #[test]
    fn a_schedule_maps_its_next_and_last_slots_and_activity() {
        let mut schedule = Schedule::new(
            "nightly",
            sluice_crds::ScheduleSpec {
                cron: "30 2 * * *".into(),
                suspend: Some(true),
                ..Default::default()
            },
        );
        schedule.metadata.uid = Some(UID.to_owned());
        let next = Utc.with_ymd_and_hms(2026, 1, 2, 2, 30, 0).unwrap();
        let last = Utc.with_ymd_and_hms(2026, 1, 1, 2, 30, 0).unwrap();
        let status = ScheduleStatus {
            next_schedule_times: vec![next],
            last_schedule_time: Some(last),
            ..ScheduleStatus::default()
        };
        let record = schedule_record(&schedule, &status, Uuid::nil()).unwrap();
        assert_eq!(record.time_zone, "UTC");
        assert_eq!(
            (record.next_run_at, record.last_run_at),
            (Some(next), Some(last))
        );
        assert!(!record.active, "suspended");
    }

    #[test]
    fn the_node_catalog_has_every_type_with_its_parameter_schema() {
        let records = node_definition_records();
        assert_eq!(records.len(), sluice_crds::NodeType::ALL.len());
        let MirrorEvent::NodeDefinition(http) = &records[0] else {
            panic!("expected a node definition, got {:?}", records[0]);
        };
        assert_eq!(http.name, "http");
        assert!(http.builtin && http.active);
        let schema = http.settings_schema.as_ref().expect("a schema");
        assert!(schema["properties"]["url"].is_object(), "{schema}");
    }

    #[test]
    fn run_events_become_node_attempts_and_numbered_log_lines() {
        let uid = Uuid::parse_str(UID).unwrap();
        let time = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let events = [
            RunEvent {
                seq: 1,
                time,
                kind: RunEventKind::NodeStarted {
                    node: "a".into(),
                    node_type: "http".into(),
                    attempt: 2,
                    input: Some(json!({"url": "/x"})),
                },
            },
            RunEvent {
                seq: 2,
                time,
                kind: RunEventKind::Log {
                    node: Some("a".into()),
                    level: "warn".into(),
                    message: "slow".into(),
                },
            },
        ];
        let records = event_records(uid, Some("pod-1"), &events);
        match &records[0] {
            MirrorEvent::NodeExecution(record) => {
                assert_eq!(
                    (record.attempt, record.phase),
                    (1, MirrorNodePhase::Running)
                );
                assert_eq!(record.input, Some(json!({"url": "/x"})));
            }
            other => panic!("unexpected {other:?}"),
        }
        match &records[1] {
            MirrorEvent::Log(record) => assert_eq!((record.seq, record.level), (2, LogLevel::Warn)),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A client whose API server holds one Connection (namespace `team`,
    /// Secret `crm` with key `token`), one RoleBinding granting `view` to
    /// `ada` there, and nothing else.
    fn cluster_with_a_connection() -> kube::Client {
        use axum::http::{Request, Response};
        use kube::client::Body;
        let service = tower::service_fn(|request: Request<Body>| async move {
            let list = |kind: &str, items: Value| json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items});
            let body = match request.uri().path() {
                "/apis/sluice.dev/v1alpha1/connections" => list(
                    "ConnectionList",
                    json!([{
                        "apiVersion": "sluice.dev/v1alpha1", "kind": "Connection",
                        "metadata": {"name": "crm", "namespace": "team", "uid": UID},
                        "spec": {"type": "http", "secretRef": {"name": "crm"}},
                    }]),
                ),
                "/api/v1/namespaces" => list(
                    "NamespaceList",
                    json!([{
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "team", "uid": "00000000-0000-4000-8000-000000000007",
                                     "labels": {"sluice.dev/plan": "small"}},
                    }]),
                ),
                "/apis/sluice.dev/v1alpha1/plans" => list(
                    "PlanList",
                    json!([{
                        "apiVersion": "sluice.dev/v1alpha1", "kind": "Plan",
                        "metadata": {"name": "small", "uid": "00000000-0000-4000-8000-000000000009"},
                        "spec": {"limits": {"runsPerDay": 10}},
                    }]),
                ),
                "/apis/rbac.authorization.k8s.io/v1/rolebindings" => list(
                    "RoleBindingList",
                    json!([{
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": "readers", "namespace": "team"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                        "subjects": [{"kind": "User", "name": "ada"}],
                    }]),
                ),
                "/api/v1/namespaces/team/secrets/crm" => json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "crm", "namespace": "team"},
                    "data": {"token": "czNjcjN0"},
                }),
                _ => list("List", json!([])),
            };
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string().into_bytes()))
                    .expect("a response"),
            )
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn a_resync_carries_connections_with_their_secrets_fingerprint_and_the_membership() {
        let events = ClusterResync::new(cluster_with_a_connection(), WatchScope::Cluster)
            .read()
            .await
            .expect("the resync reads the cluster");
        let [
            MirrorEvent::Connection(connection),
            MirrorEvent::Membership(membership),
            MirrorEvent::Plan(plan),
            MirrorEvent::Subscription(subscription),
            MirrorEvent::Inventory(inventory),
        ] = events.as_slice()
        else {
            panic!(
                "expected one connection, the membership, the plan, the subscription and the inventory, got {events:?}"
            );
        };
        assert_eq!(
            (plan.name.as_str(), &plan.limits, plan.deleted),
            ("small", &json!({"runsPerDay": 10}), false)
        );
        assert_eq!(
            (
                subscription.namespace.as_str(),
                subscription.plan.as_deref()
            ),
            ("team", Some("small")),
            "a resync carries each namespace's plan"
        );
        assert_eq!(
            membership,
            &crate::mirror::MembershipRecord {
                scope: Scope::Cluster,
                members: vec![crate::mirror::MemberRecord {
                    workspace_uid: connection.workspace_uid,
                    namespace: "team".to_owned(),
                    username: "ada".to_owned(),
                    role: crate::mirror::MemberRole::View,
                }],
                assignments: vec![("ada".to_owned(), crate::mirror::MemberRole::View)],
            },
            "a resync rebuilds the membership"
        );
        assert_eq!(
            inventory,
            &InventoryRecord {
                scope: Scope::Cluster,
                namespaces: vec![connection.workspace_uid],
                connections: vec![connection.uid],
                ..InventoryRecord::default()
            },
            "the sweep after a resync knows what exists"
        );
        let data = std::collections::BTreeMap::from([("token".to_owned(), b"s3cr3t".to_vec())]);
        assert_eq!(
            connection.secret_fingerprint,
            Some(crate::connection::plan::secret_fingerprint(&data))
        );
        assert_eq!(
            connection.workspace_uid,
            Uuid::from_u128(0x00000000_0000_4000_8000_000000000007)
        );
    }

    #[test]
    fn a_connection_maps_readiness_verification_and_only_a_fingerprint() {
        use sluice_crds::{Condition, Connection, ConnectionSpec, ConnectionStatus};
        let mut connection = Connection::new(
            "crm",
            ConnectionSpec {
                secret_ref: Some(sluice_crds::LocalObjectReference {
                    name: "crm-api-token".to_owned(),
                }),
                ..ConnectionSpec::default()
            },
        );
        connection.metadata.uid = Some(UID.to_owned());
        connection.metadata.namespace = Some("team".to_owned());
        let time = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let status = ConnectionStatus {
            conditions: vec![
                Condition::new("Ready", ConditionStatus::True, "Ready", "ok", None, time),
                Condition::new(
                    "Verified",
                    ConditionStatus::False,
                    "Unreachable",
                    "down",
                    None,
                    time,
                ),
            ],
            last_verified_time: Some(time),
            ..ConnectionStatus::default()
        };
        let fingerprint = "ab".repeat(32);
        let record =
            connection_record(&connection, &status, Uuid::nil(), Some(fingerprint.clone()))
                .unwrap();
        assert!(record.ready);
        assert_eq!(record.verification, crate::mirror::Verification::Failed);
        assert_eq!(record.secret_name.as_deref(), Some("crm-api-token"));
        assert_eq!(record.secret_fingerprint, Some(fingerprint));
        assert_eq!(record.last_verified_at, Some(time));
    }
}

//! The Workflow controller's shell: observe (validation, Connections),
//! plan ([`super::plan`]), apply (status, Events, mirror).
//!
//! Its cache holds only Workflows' metadata ([`crate::watch`]); each
//! reconcile reads the Workflow itself, which also means it plans from the
//! latest status rather than from a watch event that may lag its own write.
//! A Workflow is reconciled when it changes and when a Connection or a
//! custom node type (NodeType, ClusterNodeType) it names changes
//! ([`super::users`]); there is no polling.

use super::plan::{Observed, plan_workflow};
use super::users::ConnectionUsers;
use crate::context::{Context, Error};
use crate::run::job::referenced_connections;
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use sluice_crds::workflow::ValidationIssue;
use sluice_crds::{ClusterNodeType, Connection, CustomNodeType, Workflow};
use std::sync::Arc;

const CONTROLLER: &str = "workflow";

/// The controller's state: the shared context and the Connection users.
pub struct State {
    context: Arc<Context>,
    users: ConnectionUsers,
    /// Which Workflows name which custom node types.
    type_users: ConnectionUsers,
}

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let workflows = context.watch::<PartialObjectMeta<Workflow>>(watcher::Config::default());
    let connections = context.watch::<PartialObjectMeta<Connection>>(watcher::Config::default());
    let node_types = context.watch::<PartialObjectMeta<CustomNodeType>>(watcher::Config::default());
    // ClusterNodeTypes are read only by an operator watching every
    // namespace: a namespace-scoped install has no ClusterRole for them.
    let cluster_node_types = match context.scope.namespaces() {
        None => watcher(
            Api::<PartialObjectMeta<ClusterNodeType>>::all(context.client.clone()),
            watcher::Config::default(),
        )
        .boxed(),
        Some(_) => futures::stream::pending().boxed(),
    };
    let state = Arc::new(State {
        context: context.clone(),
        users: ConnectionUsers::default(),
        type_users: ConnectionUsers::default(),
    });
    // Every change of a Connection (its Ready condition included) wakes
    // the Workflows that name it; only names are watched.
    let connection_events = connections.default_backoff().touched_objects();
    let index = state.clone();
    crate::watch::lean_controller(workflows, context.config.reconcile_concurrency)
        .watches_stream(
            connection_events,
            move |connection: PartialObjectMeta<Connection>| {
                let namespace = connection.namespace().unwrap_or_default();
                index
                    .users
                    .users(&namespace, &connection.name_any())
                    .into_iter()
                    .map(move |workflow| ObjectRef::new(&workflow).within(&namespace))
            },
        )
        .watches_stream(node_types.default_backoff().touched_objects(), {
            let index = state.clone();
            move |node_type: PartialObjectMeta<CustomNodeType>| {
                let namespace = node_type.namespace().unwrap_or_default();
                index
                    .type_users
                    .users(&namespace, &node_type.name_any())
                    .into_iter()
                    .map(move |workflow| ObjectRef::new(&workflow).within(&namespace))
            }
        })
        .watches_stream(cluster_node_types.default_backoff().touched_objects(), {
            let index = state.clone();
            move |node_type: PartialObjectMeta<ClusterNodeType>| {
                index
                    .type_users
                    .users_in_every_namespace(&node_type.name_any())
                    .into_iter()
                    .map(|(namespace, workflow)| ObjectRef::new(&workflow).within(&namespace))
            }
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// Validates one Workflow and writes its status.
pub async fn reconcile(
    cached: Arc<PartialObjectMeta<Workflow>>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let context = &state.context;
    context.metrics.reconciled(CONTROLLER);
    if cached.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cached
        .namespace()
        .ok_or_else(|| Error::MissingField(cached.name_any(), "metadata.namespace"))?;
    let api: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
    let Some(workflow) = api.get_opt(&cached.name_any()).await? else {
        state.users.set(&namespace, &cached.name_any(), &[]);
        state.type_users.set(&namespace, &cached.name_any(), &[]);
        return Ok(Action::await_change());
    };
    state.type_users.set(
        &namespace,
        &workflow.name_any(),
        &crate::custom_nodes::used_types(&workflow),
    );
    // Before the Connections are read: a change after the read wakes us.
    state.users.set(
        &namespace,
        &workflow.name_any(),
        &referenced_connections(&workflow),
    );
    let observed = observe(&workflow, context, &namespace).await?;
    let plan = plan_workflow(&workflow, &observed, chrono::Utc::now());
    if plan.status_changed {
        let mut updated = workflow.clone();
        updated.status = Some(plan.status.clone());
        api.replace_status(&workflow.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    for event in &plan.events {
        context
            .publish(
                &workflow,
                event.warning,
                event.reason,
                "Validate",
                event.message.clone(),
            )
            .await;
    }
    crate::mirror_map::offer_workflow(context, &workflow, &plan.status, plan.new_revision);
    // A change of the workflow or of a Connection it names wakes it.
    Ok(Action::await_change())
}

async fn observe(
    workflow: &Workflow,
    context: &Context,
    namespace: &str,
) -> Result<Observed, Error> {
    let mut errors: Vec<ValidationIssue> = sluice_runner::validate::validate(&workflow.spec)
        .into_iter()
        .map(|error| ValidationIssue {
            path: error.path,
            message: error.message,
        })
        .collect();
    errors.extend(crate::connection::plan::cross_namespace_issues(workflow));
    if !crate::custom_nodes::used_types(workflow).is_empty() {
        let types = crate::custom_nodes::observe_usable_types(&context.client, namespace).await?;
        errors.extend(
            sluice_runner::validate::check_custom_nodes(&workflow.spec, &types)
                .into_iter()
                .map(ValidationIssue::from),
        );
    }
    let referenced = referenced_connections(workflow);
    let (missing_connections, unready_connections) = if referenced.is_empty() {
        (vec![], vec![])
    } else {
        let connections: Api<Connection> = Api::namespaced(context.client.clone(), namespace);
        let existing: Vec<Connection> = connections.list(&ListParams::default()).await?.items;
        let ready = |connection: &Connection| {
            connection.status.as_ref().is_some_and(|status| {
                sluice_crds::common::find_condition(&status.conditions, "Ready")
                    .is_some_and(|c| c.status == sluice_crds::ConditionStatus::True)
            })
        };
        let (mut missing, mut unready) = (vec![], vec![]);
        for name in referenced {
            match existing.iter().find(|c| c.name_any() == name) {
                None => missing.push(name),
                Some(connection) if !ready(connection) => unready.push(name),
                Some(_) => {}
            }
        }
        (missing, unready)
    };
    Ok(Observed {
        errors,
        missing_connections,
        unready_connections,
    })
}

fn error_policy(
    workflow: Arc<PartialObjectMeta<Workflow>>,
    error: &Error,
    state: Arc<State>,
) -> Action {
    state.context.reconcile_error(CONTROLLER, &*workflow, error)
}

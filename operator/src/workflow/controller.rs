//! The Workflow controller's shell: observe (validation, Connections),
//! plan ([`super::plan`]), apply (status, Events, mirror).
//!
//! Its cache holds only Workflows' metadata ([`crate::watch`]); each
//! reconcile reads the Workflow itself, which also means it plans from the
//! latest status rather than from a watch event that may lag its own write.

use super::plan::{Observed, plan_workflow};
use crate::context::{Context, Error};
use crate::run::job::referenced_connections;
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use sluice_crds::workflow::ValidationIssue;
use sluice_crds::{Connection, Workflow};
use std::sync::Arc;
use std::time::Duration;

const CONTROLLER: &str = "workflow";

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let workflows: Api<PartialObjectMeta<Workflow>> = crate::namespaced_api(&context);
    crate::watch::lean_controller(
        workflows,
        watcher::Config::default(),
        context.config.reconcile_concurrency,
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, context)
    .for_each(|_| async {})
    .await;
}

/// Validates one Workflow and writes its status.
pub async fn reconcile(
    cached: Arc<PartialObjectMeta<Workflow>>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    context.metrics.reconciled(CONTROLLER);
    if cached.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cached
        .namespace()
        .ok_or_else(|| Error::MissingField(cached.name_any(), "metadata.namespace"))?;
    let api: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
    let Some(workflow) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let observed = observe(&workflow, &context, &namespace).await?;
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
    crate::mirror_map::offer_workflow(&context, &workflow, &plan.status, plan.new_revision);
    // Connections change without the workflow changing: look again, soon
    // while one is missing or not Ready. A workflow without connections
    // depends only on its own spec, so it waits for a change (and costs
    // nothing in the controller's queue meanwhile).
    Ok(
        if !observed.missing_connections.is_empty() || !observed.unready_connections.is_empty() {
            Action::requeue(Duration::from_secs(15))
        } else if referenced_connections(&workflow).is_empty() {
            Action::await_change()
        } else {
            Action::requeue(Duration::from_secs(600))
        },
    )
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
    context: Arc<Context>,
) -> Action {
    context.reconcile_error(CONTROLLER, &*workflow, error)
}

//! The Workflow controller's shell: observe (validation, Connections),
//! plan ([`super::plan`]), apply (status, Events, mirror).

use super::plan::{Observed, plan_workflow};
use crate::context::{Context, Error};
use crate::run::job::referenced_connections;
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
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
    let workflows: Api<Workflow> = crate::namespaced_api(&context);
    Controller::new(workflows, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}

/// Validates one Workflow and writes its status.
pub async fn reconcile(workflow: Arc<Workflow>, context: Arc<Context>) -> Result<Action, Error> {
    context.metrics.reconciled(CONTROLLER);
    if workflow.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = workflow
        .namespace()
        .ok_or_else(|| Error::MissingField(workflow.name_any(), "metadata.namespace"))?;
    let observed = observe(&workflow, &context, &namespace).await?;
    let plan = plan_workflow(&workflow, &observed, chrono::Utc::now());
    if plan.status_changed {
        let api: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
        let mut updated = (*workflow).clone();
        updated.status = Some(plan.status.clone());
        api.replace_status(&workflow.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    for event in &plan.events {
        context
            .publish(
                &*workflow,
                event.warning,
                event.reason,
                "Validate",
                event.message.clone(),
            )
            .await;
    }
    crate::mirror_map::offer_workflow(&context, &workflow, &plan.status, plan.new_revision);
    // Connections created later make the workflow Ready: look again.
    Ok(if observed.missing_connections.is_empty() {
        Action::requeue(Duration::from_secs(600))
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

async fn observe(
    workflow: &Workflow,
    context: &Context,
    namespace: &str,
) -> Result<Observed, Error> {
    let errors = sluice_runner::validate::validate(&workflow.spec)
        .into_iter()
        .map(|error| ValidationIssue {
            path: error.path,
            message: error.message,
        })
        .collect();
    let referenced = referenced_connections(workflow);
    let missing_connections = if referenced.is_empty() {
        vec![]
    } else {
        let connections: Api<Connection> = Api::namespaced(context.client.clone(), namespace);
        let existing: Vec<String> = connections
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|c| c.name_any())
            .collect();
        referenced
            .into_iter()
            .filter(|name| !existing.contains(name))
            .collect()
    };
    Ok(Observed {
        errors,
        missing_connections,
    })
}

fn error_policy(workflow: Arc<Workflow>, error: &Error, context: Arc<Context>) -> Action {
    context
        .metrics
        .reconcile_failed(CONTROLLER, error.category());
    tracing::warn!(workflow = %workflow.name_any(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

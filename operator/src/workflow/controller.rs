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
    Ok(
        if observed.missing_connections.is_empty() && observed.unready_connections.is_empty() {
            Action::requeue(Duration::from_secs(600))
        } else {
            Action::requeue(Duration::from_secs(15))
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

fn error_policy(workflow: Arc<Workflow>, error: &Error, context: Arc<Context>) -> Action {
    context.reconcile_error(CONTROLLER, &*workflow, error)
}

//! Starting an admitted run: its frozen snapshot (a ConfigMap), its runner
//! credential (a Secret) and its Job ([`super::job`]), all owned by the run
//! and each created at most once (a retry finds them AlreadyExists), then
//! the Running status, the Started Event and the mirror. The Job's deadline
//! is cut to the namespace plan's longest run duration.

use super::job::{
    MountedConnection, RUN_LABEL, TOKEN_KEY, build_job, controller_reference,
    referenced_connections,
};
use super::progress::seed_nodes;
use super::resume::{RESUME_INVALID, ResumeSource, plan_resume};
use super::shared::{RUN_NAME_ANNOTATION, SNAPSHOT_KEY, create_once, snapshot_name, write_status};
use crate::context::{Context, Error};
use crate::names;
use crate::quota::plan::{Subscribed, capped_deadline};
use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use sluice_crds::common::{condition_type, set_condition};
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{Condition, ConditionStatus, Connection, RunPhase, Workflow, WorkflowRun};
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) async fn start(
    run: &WorkflowRun,
    workflow: &Workflow,
    input: serde_json::Value,
    resume: Option<&ResumeSource>,
    plan: Option<&Subscribed>,
    context: &Context,
    namespace: &str,
) -> Result<Action, Error> {
    let run_name = run.name_any();
    let resumed = match resume.map(|source| plan_resume(source, &workflow.spec, &input)) {
        Some(Ok(plan)) => Some(plan),
        Some(Err(message)) => {
            return super::finish::end(run, context, RunPhase::Failed, RESUME_INVALID, message)
                .await;
        }
        None => None,
    };
    let uid = run
        .uid()
        .ok_or_else(|| Error::MissingField(run_name.clone(), "metadata.uid"))?;
    let workflow_status = workflow.status.clone().unwrap_or_default();

    let connection_api: Api<Connection> = Api::namespaced(context.client.clone(), namespace);
    let mut connections = BTreeMap::new();
    let mut mounted = vec![];
    for name in referenced_connections(workflow) {
        if let Some(connection) = connection_api.get_opt(&name).await? {
            if connection.spec.oauth2.is_some() {
                // The runner reads the token the operator keeps, like any secret file.
                mounted.push(MountedConnection {
                    connection: name.clone(),
                    secret: names::oauth2_token_secret_name(&name),
                    keys: vec![sluice_crds::oauth2::ACCESS_TOKEN_KEY.to_owned()],
                    optional: true,
                });
            } else if let Some(secret) = &connection.spec.secret_ref {
                mounted.push(MountedConnection {
                    connection: name.clone(),
                    secret: secret.name.clone(),
                    keys: vec![],
                    optional: false,
                });
            }
            connections.insert(name, connection.spec);
        }
    }
    // Custom node types as they are now, frozen with the spec; a type
    // missing here gets no sidecar and its nodes fail saying so.
    let used_types = crate::custom_nodes::used_types(workflow);
    let custom_types = if used_types.is_empty() {
        Default::default()
    } else {
        crate::custom_nodes::observe_usable_types(&context.client, namespace).await?
    };
    let snapshot = RunSnapshot {
        namespace: namespace.to_owned(),
        name: run_name.clone(),
        uid: uid.clone(),
        workflow: workflow.name_any(),
        workflow_revision: workflow_status.revision.unwrap_or(1),
        workflow_hash: workflow_status.spec_hash.clone().unwrap_or_default(),
        spec: workflow.spec.clone(),
        input,
        connections,
        output_cap_bytes: context.config.output_cap_bytes,
        reused_outputs: resumed
            .as_ref()
            .map(|plan| plan.reused.clone())
            .unwrap_or_default(),
        node_types: used_types
            .iter()
            .filter_map(|name| custom_types.get(name))
            .map(|custom| (custom.name.clone(), custom.spec.clone()))
            .collect(),
    };
    let owner = controller_reference(run);
    let labels = BTreeMap::from([
        (RUN_LABEL.to_owned(), names::fit_label(&run_name)),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "sluice-operator".to_owned(),
        ),
    ]);

    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(snapshot_name(&run_name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            SNAPSHOT_KEY.to_owned(),
            serde_json::to_string(&snapshot)?,
        )])),
        ..ConfigMap::default()
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(names::run_credential_secret_name(&run_name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(context.token_key.token_for(&uid).into_bytes()),
        )])),
        ..Secret::default()
    };
    // The Job mounts both, so both come first; they do not depend on each
    // other, so they are created at once.
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
    tokio::try_join!(
        create_once(&config_maps, &config_map),
        create_once(&secrets, &secret)
    )?;

    let mut job = build_job(run, workflow, &context.runner_defaults, &mounted);
    // A plan's longest run duration cuts the workflow's own deadline.
    if let Some(spec) = job.spec.as_mut() {
        spec.active_deadline_seconds =
            capped_deadline(spec.active_deadline_seconds, plan.map(|plan| &plan.limits));
    }
    crate::custom_nodes::sidecars::add_to_job(
        &mut job,
        crate::custom_nodes::sidecars::build_sidecars(workflow, &custom_types, &mounted),
    );
    if let Some(template) = job.spec.as_mut().map(|spec| &mut spec.template) {
        template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RUN_NAME_ANNOTATION.to_owned(), run_name.clone());
    }
    create_once(&Api::namespaced(context.client.clone(), namespace), &job).await?;

    let now = Utc::now();
    let mut status = run.status.clone().unwrap_or_default();
    status.phase = Some(RunPhase::Running);
    status.reason = None;
    status.message = None;
    status.queue_position = None;
    status.start_time = Some(now);
    status.workflow_revision = snapshot.workflow_revision.into();
    status.workflow_hash = Some(snapshot.workflow_hash.clone());
    status.job_name = job.metadata.name.clone();
    seed_nodes(&mut status, &workflow.spec);
    set_condition(
        &mut status.conditions,
        Condition::new(
            condition_type::STARTED,
            ConditionStatus::True,
            "JobCreated",
            format!(
                "job {} runs the workflow at revision {}",
                status.job_name.clone().unwrap_or_default(),
                snapshot.workflow_revision
            ),
            run.metadata.generation,
            now,
        ),
    );
    write_status(run, context, status).await?;
    tracing::info!(
        namespace,
        run = %run_name,
        job = job.metadata.name.as_deref().unwrap_or_default(),
        revision = snapshot.workflow_revision,
        "run started"
    );
    context
        .publish(
            run,
            false,
            "Started",
            "Start",
            format!("created job {}", job.metadata.name.unwrap_or_default()),
        )
        .await;
    if let (Some(plan), Some(source)) = (&resumed, &run.spec.resume_from) {
        context
            .publish(run, false, "Resumed", "Start", plan.summary(source))
            .await;
    }
    crate::mirror_map::offer_run(context, run);
    Ok(Action::requeue(Duration::from_secs(30)))
}

//! Reads what resuming a run needs ([`super::resume`] decides): the run it
//! resumes from, that run's frozen snapshot, and the outputs PostgreSQL
//! holds whole for its succeeded nodes. Writes nothing.

use super::controller::{SNAPSHOT_KEY, snapshot_name};
use super::resume::{ResumeSource, source_issue};
use crate::context::{Context, Error};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{NodePhase, WorkflowRun};

/// The run `run` resumes from, or why it cannot (a message for the user).
pub async fn observe_resume_source(
    run: &WorkflowRun,
    context: &Context,
    namespace: &str,
) -> Result<Result<ResumeSource, String>, Error> {
    let Some(mirror) = &context.mirror else {
        return Ok(Err("spec.resumeFrom needs the PostgreSQL mirror, which keeps node outputs: give the operator a database (the chart's database.secretName), or start a fresh run".to_owned()));
    };
    let name = run.spec.resume_from.clone().unwrap_or_default();
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let found = runs.get_opt(&name).await?;
    let source = match (source_issue(run, found.as_ref()), found) {
        (None, Some(source)) => source,
        (issue, _) => return Ok(Err(issue.unwrap_or_default())),
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
    let snapshot = match config_maps
        .get_opt(&snapshot_name(&name))
        .await?
        .and_then(|config_map| config_map.data?.remove(SNAPSHOT_KEY))
    {
        Some(text) => Some(serde_json::from_str::<RunSnapshot>(&text)?),
        None => None,
    };
    let succeeded: Vec<String> = source
        .status
        .iter()
        .flat_map(|status| &status.nodes)
        .filter(|node| node.phase == NodePhase::Succeeded)
        .map(|node| node.name.clone())
        .collect();
    let uid = source
        .metadata
        .uid
        .as_deref()
        .and_then(|uid| uuid::Uuid::parse_str(uid).ok())
        .ok_or_else(|| Error::MissingField(name.clone(), "metadata.uid"))?;
    let stored_outputs =
        crate::mirror::executions::stored_node_outputs(mirror.pool(), uid, &succeeded).await?;
    Ok(Ok(ResumeSource {
        run: source,
        snapshot,
        stored_outputs,
    }))
}

//! What the run controller's steps, the keeper and the run API share: the
//! names of what a run carries (finalizer, snapshot, annotations) and the
//! few writes of a run itself (status, finalizers). It sits below them all,
//! so imports point one way; it decides nothing.

use crate::context::{Context, Error};
use crate::names;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use sluice_crds::{WorkflowRun, WorkflowRunStatus};

/// Finalizer held while a run's final state is not yet in PostgreSQL.
pub const FINALIZER: &str = "sluice.dev/mirror";
/// Pod template annotation naming the run, so Pod events find their run
/// even when the run's name was shortened for the label.
pub const RUN_NAME_ANNOTATION: &str = "sluice.dev/run-name";
/// Key of the frozen snapshot in its ConfigMap.
pub const SNAPSHOT_KEY: &str = "snapshot.json";
/// Label selecting what the operator creates.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=sluice-operator";

/// Name of the ConfigMap holding a run's frozen snapshot.
pub fn snapshot_name(run_name: &str) -> String {
    names::fit_label(&format!("{run_name}-snapshot"))
}

/// Replaces the run's status (optimistically: a stale run is a conflict)
/// and returns the run as stored.
pub async fn write_status(
    run: &WorkflowRun,
    context: &Context,
    status: WorkflowRunStatus,
) -> Result<WorkflowRun, Error> {
    let runs: Api<WorkflowRun> =
        Api::namespaced(context.client.clone(), &run.namespace().unwrap_or_default());
    let mut updated = run.clone();
    let mut status = status;
    status.observed_generation = run.metadata.generation;
    updated.status = Some(status);
    Ok(runs
        .replace_status(&run.name_any(), &PostParams::default(), &updated)
        .await?)
}

/// Adds the mirror finalizer to `run`.
pub async fn add_finalizer(runs: &Api<WorkflowRun>, run: &WorkflowRun) -> Result<(), Error> {
    let mut finalizers = run.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
    runs.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Removes the mirror finalizer from `run` (as last read: a run changed
/// since is a conflict); a run already gone is fine.
pub async fn remove_finalizer(runs: &Api<WorkflowRun>, run: &WorkflowRun) -> Result<(), Error> {
    let finalizers: Vec<&String> = run
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version()}});
    match runs
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Creates `object`; an existing one (a previous attempt) is fine.
pub async fn create_once<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Whether the API answered 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_fit_a_label() {
        assert_eq!(snapshot_name("r1"), "r1-snapshot");
        assert!(snapshot_name(&"r".repeat(80)).len() <= 63);
    }
}

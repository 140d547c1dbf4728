//! A run's mirror record together with its parents, built from what the
//! run carries (pure): its frozen snapshot, revision, workflow UID and
//! namespace. The mirror writes the parents only where no row exists
//! ([`crate::mirror::workflows::ensure_workflow`]), so a run's history can
//! always be written, even into a replaced or empty database.

use crate::mirror::{ExecutionRecord, WorkflowRecord, WorkflowState};
use kube::ResourceExt;
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{Workflow, WorkflowRun, WorkflowStatus};
use uuid::Uuid;

/// The run's workflow row as the run knows it: the snapshot's spec (an
/// empty one without a snapshot), the run's revision, `archived` when the
/// Workflow is gone from the cluster.
pub fn build_parent(
    run: &WorkflowRun,
    workflow_uid: Uuid,
    workspace_uid: Uuid,
    snapshot: Option<&RunSnapshot>,
    workflow_gone: bool,
) -> Option<WorkflowRecord> {
    let spec = snapshot
        .map(|snapshot| snapshot.spec.clone())
        .unwrap_or_default();
    let mut workflow = Workflow::new(&run.spec.workflow_ref.name, spec);
    workflow.metadata.namespace = run.namespace();
    workflow.metadata.uid = Some(workflow_uid.to_string());
    let revision = snapshot
        .map(|snapshot| snapshot.workflow_revision)
        .or(run.status.as_ref().and_then(|s| s.workflow_revision))
        .unwrap_or(1);
    let status = WorkflowStatus {
        revision: Some(revision),
        ..WorkflowStatus::default()
    };
    let mut record = crate::mirror_map::workflow_record(&workflow, &status, workspace_uid)?;
    record.state = if workflow_gone {
        WorkflowState::Archived
    } else {
        WorkflowState::Active
    };
    Some(record)
}

/// The run's record, with its parents when the workspace is known; `None`
/// for a run that never ran a workflow (nothing to keep).
pub fn build_kept_record(
    run: &WorkflowRun,
    workspace_uid: Option<Uuid>,
    snapshot: Option<&RunSnapshot>,
    workflow_gone: bool,
) -> Option<ExecutionRecord> {
    let workflow_uid = crate::mirror_map::workflow_uid(run)?;
    let mut record = crate::mirror_map::execution_record(run, workflow_uid, None)?;
    record.parent = workspace_uid
        .and_then(|workspace| build_parent(run, workflow_uid, workspace, snapshot, workflow_gone))
        .map(Box::new);
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use sluice_crds::NodeSpec;

    const WORKFLOW: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";

    fn run() -> WorkflowRun {
        let mut run = WorkflowRun::fixture("r", "w");
        run.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
        run.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Workflow".into(),
            name: "w".into(),
            uid: WORKFLOW.into(),
            api_version: sluice_crds::API_VERSION.into(),
            ..OwnerReference::default()
        }]);
        run.status = Some(sluice_crds::WorkflowRunStatus {
            workflow_revision: Some(4),
            ..Default::default()
        });
        run
    }

    #[test]
    fn the_parent_comes_from_the_snapshot_with_the_runs_revision() {
        let snapshot = RunSnapshot {
            namespace: "default".into(),
            name: "r".into(),
            uid: "u".into(),
            workflow: "w".into(),
            workflow_revision: 3,
            workflow_hash: "h".into(),
            spec: Workflow::fixture("w")
                .with_node(NodeSpec::transform("a", "."))
                .spec,
            input: serde_json::Value::Null,
            connections: Default::default(),
            output_cap_bytes: 1,
            reused_outputs: Default::default(),
            node_types: Default::default(),
        };
        let workspace = Uuid::from_u128(7);
        let record = build_kept_record(&run(), Some(workspace), Some(&snapshot), true).unwrap();
        let parent = record.parent.expect("a parent");
        assert_eq!(parent.uid, Uuid::parse_str(WORKFLOW).unwrap());
        assert_eq!(
            (
                parent.workspace_uid,
                parent.namespace.as_str(),
                parent.name.as_str()
            ),
            (workspace, "default", "w")
        );
        assert_eq!(
            (parent.revision, parent.state),
            (3, WorkflowState::Archived)
        );
        assert_eq!(parent.nodes[0]["name"], "a");
    }

    #[test]
    fn without_a_snapshot_the_parent_has_the_runs_revision_and_no_nodes() {
        let record = build_kept_record(&run(), Some(Uuid::from_u128(7)), None, false).unwrap();
        let parent = record.parent.expect("a parent");
        assert_eq!((parent.revision, parent.state), (4, WorkflowState::Active));
        assert_eq!(parent.nodes, serde_json::json!([]));
        assert!(
            build_kept_record(&run(), None, None, false)
                .unwrap()
                .parent
                .is_none()
        );
        let mut never_ran = run();
        never_ran.metadata.owner_references = None;
        assert!(build_kept_record(&never_ran, None, None, false).is_none());
    }
}

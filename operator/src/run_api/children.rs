//! Child runs of `workflow` nodes, through the run API: a runner has no
//! RBAC on WorkflowRuns, so it asks here, authorised by its own run's token.
//!
//! - `PUT  …/runs/{ns}/{parent}/children/{child}` with a
//!   [`ChildRunRequest`]: creates the WorkflowRun `child` in the parent's
//!   namespace (201), or answers 200 with it when it already exists as a
//!   child of this parent — the runner derives `child` deterministically,
//!   so a resent request finds the run it started. The child carries
//!   `spec.trigger = {type: Workflow, source: <parent>}`, the label
//!   [`PARENT_RUN_LABEL`] and an owner reference to the parent (deleting
//!   the parent deletes its children). The Workflow must exist (404).
//! - `GET    …/children/{child}`: the child's phase, capped output
//!   (`status.output`, at most `STATUS_OUTPUT_CAP` bytes) and message.
//! - `DELETE …/children/{child}`: sets the child's `spec.cancel`.
//!
//! A run only sees its own children: a child is the parent's when its owner
//! references name the parent's UID (the label alone can be set by anyone
//! who may create runs); others answer 403. Nesting is bounded by
//! [`MAX_DEPTH`] so a workflow that starts itself fails instead of
//! creating runs forever.
//!
//! The pure parts (building the child, ownership, the view) are plain
//! functions; the handlers only read and write through the kube client.

use super::server::{Refusal, authorised_run};
use crate::context::Context;
use crate::names::{MAX_LABEL_LEN, fit_label};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sluice_crds::common::LocalObjectReference;
use sluice_crds::run_api::{ChildRun, ChildRunRequest};
use sluice_crds::workflow_run::{RunTrigger, TriggerType};
use sluice_crds::{RunPhase, Workflow, WorkflowRun, WorkflowRunSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label on a child run naming its parent run (fitted to a label value).
pub const PARENT_RUN_LABEL: &str = "sluice.dev/parent-run";
/// Annotation on a child run: how many parents it has (1 for a child of a
/// top-level run).
pub const DEPTH_ANNOTATION: &str = "sluice.dev/nesting-depth";
/// Deepest allowed chain of child runs.
pub const MAX_DEPTH: u32 = 10;

type Names = Path<(String, String, String)>;

/// `PUT`: starts the child run, or finds it.
pub(super) async fn start(
    State(context): State<Arc<Context>>,
    Path((namespace, parent_name, child_name)): Names,
    headers: HeaderMap,
    Json(request): Json<ChildRunRequest>,
) -> Result<(StatusCode, Json<ChildRun>), Refusal> {
    let parent = authorised_run(&context, &headers, &namespace, &parent_name).await?;
    if parent
        .status
        .as_ref()
        .and_then(|status| status.phase)
        .is_some_and(RunPhase::is_terminal)
    {
        return Err(Refusal(
            StatusCode::CONFLICT,
            format!("run {namespace}/{parent_name} has ended: it cannot start child runs"),
        ));
    }
    let child = build_child_run(&parent, &child_name, &request)
        .map_err(|message| Refusal(StatusCode::UNPROCESSABLE_ENTITY, message))?;
    let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
    if workflows.get_opt(&request.workflow).await?.is_none() {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!(
                "workflow {namespace}/{} not found: a workflow node's workflowRef must name a \
                 Workflow in namespace {namespace}",
                request.workflow
            ),
        ));
    }
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    match runs.create(&PostParams::default(), &child).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(child_view(&created)))),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = owned_child(&runs, &parent, &child_name).await?;
            Ok((StatusCode::OK, Json(child_view(&existing))))
        }
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 422) => Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "failed to create child run {namespace}/{child_name}: {}",
                status.message
            ),
        )),
        Err(error) => Err(error.into()),
    }
}

/// `GET`: the child as its parent sees it.
pub(super) async fn read(
    State(context): State<Arc<Context>>,
    Path((namespace, parent_name, child_name)): Names,
    headers: HeaderMap,
) -> Result<Json<ChildRun>, Refusal> {
    let parent = authorised_run(&context, &headers, &namespace, &parent_name).await?;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    let child = owned_child(&runs, &parent, &child_name).await?;
    Ok(Json(child_view(&child)))
}

/// `DELETE`: cancels the child (a no-op once it has ended).
pub(super) async fn cancel(
    State(context): State<Arc<Context>>,
    Path((namespace, parent_name, child_name)): Names,
    headers: HeaderMap,
) -> Result<Json<ChildRun>, Refusal> {
    let parent = authorised_run(&context, &headers, &namespace, &parent_name).await?;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    let child = owned_child(&runs, &parent, &child_name).await?;
    if child_view(&child).phase.is_terminal() || child.spec.cancel == Some(true) {
        return Ok(Json(child_view(&child)));
    }
    let patch = serde_json::json!({"spec": {"cancel": true}});
    let cancelled = runs
        .patch(&child_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(Json(child_view(&cancelled)))
}

/// The run `child_name`, if it is a child of `parent` (404 or 403 otherwise).
async fn owned_child(
    runs: &Api<WorkflowRun>,
    parent: &WorkflowRun,
    child_name: &str,
) -> Result<WorkflowRun, Refusal> {
    let namespace = parent.namespace().unwrap_or_default();
    let child = runs.get_opt(child_name).await?.ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            format!("run {namespace}/{child_name} not found"),
        )
    })?;
    if !belongs_to(&child, parent) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!(
                "run {namespace}/{child_name} is not a child run of {namespace}/{}",
                parent.name_any()
            ),
        ));
    }
    Ok(child)
}

/// The WorkflowRun a `workflow` node of `parent` asks for. Errors say what
/// is wrong with the request.
pub fn build_child_run(
    parent: &WorkflowRun,
    child_name: &str,
    request: &ChildRunRequest,
) -> Result<WorkflowRun, String> {
    if !is_label(child_name) {
        return Err(format!(
            "child run name {child_name:?} is not a DNS-1123 label of at most {MAX_LABEL_LEN} characters"
        ));
    }
    if request.workflow.is_empty() {
        return Err("workflow is required: name the Workflow to run".to_owned());
    }
    let depth = depth(parent) + 1;
    if depth > MAX_DEPTH {
        return Err(format!(
            "child runs nest deeper than {MAX_DEPTH} levels: check for workflows that start each other in a loop"
        ));
    }
    let parent_name = parent.name_any();
    let uid = parent
        .uid()
        .ok_or_else(|| format!("run {parent_name} has no uid yet"))?;
    Ok(WorkflowRun {
        metadata: ObjectMeta {
            name: Some(child_name.to_owned()),
            namespace: parent.namespace(),
            labels: Some(BTreeMap::from([(
                PARENT_RUN_LABEL.to_owned(),
                fit_label(&parent_name),
            )])),
            annotations: Some(BTreeMap::from([(
                DEPTH_ANNOTATION.to_owned(),
                depth.to_string(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: sluice_crds::API_VERSION.to_owned(),
                kind: "WorkflowRun".to_owned(),
                name: parent_name.clone(),
                uid,
                controller: None,
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: WorkflowRunSpec {
            workflow_ref: LocalObjectReference {
                name: request.workflow.clone(),
            },
            input: request.input.clone(),
            trigger: Some(RunTrigger {
                type_: TriggerType::Workflow,
                source: Some(parent_name),
                ..RunTrigger::default()
            }),
            ..WorkflowRunSpec::default()
        },
        status: None,
    })
}

/// Whether `child` was started by `parent`: an owner reference with the
/// parent's UID (a recreated run of the same name is another parent).
pub fn belongs_to(child: &WorkflowRun, parent: &WorkflowRun) -> bool {
    let Some(uid) = parent.uid() else {
        return false;
    };
    child
        .owner_references()
        .iter()
        .any(|owner| owner.kind == "WorkflowRun" && owner.uid == uid)
}

/// What the parent's runner learns about a child.
pub fn child_view(run: &WorkflowRun) -> ChildRun {
    let status = run.status.clone().unwrap_or_default();
    ChildRun {
        name: run.name_any(),
        phase: status.phase.unwrap_or_default(),
        output: status.output,
        output_truncated: status.output_truncated == Some(true),
        reason: status.reason,
        message: status.message,
        failed_node: status.first_failed_node,
    }
}

fn depth(run: &WorkflowRun) -> u32 {
    run.annotations()
        .get(DEPTH_ANNOTATION)
        .and_then(|depth| depth.parse().ok())
        .unwrap_or(0)
}

fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::WorkflowRunStatus;

    fn parent(name: &str, uid: &str) -> WorkflowRun {
        let mut run = WorkflowRun::new(
            name,
            WorkflowRunSpec {
                workflow_ref: LocalObjectReference {
                    name: "parent-flow".into(),
                },
                ..WorkflowRunSpec::default()
            },
        );
        run.metadata.namespace = Some("team-a".into());
        run.metadata.uid = Some(uid.into());
        run
    }

    fn request() -> ChildRunRequest {
        ChildRunRequest {
            workflow: "child-flow".into(),
            input: Some(serde_json::json!({"n": 1})),
        }
    }

    #[test]
    fn a_child_names_its_parent_in_trigger_label_and_owner() {
        let child = build_child_run(&parent("p-1", "uid-1"), "p-1-call", &request()).unwrap();
        assert_eq!(child.metadata.name.as_deref(), Some("p-1-call"));
        assert_eq!(child.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(child.labels()[PARENT_RUN_LABEL], "p-1");
        assert_eq!(child.annotations()[DEPTH_ANNOTATION], "1");
        let owner = &child.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("WorkflowRun", "p-1", "uid-1", None)
        );
        assert_eq!(child.spec.workflow_ref.name, "child-flow");
        assert_eq!(child.spec.input, Some(serde_json::json!({"n": 1})));
        let trigger = child.spec.trigger.unwrap();
        assert_eq!(
            (trigger.type_, trigger.source.as_deref()),
            (TriggerType::Workflow, Some("p-1"))
        );
    }

    #[test]
    fn long_parent_names_fit_the_label() {
        let name = "p".repeat(200);
        let child = build_child_run(&parent(&name, "uid-1"), "c", &request()).unwrap();
        assert!(child.labels()[PARENT_RUN_LABEL].len() <= MAX_LABEL_LEN);
        assert_eq!(child.spec.trigger.unwrap().source, Some(name));
    }

    #[test]
    fn bad_requests_are_explained() {
        let parent = parent("p-1", "uid-1");
        let error = build_child_run(&parent, "Not_A_Label", &request()).unwrap_err();
        assert!(error.contains("is not a DNS-1123 label"), "{error}");
        let error = build_child_run(&parent, &"c".repeat(64), &request()).unwrap_err();
        assert!(error.contains("at most 63"), "{error}");
        let empty = ChildRunRequest::default();
        assert!(
            build_child_run(&parent, "c", &empty)
                .unwrap_err()
                .contains("workflow is required")
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = parent("p-1", "uid-1");
        deep.annotations_mut()
            .insert(DEPTH_ANNOTATION.into(), MAX_DEPTH.to_string());
        let error = build_child_run(&deep, "c", &request()).unwrap_err();
        assert!(error.contains("nest deeper than 10 levels"), "{error}");
        deep.annotations_mut()
            .insert(DEPTH_ANNOTATION.into(), (MAX_DEPTH - 1).to_string());
        let child = build_child_run(&deep, "c", &request()).unwrap();
        assert_eq!(child.annotations()[DEPTH_ANNOTATION], MAX_DEPTH.to_string());
    }

    #[test]
    fn only_the_parent_with_the_same_uid_owns_a_child() {
        let parent_a = parent("a", "uid-a");
        let child = build_child_run(&parent_a, "a-call", &request()).unwrap();
        assert!(belongs_to(&child, &parent_a));
        assert!(!belongs_to(&child, &parent("b", "uid-b")));
        assert!(
            !belongs_to(&child, &parent("a", "uid-a2")),
            "a recreated run of the same name is another parent"
        );
        let mut labelled_only = child.clone();
        labelled_only.metadata.owner_references = None;
        assert!(!belongs_to(&labelled_only, &parent_a));
    }

    #[test]
    fn the_view_carries_phase_capped_output_and_message() {
        let mut run = build_child_run(&parent("p", "u"), "p-c", &request()).unwrap();
        assert_eq!(child_view(&run).phase, RunPhase::Pending);
        run.status = Some(WorkflowRunStatus {
            phase: Some(RunPhase::Failed),
            reason: Some("NodeFailed".into()),
            message: Some("node boom failed".into()),
            first_failed_node: Some("boom".into()),
            output: Some(serde_json::json!({"partial": true})),
            output_truncated: Some(true),
            ..WorkflowRunStatus::default()
        });
        assert_eq!(
            child_view(&run),
            ChildRun {
                name: "p-c".into(),
                phase: RunPhase::Failed,
                output: Some(serde_json::json!({"partial": true})),
                output_truncated: true,
                reason: Some("NodeFailed".into()),
                message: Some("node boom failed".into()),
                failed_node: Some("boom".into()),
            }
        );
    }
}

//! The audit trail of Sluice objects, and deletions, into the mirror.
//!
//! Every observed create, spec change and delete of a Workflow,
//! WorkflowRun, Schedule or Connection becomes one `audit_logs` row with
//! the object's metadata and spec, and the field manager that wrote it
//! (`kubectl-client-side-apply`, `argocd-controller`, …). A delete also
//! tells the mirror the object is gone: a Workflow is archived, a
//! Schedule's or Connection's row removed, a run's queue entry closed.
//! Namespaces are followed by [`crate::quota`] ([`crate::workspaces`]): a
//! deleted one's workspace becomes inactive; RoleBindings are followed here
//! ([`crate::membership`]): workspace members and their roles.
//!
//! A create names its user (`audit_logs.user_id`): the creator the
//! mutating webhook recorded ([`creator`]). An update or delete names no
//! one: Kubernetes does not tell a watcher who changed an object, only
//! which field manager wrote it last (kept in the entry's metadata).
//!
//! Status writes are not audited: they are the operator's own, and a run's
//! progress lives in `workflow_executions`. Each entry is keyed by the
//! object's generation, so relists and restarts replay harmlessly. The
//! operator keeps one number per object (the generation last audited) and
//! no copies: the mirror takes an update's old state from the object's
//! previous entry. Deletes that happen while no operator watches are not
//! observed, and not audited; the mirror's resync on start marks their
//! rows deleted ([`crate::mirror::sweep`]).
//!
//! [`plan_audit`] is pure; [`run`] watches and hands its records to the
//! mirror (waiting when the mirror's queue is full). It runs on the leader,
//! and only when the mirror is on.

use crate::context::Context;
use crate::mirror::{AuditAction, AuditRecord, DeletedRecord, Mirror, MirrorEvent, ResourceKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_crds::{Connection, Schedule, Workflow, WorkflowRun};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use uuid::Uuid;

/// The generation last audited, per object uid.
pub type Generations = HashMap<Uuid, i64>;

/// The mirror records one watch event of an object of `kind` calls for:
/// an audit entry when the object is new, its spec changed or it is gone
/// (plus a deletion record then), nothing for a status write.
pub fn plan_audit<K>(
    kind: ResourceKind,
    event: &watcher::Event<K>,
    audited: &mut Generations,
    workspace_uid: Option<Uuid>,
    now: DateTime<Utc>,
) -> Vec<MirrorEvent>
where
    K: Resource + Serialize,
{
    let (object, deleted) = match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) => (object, false),
        watcher::Event::Delete(object) => (object, true),
        watcher::Event::Init | watcher::Event::InitDone => return vec![],
    };
    let Some(uid) = object.uid().and_then(|uid| Uuid::parse_str(&uid).ok()) else {
        return vec![];
    };
    let generation = object.meta().generation.unwrap_or(1);
    let mut record = AuditRecord {
        resource_uid: uid,
        version: generation.to_string(),
        kind,
        name: object.name_any(),
        namespace: object.namespace().unwrap_or_default(),
        workspace_uid,
        action: AuditAction::Created,
        old_values: None,
        new_values: None,
        metadata: Some(json!({"manager": last_manager(object)})),
        user: None,
        observed_at: now,
    };
    if deleted {
        audited.remove(&uid);
        record.action = AuditAction::Deleted;
        record.version = object.resource_version().unwrap_or_default();
        record.old_values = Some(audited_state(object));
        return vec![
            MirrorEvent::Audit(record),
            MirrorEvent::Deleted(DeletedRecord { kind, uid }),
        ];
    }
    if audited.insert(uid, generation) == Some(generation) {
        return vec![];
    }
    if generation > 1 {
        record.action = AuditAction::Updated;
    } else {
        record.user = creator(object);
    }
    record.new_values = Some(audited_state(object));
    vec![MirrorEvent::Audit(record)]
}

/// Who created the object: its `sluice.dev/created-by` annotation, which
/// the mutating webhook stamps on Workflows and WorkflowRuns and nobody
/// can forge. Who changed or deleted an object is not in the object, so
/// only creates name their user.
pub fn creator<K: Resource>(object: &K) -> Option<String> {
    object
        .annotations()
        .get(crate::admission::creator::CREATED_BY)
        .filter(|username| !username.is_empty())
        .cloned()
}

/// What an entry stores of an object: its spec, and the metadata a person
/// changes (the last-applied copy and managed fields left out).
fn audited_state<K: Resource + Serialize>(object: &K) -> Value {
    let mut annotations = object.annotations().clone();
    annotations.remove(crate::watch::LAST_APPLIED);
    let spec = serde_json::to_value(object)
        .ok()
        .and_then(|mut value| value.get_mut("spec").map(Value::take))
        .unwrap_or(Value::Null);
    json!({
        "metadata": {
            "name": object.name_any(),
            "namespace": object.namespace(),
            "labels": object.labels(),
            "annotations": annotations,
        },
        "spec": spec,
    })
}

/// The field manager of the newest write to the object itself (not to its
/// status): who changed it.
fn last_manager<K: Resource>(object: &K) -> Option<String> {
    object
        .managed_fields()
        .iter()
        .filter(|entry| entry.subresource.as_deref().unwrap_or_default().is_empty())
        .max_by_key(|entry| entry.time.as_ref().map(|time| time.0))
        .and_then(|entry| entry.manager.clone())
}

/// Follows every Sluice kind until `shutdown`; a no-op without a mirror.
pub async fn run(context: Arc<Context>, shutdown: impl std::future::Future<Output = ()>) {
    let Some(mirror) = &context.mirror else {
        return;
    };
    let follow_all = futures::future::join(
        futures::future::join4(
            follow::<Workflow>(&context, mirror, ResourceKind::Workflow),
            follow::<WorkflowRun>(&context, mirror, ResourceKind::WorkflowRun),
            follow::<Schedule>(&context, mirror, ResourceKind::Schedule),
            follow::<Connection>(&context, mirror, ResourceKind::Connection),
        ),
        futures::future::join(
            crate::membership::follow(&context, mirror),
            crate::custom_nodes::mirror::follow(&context, mirror),
        ),
    );
    tokio::select! {
        _ = follow_all => {}
        _ = shutdown => {}
    }
}

async fn follow<K>(context: &Context, mirror: &Mirror, kind: ResourceKind)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + 'static,
{
    let mut audited = Generations::new();
    let mut events = context
        .watch::<K>(watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, kind = kind.as_str(), "audit watch failed; retrying");
                continue;
            }
        };
        let namespace = match &event {
            watcher::Event::Apply(object)
            | watcher::Event::InitApply(object)
            | watcher::Event::Delete(object) => object.namespace(),
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        let workspace_uid = match namespace {
            Some(namespace) => crate::mirror_map::namespace_uid(context, &namespace).await,
            None => None,
        };
        for record in plan_audit(kind, &event, &mut audited, workspace_uid, Utc::now()) {
            if let Err(error) = mirror.send(record).await {
                tracing::warn!(%error, "the mirror refused an audit entry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use sluice_crds::NodeSpec;

    const UID: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";

    fn workflow(generation: i64) -> Workflow {
        let mut workflow = Workflow::fixture("w").with_node(NodeSpec::transform("a", "."));
        workflow.metadata.uid = Some(UID.to_owned());
        workflow.metadata.generation = Some(generation);
        workflow.metadata.resource_version = Some(format!("{}", generation * 10));
        workflow
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time")
    }

    fn audit(events: &[MirrorEvent]) -> &AuditRecord {
        match events {
            [MirrorEvent::Audit(record), ..] => record,
            other => panic!("expected an audit entry first, got {other:?}"),
        }
    }

    #[test]
    fn a_new_object_is_created_with_its_spec_and_workspace() {
        let mut audited = Generations::new();
        let workspace = Some(Uuid::from_u128(7));
        let events = plan_audit(
            ResourceKind::Workflow,
            &watcher::Event::Apply(workflow(1)),
            &mut audited,
            workspace,
            now(),
        );
        assert_eq!(events.len(), 1);
        let record = audit(&events);
        assert_eq!(record.action, AuditAction::Created);
        assert_eq!((record.version.as_str(), record.name.as_str()), ("1", "w"));
        assert_eq!(record.workspace_uid, workspace);
        let state = record.new_values.as_ref().expect("the new state");
        assert_eq!(state["spec"]["nodes"][0]["name"], "a");
        assert_eq!(state["metadata"]["name"], "w");
        assert_eq!(record.old_values, None);
    }

    #[test]
    fn a_create_names_its_creator_and_an_update_names_no_one() {
        let mut audited = Generations::new();
        let stamped = |generation| {
            let mut object = workflow(generation);
            object.annotations_mut().insert(
                crate::admission::creator::CREATED_BY.to_owned(),
                "alice@example.com".to_owned(),
            );
            object
        };
        let mut plan = |object| {
            plan_audit(
                ResourceKind::Workflow,
                &watcher::Event::Apply(object),
                &mut audited,
                None,
                now(),
            )
        };
        let created = plan(stamped(1));
        assert_eq!(audit(&created).user.as_deref(), Some("alice@example.com"));
        let updated = plan(stamped(2));
        assert_eq!(audit(&updated).user, None);
        let unstamped = plan_audit(
            ResourceKind::Workflow,
            &watcher::Event::Apply(workflow(1)),
            &mut Generations::new(),
            None,
            now(),
        );
        assert_eq!(audit(&unstamped).user, None);
    }

    #[test]
    fn status_writes_and_replays_make_no_entry_but_spec_changes_do() {
        let mut audited = Generations::new();
        let apply = |object, audited: &mut Generations| {
            plan_audit(
                ResourceKind::Workflow,
                &watcher::Event::Apply(object),
                audited,
                None,
                now(),
            )
        };
        assert_eq!(apply(workflow(1), &mut audited).len(), 1);
        assert!(apply(workflow(1), &mut audited).is_empty(), "status write");
        let events = apply(workflow(2), &mut audited);
        let record = audit(&events);
        assert_eq!(record.action, AuditAction::Updated);
        assert_eq!(record.version, "2");
        assert_eq!(
            record.old_values, None,
            "the mirror fills it from the previous entry"
        );
    }

    #[test]
    fn after_a_restart_an_object_is_audited_again_under_the_same_key() {
        // A fresh process has audited nothing: the entry is made again, and
        // its key (uid, generation, action) makes the mirror drop it.
        let first = plan_audit(
            ResourceKind::Workflow,
            &watcher::Event::InitApply(workflow(3)),
            &mut Generations::new(),
            None,
            now(),
        );
        let again = plan_audit(
            ResourceKind::Workflow,
            &watcher::Event::InitApply(workflow(3)),
            &mut Generations::new(),
            None,
            now(),
        );
        assert_eq!(audit(&first).version, audit(&again).version);
        assert_eq!(audit(&first).action, AuditAction::Updated);
    }

    #[test]
    fn a_delete_keeps_the_last_state_and_tells_the_mirror() {
        let mut audited = Generations::new();
        plan_audit(
            ResourceKind::Schedule,
            &watcher::Event::Apply(workflow(2)),
            &mut audited,
            None,
            now(),
        );
        let events = plan_audit(
            ResourceKind::Schedule,
            &watcher::Event::Delete(workflow(2)),
            &mut audited,
            None,
            now(),
        );
        let record = audit(&events);
        assert_eq!(record.action, AuditAction::Deleted);
        assert_eq!(record.version, "20", "the last resourceVersion");
        assert!(record.old_values.is_some() && record.new_values.is_none());
        assert_eq!(
            events[1],
            MirrorEvent::Deleted(DeletedRecord {
                kind: ResourceKind::Schedule,
                uid: Uuid::parse_str(UID).unwrap(),
            })
        );
        assert!(
            audited.is_empty(),
            "nothing is remembered of a deleted object"
        );
    }

    #[test]
    fn the_state_leaves_out_the_last_applied_copy_and_names_the_latest_spec_writer() {
        let mut object = workflow(1);
        object
            .annotations_mut()
            .insert(crate::watch::LAST_APPLIED.into(), "{}".into());
        object
            .annotations_mut()
            .insert("team".into(), "data".into());
        let entry = |manager: &str, second: i64, subresource: Option<&str>| ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap(),
            )),
            subresource: subresource.map(str::to_owned),
            ..ManagedFieldsEntry::default()
        };
        object.metadata.managed_fields = Some(vec![
            entry("kubectl-client-side-apply", 1, None),
            entry("argocd-controller", 2, None),
            entry("sluice-operator", 3, Some("status")),
        ]);
        let events = plan_audit(
            ResourceKind::Workflow,
            &watcher::Event::Apply(object),
            &mut Generations::new(),
            None,
            now(),
        );
        let record = audit(&events);
        assert_eq!(
            record.metadata,
            Some(json!({"manager": "argocd-controller"}))
        );
        let annotations = &record.new_values.as_ref().unwrap()["metadata"]["annotations"];
        assert_eq!(annotations, &json!({"team": "data"}));
    }

    #[test]
    fn watch_bookkeeping_events_make_no_entry() {
        let mut audited = Generations::new();
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            assert!(
                plan_audit::<Workflow>(ResourceKind::Workflow, &event, &mut audited, None, now())
                    .is_empty()
            );
        }
    }
}

//! Namespaces into the mirror: a namespace that is being deleted, or is
//! gone, makes its workspace inactive (its history stays).
//!
//! Only the deletion is followed: a workspace row is made when the first
//! object of its namespace is mirrored, never for namespaces without
//! Sluice objects. A namespace deleted while no operator watched is found
//! by the mirror's resync ([`crate::mirror::sweep`]). [`plan_namespace`]
//! is pure; [`follow`] watches (metadata only, each namespace in scope by
//! name, or every one) and runs on the leader with the audit trail.

use crate::context::Context;
use crate::mirror::{DeletedRecord, Mirror, MirrorEvent, ResourceKind};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use uuid::Uuid;

/// The mirror record a namespace's watch event calls for: its workspace's
/// deactivation once it is being deleted or gone, else nothing.
pub fn plan_namespace(event: &watcher::Event<ObjectMeta>) -> Option<MirrorEvent> {
    let (metadata, deleted) = match event {
        watcher::Event::Apply(metadata) | watcher::Event::InitApply(metadata) => {
            (metadata, metadata.deletion_timestamp.is_some())
        }
        watcher::Event::Delete(metadata) => (metadata, true),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let uid = Uuid::parse_str(metadata.uid.as_deref()?).ok()?;
    deleted.then_some(MirrorEvent::Deleted(DeletedRecord {
        kind: ResourceKind::Workspace,
        uid,
    }))
}

/// Follows the namespaces in scope until the stream ends (never, in
/// practice: the watch retries with backoff).
pub async fn follow(context: &Context, mirror: &Mirror) {
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(context.client.clone());
    // A namespace-scoped operator may read its own namespaces only, each
    // by name; only deletions matter here, so the watches need no merging.
    let mut events = match context.scope.namespaces() {
        None => watcher(namespaces, watcher::Config::default())
            .default_backoff()
            .boxed(),
        Some(names) => futures::stream::select_all(names.iter().map(|name| {
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            watcher(namespaces.clone(), config)
                .default_backoff()
                .boxed()
        }))
        .boxed(),
    };
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => metadata_of(event),
            Err(error) => {
                tracing::warn!(%error, "namespace watch failed; retrying");
                continue;
            }
        };
        let Some(record) = plan_namespace(&event) else {
            continue;
        };
        if let watcher::Event::Apply(metadata)
        | watcher::Event::InitApply(metadata)
        | watcher::Event::Delete(metadata) = &event
            && let Some(name) = &metadata.name
        {
            context.namespace_uids.forget(name);
        }
        if let Err(error) = mirror.send(record).await {
            tracing::warn!(%error, "the mirror refused a workspace's deactivation");
        }
    }
}

fn metadata_of(event: watcher::Event<PartialObjectMeta<Namespace>>) -> watcher::Event<ObjectMeta> {
    match event {
        watcher::Event::Apply(namespace) => watcher::Event::Apply(namespace.metadata),
        watcher::Event::InitApply(namespace) => watcher::Event::InitApply(namespace.metadata),
        watcher::Event::Delete(namespace) => watcher::Event::Delete(namespace.metadata),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const UID: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";

    fn namespace(terminating: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some("growth".to_owned()),
            uid: Some(UID.to_owned()),
            deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            ..ObjectMeta::default()
        }
    }

    fn deactivation() -> Option<MirrorEvent> {
        Some(MirrorEvent::Deleted(DeletedRecord {
            kind: ResourceKind::Workspace,
            uid: Uuid::parse_str(UID).unwrap(),
        }))
    }

    #[test]
    fn a_terminating_or_deleted_namespace_deactivates_its_workspace() {
        assert_eq!(
            plan_namespace(&watcher::Event::Apply(namespace(true))),
            deactivation()
        );
        assert_eq!(
            plan_namespace(&watcher::Event::InitApply(namespace(true))),
            deactivation(),
            "seen terminating when the operator starts"
        );
        assert_eq!(
            plan_namespace(&watcher::Event::Delete(namespace(false))),
            deactivation()
        );
    }

    #[test]
    fn a_live_namespace_or_bookkeeping_makes_no_record() {
        assert_eq!(
            plan_namespace(&watcher::Event::Apply(namespace(false))),
            None
        );
        assert_eq!(plan_namespace(&watcher::Event::InitDone), None);
    }
}

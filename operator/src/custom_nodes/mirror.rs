//! Custom node types into the mirror: every NodeType (and, for an operator
//! watching every namespace, every ClusterNodeType) seen by a watch is
//! offered as a [`NodeTypeRecord`], and each deletion as
//! [`MirrorEvent::NodeTypeDeleted`]. A watch's first list re-offers them
//! all (upserts are idempotent). Maps and sends; the rows are
//! [`crate::mirror::node_types`]'s.

use crate::context::Context;
use crate::mirror::{Mirror, MirrorEvent, NodeTypeRecord};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use sluice_crds::{ClusterNodeType, CustomNodeType, NodeTypeSpec};
use uuid::Uuid;

/// The record of a type with `uid`, `name` and `spec`, in `workspace` (a
/// NodeType) or none (a ClusterNodeType). `None` without a valid uid.
pub fn build_record<K: Resource>(
    object: &K,
    workspace: Option<(Uuid, String)>,
    spec: &NodeTypeSpec,
) -> Option<NodeTypeRecord> {
    let uid = object.meta().uid.as_deref()?.parse().ok()?;
    Some(NodeTypeRecord {
        uid,
        name: object.meta().name.clone().unwrap_or_default(),
        workspace,
        spec: spec.clone(),
        created_at: object
            .meta()
            .creation_timestamp
            .as_ref()
            .and_then(crate::mirror_map::jiff_to_chrono),
    })
}

/// Follows NodeTypes and ClusterNodeTypes into the mirror until the
/// streams end.
pub async fn follow(context: &Context, mirror: &Mirror) {
    let namespaced = context
        .watch::<CustomNodeType>(watcher::Config::default())
        .default_backoff()
        .boxed();
    let node_types = forward(
        context,
        mirror,
        namespaced,
        |context, node_type| async move {
            let namespace = node_type.namespace().unwrap_or_default();
            let workspace_uid = crate::mirror_map::namespace_uid(context, &namespace).await?;
            build_record(
                &node_type,
                Some((workspace_uid, namespace)),
                &node_type.spec,
            )
        },
    );
    let cluster = async {
        if context.scope.namespaces().is_some() {
            return;
        }
        let stream = watcher(
            Api::<ClusterNodeType>::all(context.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .boxed();
        forward(context, mirror, stream, |_, node_type| async move {
            build_record(&node_type, None, &node_type.spec.definition)
        })
        .await
    };
    futures::future::join(node_types, cluster).await;
}

async fn forward<'a, K, F, Fut>(
    context: &'a Context,
    mirror: &Mirror,
    mut events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
    record: F,
) where
    K: Resource + Clone,
    F: Fn(&'a Context, K) -> Fut,
    Fut: std::future::Future<Output = Option<NodeTypeRecord>>,
{
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "custom node type watch failed; retrying");
                continue;
            }
        };
        let mirrored = match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                record(context, object).await.map(MirrorEvent::NodeType)
            }
            watcher::Event::Delete(object) => object
                .meta()
                .uid
                .as_deref()
                .and_then(|uid| uid.parse().ok())
                .map(MirrorEvent::NodeTypeDeleted),
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        if let Some(mirrored) = mirrored
            && let Err(error) = mirror.send(mirrored).await
        {
            tracing::warn!(%error, "the mirror refused a custom node type");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_type_becomes_a_record_in_its_workspace() {
        let spec = NodeTypeSpec {
            version: "1.0.0".into(),
            image: "example/greeter:1".into(),
            ..NodeTypeSpec::default()
        };
        let mut node_type = CustomNodeType::new("greeter", spec.clone());
        assert_eq!(build_record(&node_type, None, &spec), None, "no uid yet");
        node_type.metadata.uid = Some("6f9619ff-8b86-d011-b42d-00cf4fc964ff".into());
        let workspace = Uuid::from_u128(7);
        let record = build_record(&node_type, Some((workspace, "growth".into())), &spec).unwrap();
        assert_eq!(record.name, "greeter");
        assert_eq!(record.workspace, Some((workspace, "growth".to_owned())));
        assert_eq!(record.spec, spec);
    }
}

//! Namespaces: a namespace that is being deleted, or is gone, makes its
//! workspace inactive (its history stays); a namespace's plan (its
//! `sluice.dev/plan` label, or the default plan) is its subscription.
//!
//! A workspace row is made when the first object of its namespace is
//! mirrored, or when it takes a plan; never for other namespaces. A
//! namespace deleted while no operator watched is found by the mirror's
//! resync ([`crate::mirror::sweep`]). [`plan_namespace`] is pure; [`follow`]
//! watches (metadata only, each namespace in scope by name, or every one),
//! keeps [`crate::quota::Quotas`]' labels and runs on the leader, with or
//! without a mirror.

use crate::context::Context;
use crate::mirror::{DeletedRecord, Mirror, MirrorEvent, ResourceKind, SubscriptionRecord};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use uuid::Uuid;

/// The mirror records a namespace's watch event calls for: its workspace's
/// deactivation once it is being deleted or gone, else its subscription
/// (to the plan of its label, or `default_plan`, or none), seen at `now`.
pub fn plan_namespace(
    event: &watcher::Event<ObjectMeta>,
    default_plan: Option<&str>,
    now: DateTime<Utc>,
) -> Option<MirrorEvent> {
    let (metadata, deleted) = match event {
        watcher::Event::Apply(metadata) | watcher::Event::InitApply(metadata) => {
            (metadata, metadata.deletion_timestamp.is_some())
        }
        watcher::Event::Delete(metadata) => (metadata, true),
        watcher::Event::Init | watcher::Event::InitDone => return None,
    };
    let uid = Uuid::parse_str(metadata.uid.as_deref()?).ok()?;
    if deleted {
        return Some(MirrorEvent::Deleted(DeletedRecord {
            kind: ResourceKind::Workspace,
            uid,
        }));
    }
    let label = crate::quota::plan_label(metadata.labels.as_ref());
    Some(MirrorEvent::Subscription(SubscriptionRecord {
        workspace_uid: uid,
        namespace: metadata.name.clone()?,
        plan: crate::quota::plan_name(label.as_deref(), default_plan),
        at: now,
    }))
}

/// Follows the namespaces in scope until the stream ends (never, in
/// practice: the watch retries with backoff).
pub async fn follow(context: &Context, mirror: Option<&Mirror>) {
    let namespaces: Api<PartialObjectMeta<Namespace>> = Api::all(context.client.clone());
    // A namespace-scoped operator may read its own namespaces only, each
    // by name. Each watch lists once; the first InitDone of each counts.
    let (mut events, watches) = match context.scope.namespaces() {
        None => (
            watcher(namespaces, watcher::Config::default())
                .default_backoff()
                .boxed(),
            1,
        ),
        Some(names) => (
            futures::stream::select_all(names.iter().map(|name| {
                let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
                watcher(namespaces.clone(), config)
                    .default_backoff()
                    .boxed()
            }))
            .boxed(),
            names.len(),
        ),
    };
    let mut listed = 0;
    if watches == 0 {
        context.quotas.namespaces_listed();
    }
    let default_plan = context.config.default_plan.as_deref();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => metadata_of(event),
            Err(error) => {
                // Labels that cannot be read must not hold every run back:
                // until they can, namespaces take the default plan.
                context.quotas.namespaces_listed();
                tracing::warn!(%error, "namespace watch failed; retrying");
                continue;
            }
        };
        match &event {
            watcher::Event::Apply(metadata) | watcher::Event::InitApply(metadata) => {
                if let Some(name) = &metadata.name {
                    if metadata.deletion_timestamp.is_some() {
                        context.namespace_uids.forget(name);
                    }
                    context
                        .quotas
                        .namespace_seen(name, crate::quota::plan_label(metadata.labels.as_ref()));
                }
            }
            watcher::Event::Delete(metadata) => {
                if let Some(name) = &metadata.name {
                    context.namespace_uids.forget(name);
                    context.quotas.namespace_gone(name);
                }
            }
            watcher::Event::InitDone => {
                listed += 1;
                if listed == watches {
                    context.quotas.namespaces_listed();
                }
            }
            watcher::Event::Init => {}
        }
        let Some(mirror) = mirror else {
            continue;
        };
        let Some(record) = plan_namespace(&event, default_plan, Utc::now()) else {
            continue;
        };
        if let Err(error) = mirror.send(record).await {
            tracing::warn!(%error, "the mirror refused a namespace's record");
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
    use chrono::TimeZone;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    const UID: &str = "6f9619ff-8b86-d011-b42d-00cf4fc964ff";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap()
    }

    fn namespace(terminating: bool, plan: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("growth".to_owned()),
            uid: Some(UID.to_owned()),
            deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            labels: plan.map(|plan| BTreeMap::from([("sluice.dev/plan".into(), plan.into())])),
            ..ObjectMeta::default()
        }
    }

    fn deactivation() -> Option<MirrorEvent> {
        Some(MirrorEvent::Deleted(DeletedRecord {
            kind: ResourceKind::Workspace,
            uid: Uuid::parse_str(UID).unwrap(),
        }))
    }

    fn subscription(plan: Option<&str>) -> Option<MirrorEvent> {
        Some(MirrorEvent::Subscription(SubscriptionRecord {
            workspace_uid: Uuid::parse_str(UID).unwrap(),
            namespace: "growth".into(),
            plan: plan.map(str::to_owned),
            at: now(),
        }))
    }

    #[test]
    fn a_terminating_or_deleted_namespace_deactivates_its_workspace() {
        let plan = |event| plan_namespace(&event, Some("free"), now());
        assert_eq!(
            plan(watcher::Event::Apply(namespace(true, None))),
            deactivation()
        );
        assert_eq!(
            plan(watcher::Event::InitApply(namespace(true, None))),
            deactivation(),
            "seen terminating when the operator starts"
        );
        assert_eq!(
            plan(watcher::Event::Delete(namespace(false, Some("gold")))),
            deactivation()
        );
    }

    #[test]
    fn a_live_namespace_is_subscribed_to_its_labels_plan_or_the_default() {
        let plan = |event, default| plan_namespace(&event, default, now());
        assert_eq!(
            plan(
                watcher::Event::Apply(namespace(false, Some("gold"))),
                Some("free")
            ),
            subscription(Some("gold"))
        );
        assert_eq!(
            plan(
                watcher::Event::InitApply(namespace(false, None)),
                Some("free")
            ),
            subscription(Some("free"))
        );
        assert_eq!(
            plan(
                watcher::Event::Apply(namespace(false, Some(""))),
                Some("free")
            ),
            subscription(None),
            "an empty label opts out of the default"
        );
        assert_eq!(
            plan(watcher::Event::Apply(namespace(false, None)), None),
            subscription(None)
        );
        assert_eq!(plan(watcher::Event::InitDone, None), None);
    }
}

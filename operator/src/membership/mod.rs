//! Membership from RBAC: the RoleBindings in the watched namespaces that
//! grant Sluice roles, mirrored into `workspace_members`, `user_roles` and
//! `user_role_assignments` ([`crate::mirror::membership`]).
//!
//! [`plan`] is pure (which bindings count, which subjects are users, the
//! whole picture); [`follow`] watches RoleBindings, keeps the grants of
//! each, and once its first list is complete hands the mirror the whole
//! picture after every change that alters it, so a deleted binding takes
//! its rows with it, and bindings deleted while no operator watched are
//! gone from the first picture after a start. It runs on the leader with
//! the audit trail, and never writes to Kubernetes.

pub mod plan;

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};

use crate::context::Context;
use crate::mirror::{Mirror, MirrorEvent, Scope};
use plan::{Grants, build_membership, grants_of, namespaces_of};

/// The mirror's scope for this operator's watched namespaces.
pub fn mirror_scope(context: &Context) -> Scope {
    match context.scope.namespaces() {
        Some(names) => Scope::Namespaces(names.to_vec()),
        None => Scope::Cluster,
    }
}

/// The membership record of `grants`, with the workspace ids of their
/// namespaces read from the API server.
pub async fn observe_membership(
    context: &Context,
    grants: &Grants,
) -> crate::mirror::MembershipRecord {
    let mut workspace_uids = BTreeMap::new();
    for namespace in namespaces_of(grants) {
        if let Some(uid) = crate::mirror_map::namespace_uid(context, &namespace).await {
            workspace_uids.insert(namespace, uid);
        }
    }
    build_membership(grants, &workspace_uids, mirror_scope(context))
}

/// Follows RoleBindings until the stream ends (never, in practice: the
/// watch retries with backoff).
pub async fn follow(context: &Context, mirror: &Mirror) {
    let mut events = context
        .watch::<RoleBinding>(watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut grants = Grants::new();
    let mut listing = Grants::new();
    let mut listed = false;
    let mut last_sent = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "rolebinding watch failed; retrying");
                continue;
            }
        };
        let key =
            |binding: &RoleBinding| (binding.namespace().unwrap_or_default(), binding.name_any());
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(binding) => {
                listing.insert(key(&binding), grants_of(&binding));
            }
            watcher::Event::InitDone => {
                grants = std::mem::take(&mut listing);
                listed = true;
            }
            watcher::Event::Apply(binding) => {
                grants.insert(key(&binding), grants_of(&binding));
            }
            watcher::Event::Delete(binding) => {
                grants.remove(&key(&binding));
            }
        }
        if !listed {
            continue;
        }
        // Bindings that grant nothing Sluice cares about change nothing.
        grants.retain(|_, granted| !granted.is_empty());
        if last_sent.as_ref() == Some(&grants) {
            continue;
        }
        let record = observe_membership(context, &grants).await;
        match mirror.send(MirrorEvent::Membership(record)).await {
            Ok(()) => last_sent = Some(grants.clone()),
            Err(error) => tracing::warn!(%error, "the mirror refused the membership"),
        }
    }
}

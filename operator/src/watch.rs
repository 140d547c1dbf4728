//! The controllers' watches, kept lean: every controller caches the objects
//! it watches for as long as the process runs, so what a cached object
//! holds is multiplied by every object in the cluster.
//!
//! [`lean_controller`] caches objects without `managedFields` and kubectl's
//! last-applied annotation, which no controller reads and which are often
//! most of an object's size. Given an `Api<PartialObjectMeta<K>>`, it
//! watches and caches only (lean) metadata: that is for controllers that
//! read the object fresh from the API in each reconcile anyway (Workflows,
//! Schedules, WorkflowRuns), and makes 10,000 Workflows cost a few
//! megabytes instead of tens.
//!
//! It uses kube's stream-controlled `Controller::for_stream` (the
//! `unstable-runtime` feature), the only way to change what a controller's
//! cache holds, and the only way to watch a list of namespaces
//! ([`crate::scope`]).

use crate::scope::WatchStream;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// The annotation `kubectl apply` keeps a whole copy of the object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from a cached object.
pub fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
}

/// A controller of `K` whose cache holds lean objects from `watch` (see
/// [`crate::context::Context::watch`]), running at most `concurrency`
/// reconciles at once.
pub fn lean_controller<K>(watch: WatchStream<K>, concurrency: u16) -> Controller<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watch.modify(slim)).applied_objects();
    Controller::for_stream(stream, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use sluice_crds::Workflow;

    #[test]
    fn slim_keeps_labels_and_other_annotations() {
        let mut workflow = Workflow::fixture("w");
        workflow.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        workflow.labels_mut().insert("team".into(), "data".into());
        workflow
            .annotations_mut()
            .insert(LAST_APPLIED.into(), "{\"big\": true}".into());
        workflow
            .annotations_mut()
            .insert("note".into(), "kept".into());
        slim(&mut workflow);
        assert!(workflow.managed_fields().is_empty());
        assert_eq!(
            workflow.labels().get("team").map(String::as_str),
            Some("data")
        );
        assert!(!workflow.annotations().contains_key(LAST_APPLIED));
        assert_eq!(
            workflow.annotations().get("note").map(String::as_str),
            Some("kept")
        );
    }
}

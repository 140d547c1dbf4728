//! Sluice operator library: controllers, the run API, the PostgreSQL mirror
//! and the process around them. `main.rs` only parses the configuration and
//! calls [`run`].
//!
//! Map: [`admission`] (validating and mutating webhooks), [`workflow`] (validation, revisions), [`run`] (admission, Jobs,
//! lifecycle), [`run_index`] (runs grouped from a watch), [`run_api`] (runner ⇄ operator), [`mirror`] and
//! [`mirror_map`], [`audit`] and [`workspaces`] (PostgreSQL), [`names`] (derived names), [`leader`]
//! (Lease), [`telemetry`] (metrics, health), [`config`], [`context`],
//! [`events`] (Kubernetes Events), [`watch`] (lean controller caches).

pub mod admission;
pub mod audit;
pub mod config;
pub mod connection;
pub mod context;
pub mod events;
pub mod leader;
pub mod mirror;
pub mod mirror_map;
pub mod names;
pub mod process;
pub mod run;
pub mod run_api;
pub mod run_index;
pub mod schedule;
pub mod telemetry;
pub mod watch;
pub mod webhook;
pub mod workflow;
pub mod workspaces;

#[cfg(test)]
mod status_fields_tests;

use context::Context;
use kube::Api;

/// An Api over every namespace, or the configured one.
pub fn namespaced_api<K>(context: &Context) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match &context.config.namespace {
        Some(namespace) => Api::namespaced(context.client.clone(), namespace),
        None => Api::all(context.client.clone()),
    }
}

//! Sluice operator library: controllers, the run API, the PostgreSQL mirror
//! and the process around them. `main.rs` only parses the configuration and
//! calls [`run`].
//!
//! Map: [`admission`] (validating and mutating webhooks), [`workflow`] (validation, revisions), [`run`] (admission, Jobs,
//! lifecycle), [`run_index`] (runs grouped from a watch), [`run_api`] (runner ⇄ operator), [`mirror`] and
//! [`mirror_map`], [`audit`], [`workspaces`] and [`membership`] (PostgreSQL; RoleBindings → members), [`names`] (derived names), [`leader`]
//! (Lease), [`telemetry`] (metrics, health), [`sampler`] (`system_metrics` rows), [`reconcile_queue`] (queue depth), [`quota`] (Plans, subscriptions, limits at admission), [`usage`] (showback), [`config`], [`context`],
//! [`events`] (Kubernetes Events), [`watch`] (lean controller caches), [`scope`] (the watched
//! namespaces).

pub mod admission;
pub mod audit;
pub mod config;
pub mod connection;
pub mod console;
pub mod context;
pub mod custom_nodes;
pub mod events;
pub mod leader;
pub mod membership;
pub mod mirror;
pub mod mirror_map;
pub mod names;
pub mod process;
pub mod quota;
pub mod recent;
pub mod reconcile_queue;
pub mod run;
pub mod run_api;
pub mod run_index;
pub mod sampler;
pub mod schedule;
pub mod scope;
pub mod telemetry;
pub mod usage;
pub mod watch;
pub mod webhook;
pub mod workflow;
pub mod workspaces;

#[cfg(test)]
mod status_fields_tests;

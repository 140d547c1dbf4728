//! The Workflow controller: validates each Workflow with the runner's
//! validator, records revisions and reports `Valid`/`Ready`. The decisions
//! are in [`plan`]; the reconcile shell applies them; [`users`] maps each
//! Connection to the Workflows that name it.

pub mod controller;
pub mod plan;
pub mod users;

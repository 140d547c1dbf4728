//! The Workflow controller: validates each Workflow with the runner's
//! validator, records revisions and reports `Valid`/`Ready`. The decisions
//! are in [`plan`]; the reconcile shell applies them.

pub mod controller;
pub mod plan;

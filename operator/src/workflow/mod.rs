//! The Workflow controller: validates each Workflow with the runner's
//! validator, records revisions and reports `Valid`/`Ready`. The decisions
//! are in [`plan`]; the reconcile shell applies them; [`users`] maps each
//! Connection to the Workflows that name it; [`last_run`] keeps
//! `status.lastRun` and `status.runs` from the run controller's index.

pub mod controller;
pub mod last_run;
pub mod plan;
pub mod users;

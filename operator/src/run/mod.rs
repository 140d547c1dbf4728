//! The WorkflowRun controller: admission, concurrency, the Job per run and
//! the run's lifecycle. Decisions are pure functions in the submodules;
//! the reconcile shell applies them with the kube client.

pub mod admission;
pub mod controller;
pub mod finish;
pub mod job;
pub mod outcome;
pub mod progress;
pub mod resume;
pub mod resume_source;

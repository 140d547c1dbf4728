//! The WorkflowRun controller: admission, concurrency, the Job per run, the
//! run's lifecycle and the keeping of its history. [`plan`] decides each
//! step (and explains the two lanes: admission never waits on old runs or
//! on PostgreSQL); decisions are pure functions in the submodules; the
//! shell ([`controller`], [`start`], [`finish`], [`keeper`]) applies them
//! with the kube client.

pub mod admission;
pub mod controller;
pub mod finish;
pub mod index;
pub mod job;
pub mod keeper;
pub mod outcome;
pub mod parent;
pub mod plan;
pub mod progress;
pub mod resume;
pub mod resume_source;
pub mod shared;
pub mod start;

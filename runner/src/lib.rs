//! Sluice's workflow engine and node types, shared by `sluice-runner exec`
//! (inside a Job) and `sluice-runner run` (locally).

pub mod connections;
pub mod node;
pub mod nodes;

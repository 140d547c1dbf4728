//! Sluice operator library: controllers, webhook server and the PostgreSQL mirror.

pub mod mirror;
pub mod names;
pub mod run;
pub mod workflow;

//! Sluice operator library: controllers, webhook server and the PostgreSQL mirror.

pub mod mirror;

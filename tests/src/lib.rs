//! End-to-end test bed for Sluice.
pub mod apiserver;

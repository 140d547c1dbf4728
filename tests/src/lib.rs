//! End-to-end test bed for Sluice.
pub mod apiserver;
pub mod binaries;
pub mod cluster;
pub mod kubelet;

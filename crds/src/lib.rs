//! Sluice's API (`sluice.dev/v1alpha1`): the Workflow, WorkflowRun, Schedule,
//! Connection and NodeType resources and the cluster-scoped Plan and ClusterNodeType as Rust types, their defaults and condition
//! constants, and the generator of the CRD YAML in `charts/sluice/files/crds/`.
//!
//! This crate holds data shapes only. It never talks to a server; the
//! runner and the operator give the types behaviour.

pub mod common;
pub mod connection;
pub mod generate;
pub mod node_type;
pub mod nodes;
pub mod oauth2;
pub mod plan;
pub mod run_api;
pub mod schedule;
pub mod workflow;
pub mod workflow_run;

pub use common::{Condition, ConditionStatus, Duration, LocalObjectReference, SecretKeyReference};
pub use connection::{Connection, ConnectionSpec, ConnectionStatus, ConnectionType};
pub use node_type::{
    ClusterNodeType, ClusterNodeTypeSpec, CustomNodeType, NodePreset, NodeTypeSpec,
};
pub use nodes::NodeType;
pub use plan::{Plan, PlanLimits, PlanSpec};
pub use schedule::{OverlapPolicy, Schedule, ScheduleSpec, ScheduleStatus};
pub use workflow::{NodeSpec, Workflow, WorkflowSpec, WorkflowStatus};
pub use workflow_run::{NodePhase, RunPhase, WorkflowRun, WorkflowRunSpec, WorkflowRunStatus};

/// API group of every Sluice resource.
pub const GROUP: &str = "sluice.dev";
/// API version of every Sluice resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Sluice resource.
pub const API_VERSION: &str = "sluice.dev/v1alpha1";

pub mod fixtures;

#[cfg(test)]
mod examples_test;

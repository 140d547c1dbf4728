//! The one end-to-end test binary (one binary keeps build time down on
//! small machines). Each submodule is a suite; each test gets its own
//! cluster namespace (and, without `SLUICE_E2E_KUBECONFIG`, its own API
//! server stand-in).

mod admission;
mod audit;
mod chart;
mod churn;
mod cluster_nodes;
mod conformance;
mod connections;
mod console;
mod container;
mod custom_nodes;
mod examples;
mod health;
mod kubectl;
mod kubelet;
mod liveness;
mod membership;
mod namespaces;
mod oauth2;
mod operator;
mod operator_limits;
mod operator_resilience;
mod operator_support;
mod quotas;
mod resume;
mod schedules;
mod standin;
mod support;

//! Webhook triggers: `POST /hooks/{namespace}/{workflow}/{trigger}` starts
//! a run of the workflow. Served by every replica.
//!
//! [`server`] is the HTTP handling (body limit, authentication, rate limit,
//! run creation, synchronous answers) over a [`WebhookBackend`] — the few
//! reads and writes it needs from Kubernetes — so it is tested with a test
//! double; [`kube_backend`] is the thin real implementation. [`auth`] and
//! [`rate`] are pure.
//!
//! Credentials (Authorization, Cookie, the signature header) are dropped
//! from the trigger data stored in the run; the HMAC key or token is read
//! from its Secret, cached briefly, and never logged or echoed.

pub mod auth;
pub mod kube_backend;
pub mod memory;
pub mod rate;
pub mod server;
#[cfg(test)]
mod tests;

use futures::future::BoxFuture;
use sluice_crds::{Workflow, WorkflowRun, WorkflowRunStatus};

/// A failed read or write of the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to {action}: {message}")]
pub struct BackendError {
    /// What was attempted, e.g. "create the run".
    pub action: &'static str,
    /// Why it failed.
    pub message: String,
}

/// What the webhook server needs from Kubernetes.
pub trait WebhookBackend: Send + Sync {
    /// The workflow `name` in `namespace`, if it exists (and the operator
    /// serves that namespace).
    fn workflow<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, BackendError>>;

    /// The value under `key` of the Secret `name`, if both exist.
    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>>;

    /// Creates `run` (with `generateName`); returns the name it got.
    fn create_run<'a>(
        &'a self,
        namespace: &'a str,
        run: WorkflowRun,
    ) -> BoxFuture<'a, Result<String, BackendError>>;

    /// The status of run `name`, if the run exists.
    fn run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<WorkflowRunStatus>, BackendError>>;
}

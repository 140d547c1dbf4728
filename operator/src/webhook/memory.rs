//! An in-memory [`WebhookBackend`] for tests and benchmarks: workflows,
//! secrets and runs in maps, names generated like the API server does.
//! Not used by the operator process.

use super::{BackendError, WebhookBackend};
use futures::future::BoxFuture;
use sluice_crds::{RunPhase, Workflow, WorkflowRun, WorkflowRunStatus};
use std::collections::BTreeMap;
use std::sync::Mutex;

type Key = (String, String);

/// Workflows, secrets and runs held in memory.
#[derive(Default)]
pub struct MemoryBackend {
    workflows: Mutex<BTreeMap<Key, Workflow>>,
    secrets: Mutex<BTreeMap<(String, String, String), Vec<u8>>>,
    runs: Mutex<BTreeMap<Key, WorkflowRun>>,
    finish_with: Mutex<Option<serde_json::Value>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryBackend {
    /// Adds or replaces a workflow (its namespace must be set).
    pub fn put_workflow(&self, workflow: Workflow) {
        let key = (
            workflow.metadata.namespace.clone().unwrap_or_default(),
            workflow.metadata.name.clone().unwrap_or_default(),
        );
        lock(&self.workflows).insert(key, workflow);
    }

    /// Adds a Secret value.
    pub fn put_secret(&self, namespace: &str, name: &str, key: &str, value: &[u8]) {
        lock(&self.secrets).insert(
            (namespace.to_owned(), name.to_owned(), key.to_owned()),
            value.to_vec(),
        );
    }

    /// Makes every run report Succeeded with `output` when its status is read.
    pub fn finish_runs_with(&self, output: serde_json::Value) {
        *lock(&self.finish_with) = Some(output);
    }

    /// The runs created so far, by name.
    pub fn runs(&self) -> Vec<WorkflowRun> {
        lock(&self.runs).values().cloned().collect()
    }
}

impl WebhookBackend for MemoryBackend {
    fn workflow<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, BackendError>> {
        let found = lock(&self.workflows)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        let found = lock(&self.secrets)
            .get(&(namespace.to_owned(), name.to_owned(), key.to_owned()))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn create_run<'a>(
        &'a self,
        namespace: &'a str,
        mut run: WorkflowRun,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        let mut runs = lock(&self.runs);
        let prefix = run.metadata.generate_name.clone().unwrap_or_default();
        let name = format!("{prefix}{:05}", runs.len() + 1);
        run.metadata.name = Some(name.clone());
        runs.insert((namespace.to_owned(), name.clone()), run);
        Box::pin(async move { Ok(name) })
    }

    fn run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<WorkflowRunStatus>, BackendError>> {
        let finish = lock(&self.finish_with).clone();
        let mut runs = lock(&self.runs);
        let status = runs
            .get_mut(&(namespace.to_owned(), name.to_owned()))
            .map(|run| {
                if let Some(output) = finish {
                    run.status = Some(WorkflowRunStatus {
                        phase: Some(RunPhase::Succeeded),
                        output: Some(output),
                        ..WorkflowRunStatus::default()
                    });
                }
                run.status.clone().unwrap_or_default()
            });
        Box::pin(async move { Ok(status) })
    }
}

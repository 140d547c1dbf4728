//! A Workflow's `status.lastRun` and `status.runs` (the LAST RUN column of
//! `kubectl get workflows`), kept from the run controller's index of each
//! Workflow's runs ([`crate::run::index`]); no LIST of runs.
//!
//! The index reports which Workflows' runs changed ([`Summaries::touch`]);
//! a writer task computes each such Workflow's summary
//! ([`crate::run::index::build_run_summary`]) and merge-patches the status
//! subresource only when the summary differs from what it last wrote, at
//! most once per [`BATCH`] per Workflow, however fast runs change. It
//! writes only those two fields; the Workflow controller owns the rest.

use crate::context::Context;
use crate::run::index::{RunIndex, RunSummary, build_run_summary};
use kube::api::{Api, Patch, PatchParams};
use sluice_crds::Workflow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long the writer gathers changes before writing.
pub const BATCH: Duration = Duration::from_millis(250);
/// Wait before retrying a failed write.
const RETRY: Duration = Duration::from_secs(2);

/// The summaries written and the Workflows whose runs changed since.
pub struct Summaries {
    context: Arc<Context>,
    index: Arc<RunIndex>,
    dirty: Mutex<BTreeSet<String>>,
    written: Mutex<HashMap<String, RunSummary>>,
    wake: Notify,
}

impl Summaries {
    pub fn new(context: Arc<Context>, index: Arc<RunIndex>) -> Self {
        Self {
            context,
            index,
            dirty: Mutex::new(BTreeSet::new()),
            written: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    /// Marks the Workflows (`namespace/name` groups) whose runs changed.
    pub fn touch(&self, groups: BTreeSet<String>) {
        if groups.is_empty() {
            return;
        }
        lock(&self.dirty).extend(groups);
        self.wake.notify_one();
    }

    /// Writes changed summaries until the process ends.
    pub async fn write_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(BATCH).await;
            let groups = std::mem::take(&mut *lock(&self.dirty));
            let mut failed = BTreeSet::new();
            for group in groups {
                if let Err(error) = self.write(&group).await {
                    tracing::warn!(workflow = %group, %error, "failed to write a workflow's last run; retrying");
                    failed.insert(group);
                }
            }
            if !failed.is_empty() {
                tokio::time::sleep(RETRY).await;
                self.touch(failed);
            }
        }
    }

    async fn write(&self, group: &str) -> Result<(), kube::Error> {
        let summary = build_run_summary(&self.index.runs_of(group));
        if lock(&self.written).get(group) == Some(&summary) {
            return Ok(());
        }
        let Some((namespace, name)) = group.split_once('/') else {
            return Ok(());
        };
        let workflows: Api<Workflow> = Api::namespaced(self.context.client.clone(), namespace);
        let patch = serde_json::json!({"status": {
            "lastRun": summary.last_run,
            "runs": summary.runs,
        }});
        match workflows
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // No Workflow (yet, or any more): nothing to write it to.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(error),
        }
        lock(&self.written).insert(group.to_owned(), summary);
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

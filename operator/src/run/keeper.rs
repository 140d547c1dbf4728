//! The keeping lane: stores finished and deleted runs in the mirror and
//! removes their finalizer once the final state is committed (design in
//! [`super::plan`]).
//!
//! [`Keeper::keep`] never waits: it registers the run and returns, and a
//! task of the keeper's own reads what the record needs (the namespace's
//! UID, the frozen snapshot, whether the Workflow still exists), offers it
//! to the mirror, waits for the commit as long as it takes, sets the run's
//! `Mirrored` condition and removes the finalizer. A run is handled by one
//! task at a time; a failed attempt is retried when the run controller
//! hands the run over again (on the run's next change, or its recheck).
//! The keeper's reads share a small number of permits, so old runs never
//! crowd the API calls of new ones.
//!
//! [`Keeper::let_go`] is the end of the grace period: the finalizer goes without
//! the commit, and the loss is made visible (a Warning Event, a counter,
//! one JSON log line with the run's whole final status).

use super::parent::build_kept_record;
use super::shared::{FINALIZER, SNAPSHOT_KEY, is_not_found, remove_finalizer, snapshot_name};
use crate::context::{Context, Error};
use crate::mirror::MirrorEvent;
use crate::mirror::queue::{CommitError, OfferError};
use chrono::Utc;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use sluice_crds::common::{condition_type, set_condition};
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{Condition, ConditionStatus, Workflow, WorkflowRun};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Keeper tasks reading the API server at once.
const READERS: usize = 4;
/// Attempts to remove the finalizer when the run changes meanwhile.
const RELEASE_ATTEMPTS: usize = 5;

/// Why keeping a run failed this time (it is tried again later).
#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error("failed to read what the run's record needs")]
    Read(#[source] Error),
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("failed to remove the finalizer")]
    Release(#[source] Error),
}

/// The keeping lane's state: the runs being stored now.
pub struct Keeper {
    context: Arc<Context>,
    waiting: Mutex<HashSet<String>>,
    readers: Semaphore,
}

impl Keeper {
    pub fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            waiting: Mutex::new(HashSet::new()),
            readers: Semaphore::new(READERS),
        }
    }

    /// Runs waiting for the mirror (the `runs_awaiting_mirror` gauge).
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Stores `run` and then removes its finalizer, in the background.
    /// Returns at once; a run already being stored is left to that task.
    pub fn keep(self: &Arc<Self>, run: &WorkflowRun) {
        let Some(uid) = run.uid() else {
            return;
        };
        {
            let mut waiting = self.lock();
            if !waiting.insert(uid.clone()) {
                return;
            }
            self.context
                .metrics
                .runs_awaiting_mirror
                .set(waiting.len() as i64);
        }
        let keeper = self.clone();
        let run = run.clone();
        tokio::spawn(async move {
            if let Err(error) = keeper.store(&run).await {
                tracing::warn!(
                    namespace = run.namespace().unwrap_or_default(),
                    run = %run.name_any(),
                    %error,
                    source = std::error::Error::source(&error).map(ToString::to_string),
                    "failed to keep a run's history; trying again later"
                );
            }
            let mut waiting = keeper.lock();
            waiting.remove(&uid);
            keeper
                .context
                .metrics
                .runs_awaiting_mirror
                .set(waiting.len() as i64);
        });
    }

    async fn store(&self, run: &WorkflowRun) -> Result<(), KeepError> {
        let Some(mirror) = &self.context.mirror else {
            return Ok(());
        };
        let record = {
            let _permit = self.readers.acquire().await;
            self.observe_record(run).await.map_err(KeepError::Read)?
        };
        if let Some(record) = record {
            mirror
                .offer_tracked(MirrorEvent::Execution(record))?
                .wait()
                .await?;
        }
        let _permit = self.readers.acquire().await;
        self.release(run).await.map_err(KeepError::Release)
    }

    /// The run's record with its parents: reads the namespace, the
    /// snapshot and the Workflow (one GET each).
    async fn observe_record(
        &self,
        run: &WorkflowRun,
    ) -> Result<Option<crate::mirror::ExecutionRecord>, Error> {
        let context = &self.context;
        let namespace = run.namespace().unwrap_or_default();
        let workspace = crate::mirror_map::namespace_uid(context, &namespace).await;
        let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), &namespace);
        let snapshot = match config_maps
            .get_opt(&snapshot_name(&run.name_any()))
            .await?
            .and_then(|config_map| config_map.data?.remove(SNAPSHOT_KEY))
        {
            Some(text) => serde_json::from_str::<RunSnapshot>(&text).ok(),
            None => None,
        };
        let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
        let owner = crate::mirror_map::workflow_uid(run).map(|uid| uid.to_string());
        let gone = workflows
            .get_opt(&run.spec.workflow_ref.name)
            .await?
            .is_none_or(|workflow| workflow.uid() != owner);
        Ok(build_kept_record(run, workspace, snapshot.as_ref(), gone))
    }

    /// Marks the run `Mirrored` and removes the finalizer, reading the run
    /// again after a conflicting change.
    async fn release(&self, run: &WorkflowRun) -> Result<(), Error> {
        let context = &self.context;
        let runs: Api<WorkflowRun> =
            Api::namespaced(context.client.clone(), &run.namespace().unwrap_or_default());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(current) = runs.get_opt(&run.name_any()).await? else {
                return Ok(());
            };
            if current.uid() != run.uid() || !current.finalizers().iter().any(|f| f == FINALIZER) {
                return Ok(());
            }
            let result = async {
                let current = mark_mirrored(&runs, current).await?;
                remove_finalizer(&runs, &current).await
            }
            .await;
            match result {
                Err(Error::Kube(kube::Error::Api(status)))
                    if status.code == 409 && attempt < RELEASE_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    /// The grace period of a run being deleted is over and its final
    /// state is still not stored: releases the finalizer and records the
    /// loss. The run no longer counts as waiting for the mirror.
    pub async fn let_go(&self, run: &WorkflowRun) -> Result<(), Error> {
        if let Some(uid) = run.uid() {
            let mut waiting = self.lock();
            waiting.remove(&uid);
            self.context
                .metrics
                .runs_awaiting_mirror
                .set(waiting.len() as i64);
        }
        let_go(run, &self.context).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sets the `Mirrored` condition of a run that is not being deleted.
async fn mark_mirrored(runs: &Api<WorkflowRun>, run: WorkflowRun) -> Result<WorkflowRun, Error> {
    if run.meta().deletion_timestamp.is_some() {
        return Ok(run);
    }
    let mut status = run.status.clone().unwrap_or_default();
    let changed = set_condition(
        &mut status.conditions,
        Condition::new(
            condition_type::MIRRORED,
            ConditionStatus::True,
            "Stored",
            "the run's final state is in PostgreSQL",
            run.metadata.generation,
            Utc::now(),
        ),
    );
    if !changed {
        return Ok(run);
    }
    let mut updated = run.clone();
    updated.status = Some(status);
    match runs
        .replace_status(&run.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(stored) => Ok(stored),
        Err(error) if is_not_found(&error) => Ok(run),
        Err(error) => Err(error.into()),
    }
}

/// Releases the finalizer of a run whose grace period is over, with the
/// Warning Event, the counter and the log line.
async fn let_go(run: &WorkflowRun, context: &Context) -> Result<(), Error> {
    let namespace = run.namespace().unwrap_or_default();
    let grace = humantime(context.config.mirror_grace_period);
    let final_status = serde_json::to_string(&run.status).unwrap_or_default();
    tracing::error!(
        namespace,
        run = %run.name_any(),
        uid = run.uid().unwrap_or_default(),
        workflow = %run.spec.workflow_ref.name,
        final_status = %final_status,
        "released a deleted run whose history could not be stored within the grace period; its final status is in this line"
    );
    context.metrics.run_history_lost();
    context
        .publish_lasting(
            run,
            true,
            "HistoryLost",
            "Delete",
            format!(
                "the run's final state could not be stored in PostgreSQL within {grace} of its deletion: the finalizer was removed so the deletion can finish; the final status is in the operator's log (message \"released a deleted run…\")"
            ),
        )
        .await;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    remove_finalizer(&runs, run).await
}

fn humantime(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..120 => format!("{seconds}s"),
        _ => format!("{}m", seconds / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_read_like_the_flag() {
        assert_eq!(humantime(std::time::Duration::from_secs(3)), "3s");
        assert_eq!(humantime(std::time::Duration::from_secs(900)), "15m");
    }
}

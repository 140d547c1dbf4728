//! The keeping lane: stores finished and deleted runs in the mirror and
//! removes their finalizer once the final state is committed (design in
//! [`super::plan`]).
//!
//! The admission lane hands a run over by name ([`Keeper::keep`], which
//! never waits), usually from its cache alone ([`super::plan::kept`]): a
//! reconcile of a deleted or finished run makes no API call. A task of the
//! keeper's own reads the run, plans it with the same pure
//! [`super::plan::plan_step`], reads what the record needs (the
//! namespace's UID, the frozen snapshot, whether the Workflow still
//! exists), offers it to the mirror, waits for the commit as long as it
//! takes, sets the run's `Mirrored` condition and removes the finalizer.
//! A run is handled by one task at a time; a failed attempt is retried
//! when the run controller hands the run over again (on the run's next
//! change, or its recheck).
//!
//! Old runs never crowd new ones: while runs are being admitted the lane
//! makes one API call per `PACE` (it goes at full speed otherwise), its
//! API calls share a few permits, and the answers runs share (the namespace's
//! uid, whether the Workflow exists) are remembered briefly
//! ([`crate::recent`]). A namespace full of deleted runs costs three calls
//! per run (the run, its snapshot, the finalizer patch), not seven.
//!
//! [`Keeper::let_go`] is the end of the grace period, called by the
//! controller (a task may still wait for a commit that never comes): the
//! finalizer goes without the commit, and the loss is made visible (a
//! Warning Event, a counter, one JSON log line with the run's whole final
//! status).

use super::parent::build_kept_record;
use super::plan::{Settings, Step, plan_step};
use super::shared::{FINALIZER, SNAPSHOT_KEY, is_not_found, remove_finalizer, snapshot_name};
use crate::context::{Context, Error};
use crate::mirror::MirrorEvent;
use crate::mirror::queue::{CommitError, OfferError};
use crate::recent::Recent;
use chrono::Utc;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use sluice_crds::common::{condition_type, set_condition};
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{Condition, ConditionStatus, Workflow, WorkflowRun};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Keeper tasks reading the API server at once.
const READERS: usize = 4;
/// Attempts to remove the finalizer when the run changes meanwhile.
const RELEASE_ATTEMPTS: usize = 5;
/// While a run was admitted within `BUSY`, the keeping lane makes at most
/// one API call per `PACE` (about 13 runs a second): old runs' API calls
/// and database writes never crowd the admission of new ones, and still go
/// on under a steady load.
const BUSY: Duration = Duration::from_secs(1);
const PACE: Duration = Duration::from_millis(25);
/// How long the keeper trusts a read of whether a Workflow exists. It only
/// decides whether a parent row made from a run is `archived`.
const WORKFLOW_TTL: Duration = Duration::from_secs(2);

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

/// A run handed to the keeping lane: enough to read it again.
#[derive(Clone, Debug)]
pub struct Kept {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Kept {
    /// The run `metadata` names; `None` without a namespace or uid.
    pub fn of(metadata: &ObjectMeta) -> Option<Self> {
        Some(Self {
            namespace: metadata.namespace.clone()?,
            name: metadata.name.clone()?,
            uid: metadata.uid.clone()?,
        })
    }
}

/// The keeping lane's state: the runs being stored now, and when a run
/// was last admitted (the lane slows down while runs are admitted).
pub struct Keeper {
    context: Arc<Context>,
    waiting: Mutex<HashSet<String>>,
    readers: Semaphore,
    /// Workflow uids by `namespace/name` (`None`: no such Workflow).
    workflows: Recent<Option<String>>,
    /// When this keeper was made: the origin of `last_admission`.
    origin: Instant,
    /// Milliseconds from `origin` to the last admission, plus one (0: none).
    last_admission: AtomicU64,
    /// The earliest start of the next run while admissions are busy.
    next_turn: tokio::sync::Mutex<Instant>,
}

impl Keeper {
    pub fn new(context: Arc<Context>) -> Self {
        Self {
            context,
            waiting: Mutex::new(HashSet::new()),
            readers: Semaphore::new(READERS),
            workflows: Recent::new(WORKFLOW_TTL),
            origin: Instant::now(),
            last_admission: AtomicU64::new(0),
            next_turn: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Runs waiting for the mirror (the `runs_awaiting_mirror` gauge).
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// A run is being admitted: the keeping lane yields for a while.
    pub fn admitting(&self) {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        self.last_admission.store(now, Ordering::Relaxed);
    }

    fn admissions_busy(&self) -> bool {
        let last = self.last_admission.load(Ordering::Relaxed);
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        last != 0 && now.saturating_sub(last) < BUSY.as_millis() as u64
    }

    /// Waits for a turn to call the API server: one of [`READERS`] permits
    /// and, while runs are being admitted, one call per [`PACE`] for the
    /// whole lane, first come first served.
    async fn turn(&self) -> SemaphorePermit<'_> {
        let permit = self
            .readers
            .acquire()
            .await
            .expect("the keeper never closes its semaphore");
        if self.admissions_busy() {
            let mut next = self.next_turn.lock().await;
            if self.admissions_busy() {
                tokio::time::sleep_until((*next).into()).await;
                *next = Instant::now() + PACE;
            }
        }
        permit
    }

    /// Reads the run again and plans it ([`plan_step`]): stores it and
    /// then removes its finalizer, or removes a finalizer that protects
    /// nothing. In the background: returns at once, and a run already
    /// handed over is left to that task.
    pub fn keep(self: &Arc<Self>, run: Kept) {
        {
            let mut waiting = self.lock();
            if !waiting.insert(run.uid.clone()) {
                return;
            }
            self.context
                .metrics
                .runs_awaiting_mirror
                .set(waiting.len() as i64);
        }
        let keeper = self.clone();
        tokio::spawn(async move {
            if let Err(error) = keeper.handle(&run).await {
                tracing::warn!(
                    namespace = run.namespace,
                    run = run.name,
                    %error,
                    source = std::error::Error::source(&error).map(ToString::to_string),
                    "failed to keep a run's history; trying again later"
                );
            }
            let mut waiting = keeper.lock();
            waiting.remove(&run.uid);
            keeper
                .context
                .metrics
                .runs_awaiting_mirror
                .set(waiting.len() as i64);
        });
    }

    async fn handle(&self, kept: &Kept) -> Result<(), KeepError> {
        let context = &self.context;
        let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &kept.namespace);
        let run = {
            let _permit = self.turn().await;
            runs.get_opt(&kept.name)
                .await
                .map_err(|error| KeepError::Read(error.into()))?
        };
        let Some(run) = run.filter(|run| run.uid().as_deref() == Some(kept.uid.as_str())) else {
            return Ok(());
        };
        let settings = Settings {
            mirror: context.mirror.is_some(),
            grace: context.config.mirror_grace_period,
            now: Utc::now(),
        };
        match plan_step(&run, settings) {
            Step::Keep { .. } => self.store(&run).await,
            Step::ReleaseFinalizer => {
                let _permit = self.turn().await;
                remove_finalizer(&runs, &run)
                    .await
                    .map_err(KeepError::Release)
            }
            // Steps of the admission lane, which sees the run's next change.
            _ => Ok(()),
        }
    }

    async fn store(&self, run: &WorkflowRun) -> Result<(), KeepError> {
        let Some(mirror) = &self.context.mirror else {
            return Ok(());
        };
        let record = {
            let _permit = self.turn().await;
            self.observe_record(run).await.map_err(KeepError::Read)?
        };
        if let Some(record) = record {
            mirror
                .offer_tracked(MirrorEvent::Execution(record))?
                .wait()
                .await?;
        }
        let _permit = self.turn().await;
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
        let workflow = &run.spec.workflow_ref.name;
        let workflows: Api<Workflow> = Api::namespaced(context.client.clone(), &namespace);
        let current = self
            .workflows
            .get_or_read(&format!("{namespace}/{workflow}"), async {
                let found = workflows.get_opt(workflow).await?;
                Ok::<_, kube::Error>(found.and_then(|workflow| workflow.uid()))
            })
            .await?;
        let owner = crate::mirror_map::workflow_uid(run).map(|uid| uid.to_string());
        let gone = current.is_none() || current != owner;
        Ok(build_kept_record(run, workspace, snapshot.as_ref(), gone))
    }

    /// Marks the run `Mirrored` and removes the finalizer. The run handed
    /// over is tried first; it is read again only after a conflicting
    /// change.
    async fn release(&self, run: &WorkflowRun) -> Result<(), Error> {
        let context = &self.context;
        let runs: Api<WorkflowRun> =
            Api::namespaced(context.client.clone(), &run.namespace().unwrap_or_default());
        let mut current = run.clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
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
            match runs.get_opt(&run.name_any()).await? {
                Some(fresh)
                    if fresh.uid() == run.uid()
                        && fresh.finalizers().iter().any(|f| f == FINALIZER) =>
                {
                    current = fresh;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The grace period of a run being deleted is over and its final
    /// state is still not stored: releases the finalizer and records the
    /// loss. The run no longer counts as waiting for the mirror (a task
    /// still waiting for its commit finds the finalizer gone).
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

//! The mirror's front door: a bounded queue and the task that drains it.
//!
//! Callers hand events to a [`Mirror`] handle and go on; one background
//! writer batches them into transactions. Semantics:
//! - **Backpressure.** The queue holds [`MirrorConfig::capacity`] events.
//!   [`Mirror::offer`] never waits: on a full queue it answers
//!   [`OfferError::Full`] and schedules a resync, so a reconciler is never
//!   blocked by PostgreSQL (what it could not enqueue is re-read from the
//!   cluster later). [`Mirror::send`] waits for room: for the run API, whose
//!   node events and log lines exist nowhere else, so the wait propagates
//!   to the runner (which retries) instead of losing data.
//! - **Retries.** A transient database error (connection lost, server
//!   restarting, deadlock) retries the same batch with exponential backoff
//!   ([`MirrorConfig::backoff_initial`] doubling up to
//!   [`MirrorConfig::backoff_max`]); a batch is one transaction, and every
//!   write is an idempotent upsert, so a retried batch leaves each row
//!   exactly once. A permanent error splits the batch and retries event by
//!   event: the bad event is rejected (logged, counted, its tracker told),
//!   the rest are written. An event whose parent row is missing (a node of
//!   a run not mirrored yet) is parked and retried with later batches, up
//!   to [`MirrorConfig::max_parked_rounds`] times.
//! - **Resync.** After an outage ends, and after any [`OfferError::Full`],
//!   the writer asks the [`ResyncSource`] (implemented by the operator over
//!   its watch caches) for the cluster's state and writes it.
//!   A resync ends with an inventory of what exists, and rows of objects
//!   it lacks are marked deleted ([`super::sweep`]). Only one replica
//!   should resync: [`Mirror::pause_resync`] turns it off (a standby),
//!   [`Mirror::resync_now`] on again and asks for one (a new leader).
//! - **Visibility.** [`Mirror::backlog`] counts events accepted and not yet
//!   written (queued, in flight, parked); [`Mirror::stats`] has the rest;
//!   [`Mirror::changed`] wakes whoever follows them as they change.
//! - **Finished runs.** [`Mirror::offer_tracked`] returns a [`Commit`] that
//!   resolves once the event is committed: the run controller removes a
//!   finished run's finalizer only then, so no run is lost.
//!
//! The writer task ends when every handle is dropped and the queue is
//! drained. Nothing here knows about Kubernetes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::apply::apply_events;
use super::records::MirrorEvent;
use super::sanitize::Limits;
use super::{ErrorClass, WriteError, failed};

/// Tuning of the queue and writer.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    /// Events the queue holds before `offer` reports Full.
    pub capacity: usize,
    /// Events per transaction at most.
    pub max_batch: usize,
    /// How long the writer waits for more events to fill a batch.
    pub linger: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Batches a parked event is retried with before it is dropped.
    pub max_parked_rounds: u32,
    /// Payload limits applied to every row.
    pub limits: Limits,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            capacity: 10_000,
            max_batch: 5_000,
            linger: Duration::from_millis(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_parked_rounds: 50,
            limits: Limits::default(),
        }
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("failed to queue a mirror event: the queue is full")]
    Full,
    #[error("failed to queue a mirror event: the mirror has stopped")]
    Closed,
}

/// Why a tracked event was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("failed to write a mirror event: {0}")]
    Rejected(String),
    #[error("failed to write a mirror event: the mirror stopped first")]
    Stopped,
}

/// Resolves when a tracked event is committed (or rejected).
#[derive(Debug)]
pub struct Commit(oneshot::Receiver<Result<(), CommitError>>);

impl Commit {
    pub async fn wait(self) -> Result<(), CommitError> {
        self.0.await.unwrap_or(Err(CommitError::Stopped))
    }
}

/// Why a resync could not read the cluster.
#[derive(Debug, thiserror::Error)]
#[error("failed to read the cluster state for a mirror resync")]
pub struct ResyncError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The cluster's current state as mirror events: every namespace with Sluice
/// objects, Workflow, Schedule, Connection and WorkflowRun (and the node
/// catalog). Implemented by the operator over its reflector stores.
pub trait ResyncSource: Send + Sync + 'static {
    fn snapshot(&self) -> BoxFuture<'_, Result<Vec<MirrorEvent>, ResyncError>>;
}

/// A point-in-time copy of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Accepted and not yet written (queued, in flight or parked).
    pub backlog: usize,
    /// False from a transient error until the next successful write.
    pub connected: bool,
    pub written: u64,
    /// Transient failures, each followed by a retry.
    pub retries: u64,
    /// Events that can never be written (or waited too long for a parent).
    pub rejected: u64,
    /// Offers refused because the queue was full.
    pub refused: u64,
    pub parked: usize,
    /// Completed resyncs.
    pub resyncs: u64,
}

#[derive(Debug, Default)]
struct Shared {
    backlog: AtomicUsize,
    disconnected: AtomicBool,
    needs_resync: AtomicBool,
    resync_paused: AtomicBool,
    /// Woken when the backlog or the connection state changes.
    changed: tokio::sync::Notify,
    written: AtomicU64,
    retries: AtomicU64,
    rejected: AtomicU64,
    refused: AtomicU64,
    parked: AtomicUsize,
    resyncs: AtomicU64,
    /// Told when a write finds the schema missing (an empty database took
    /// the old one's place): whoever migrates waits on it.
    schema_lost: tokio::sync::Notify,
}

enum Envelope {
    Event(Box<Pending>),
    Flush(oneshot::Sender<()>),
}

struct Pending {
    event: MirrorEvent,
    commit: Option<oneshot::Sender<Result<(), CommitError>>>,
    parked_rounds: u32,
    /// Counted in the backlog (resync events are not).
    counted: bool,
}

impl Pending {
    fn new(event: MirrorEvent, commit: Option<oneshot::Sender<Result<(), CommitError>>>) -> Self {
        Pending {
            event,
            commit,
            parked_rounds: 0,
            counted: true,
        }
    }
}

/// Handle to the mirror; cheap to clone.
#[derive(Clone)]
pub struct Mirror {
    sender: mpsc::Sender<Envelope>,
    shared: Arc<Shared>,
    pool: PgPool,
}

impl Mirror {
    /// Starts the writer on the current tokio runtime.
    pub fn start(
        pool: PgPool,
        config: MirrorConfig,
        resync: Option<Arc<dyn ResyncSource>>,
    ) -> (Mirror, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            pool: pool.clone(),
            config,
            receiver,
            shared: shared.clone(),
            resync,
            parked: VecDeque::new(),
        };
        let task = tokio::spawn(writer.run());
        (
            Mirror {
                sender,
                shared,
                pool,
            },
            task,
        )
    }

    /// The database, for the few reads of what the mirror stored
    /// (a resumed run's reused outputs); writes go through the queue.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn enqueue_now(&self, pending: Pending) -> Result<(), OfferError> {
        self.shared.backlog.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(Envelope::Event(Box::new(pending))) {
            Ok(()) => {
                self.shared.changed.notify_one();
                Ok(())
            }
            Err(error) => {
                self.shared.backlog.fetch_sub(1, Ordering::SeqCst);
                match error {
                    mpsc::error::TrySendError::Full(_) => {
                        self.shared.refused.fetch_add(1, Ordering::Relaxed);
                        self.shared.needs_resync.store(true, Ordering::SeqCst);
                        Err(OfferError::Full)
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(OfferError::Closed),
                }
            }
        }
    }

    /// Queues an event without waiting. On `Full` the event is not queued
    /// and a resync from the cluster is scheduled.
    pub fn offer(&self, event: MirrorEvent) -> Result<(), OfferError> {
        self.enqueue_now(Pending::new(event, None))
    }

    /// As [`Mirror::offer`], with a [`Commit`] that resolves once the event
    /// is in the database.
    pub fn offer_tracked(&self, event: MirrorEvent) -> Result<Commit, OfferError> {
        let (commit, receiver) = oneshot::channel();
        self.enqueue_now(Pending::new(event, Some(commit)))?;
        Ok(Commit(receiver))
    }

    /// Queues an event, waiting while the queue is full.
    pub async fn send(&self, event: MirrorEvent) -> Result<(), OfferError> {
        self.shared.backlog.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .sender
            .send(Envelope::Event(Box::new(Pending::new(event, None))))
            .await;
        if sent.is_err() {
            self.shared.backlog.fetch_sub(1, Ordering::SeqCst);
            return Err(OfferError::Closed);
        }
        self.shared.changed.notify_one();
        Ok(())
    }

    /// Waits until every event queued before this call is committed,
    /// rejected or parked.
    pub async fn flush(&self) -> Result<(), OfferError> {
        let (done, wait) = oneshot::channel();
        self.sender
            .send(Envelope::Flush(done))
            .await
            .map_err(|_| OfferError::Closed)?;
        wait.await.map_err(|_| OfferError::Closed)
    }

    /// Completes when [`Mirror::stats`] may have changed (the backlog, the
    /// connection state) since the last call returned, at once if it did
    /// in between. For one follower: the operator's metrics.
    pub async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// Stops resyncs (a standby replica: the leader resyncs).
    pub fn pause_resync(&self) {
        self.shared.resync_paused.store(true, Ordering::SeqCst);
    }

    /// Resyncs from now on, starting at once (a replica that became leader:
    /// deletes made while no operator watched are found this way).
    pub fn resync_now(&self) {
        self.shared.resync_paused.store(false, Ordering::SeqCst);
        self.shared.needs_resync.store(true, Ordering::SeqCst);
        // An empty envelope would do, but the writer also looks for a
        // pending resync whenever it wakes; wake it with a flush.
        let _ = self.sender.try_send(Envelope::Flush(oneshot::channel().0));
    }

    /// Resolves when a write has found the schema missing since the last
    /// call: time to apply the migrations again.
    pub async fn schema_lost(&self) {
        self.shared.schema_lost.notified().await;
    }

    /// Events accepted and not yet written: the backlog metric.
    pub fn backlog(&self) -> usize {
        self.shared.backlog.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> MirrorStats {
        let shared = &self.shared;
        MirrorStats {
            backlog: shared.backlog.load(Ordering::SeqCst),
            connected: !shared.disconnected.load(Ordering::SeqCst),
            written: shared.written.load(Ordering::Relaxed),
            retries: shared.retries.load(Ordering::Relaxed),
            rejected: shared.rejected.load(Ordering::Relaxed),
            refused: shared.refused.load(Ordering::Relaxed),
            parked: shared.parked.load(Ordering::Relaxed),
            resyncs: shared.resyncs.load(Ordering::Relaxed),
        }
    }
}

struct Writer {
    pool: PgPool,
    config: MirrorConfig,
    receiver: mpsc::Receiver<Envelope>,
    shared: Arc<Shared>,
    resync: Option<Arc<dyn ResyncSource>>,
    parked: VecDeque<Pending>,
}

/// How a batch ended.
enum Outcome {
    Committed { orphans: Vec<usize> },
    Failed(WriteError),
}

impl Writer {
    async fn run(mut self) {
        let mut envelopes = Vec::with_capacity(self.config.max_batch);
        loop {
            let waiting_work =
                !self.parked.is_empty() || self.shared.needs_resync.load(Ordering::SeqCst);
            let received = if waiting_work {
                // Parked events and a pending resync are retried even when
                // nothing new arrives.
                tokio::time::timeout(
                    self.config.backoff_max.min(Duration::from_secs(1)),
                    self.receiver
                        .recv_many(&mut envelopes, self.config.max_batch),
                )
                .await
                .ok()
            } else {
                Some(
                    self.receiver
                        .recv_many(&mut envelopes, self.config.max_batch)
                        .await,
                )
            };
            if received == Some(0) {
                break; // every handle dropped and the queue is empty
            }
            self.linger(&mut envelopes).await;
            self.process(std::mem::take(&mut envelopes)).await;
        }
        // Last chance for parked events, then tell their trackers.
        if !self.parked.is_empty() {
            self.process(Vec::new()).await;
        }
        let parked: Vec<Pending> = self.parked.drain(..).collect();
        for pending in parked {
            self.finish(pending, Err(CommitError::Stopped));
        }
    }

    /// Waits up to `linger` for the batch to fill.
    async fn linger(&mut self, envelopes: &mut Vec<Envelope>) {
        if self.config.linger.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.config.linger;
        while envelopes.len() < self.config.max_batch {
            let room = self.config.max_batch - envelopes.len();
            match tokio::time::timeout_at(deadline, self.receiver.recv_many(envelopes, room)).await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    async fn process(&mut self, envelopes: Vec<Envelope>) {
        let mut batch: Vec<Pending> = self.parked.drain(..).collect();
        let mut flushes = Vec::new();
        for envelope in envelopes {
            match envelope {
                Envelope::Event(pending) => batch.push(*pending),
                Envelope::Flush(done) => flushes.push(done),
            }
        }
        self.shared.parked.store(0, Ordering::Relaxed);
        if !batch.is_empty() {
            self.write(batch).await;
        }
        if self.shared.needs_resync.swap(false, Ordering::SeqCst)
            && !self.shared.resync_paused.load(Ordering::SeqCst)
        {
            self.resync().await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    async fn try_write(&self, batch: &[Pending]) -> Outcome {
        let events: Vec<&MirrorEvent> = batch.iter().map(|pending| &pending.event).collect();
        let attempt = async {
            let mut transaction = self.pool.begin().await.map_err(failed("mirror batch"))?;
            let applied = apply_events(&mut transaction, &events, &self.config.limits).await?;
            transaction.commit().await.map_err(failed("mirror batch"))?;
            Ok::<_, WriteError>(applied)
        };
        match attempt.await {
            Ok(applied) => Outcome::Committed {
                orphans: applied.orphans,
            },
            Err(error) => Outcome::Failed(error),
        }
    }

    /// Writes a batch until it is committed, retrying transient errors
    /// with backoff; splits it on a permanent error.
    async fn write(&mut self, batch: Vec<Pending>) {
        let mut backoff = self.config.backoff_initial;
        loop {
            match self.try_write(&batch).await {
                Outcome::Committed { orphans } => {
                    self.reconnected();
                    self.settle(batch, &orphans);
                    return;
                }
                Outcome::Failed(error) if error.class() == ErrorClass::Transient => {
                    self.outage(&error, &mut backoff).await;
                }
                Outcome::Failed(error) => {
                    if batch.len() == 1 {
                        for pending in batch {
                            self.refuse(pending, &error);
                        }
                        return;
                    }
                    tracing::debug!(error = %error, size = batch.len(), "mirror batch failed; writing its events one by one");
                    for pending in batch {
                        Box::pin(self.write(vec![pending])).await;
                    }
                    return;
                }
            }
        }
    }

    async fn outage(&self, error: &WriteError, backoff: &mut Duration) {
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        if !self.shared.disconnected.swap(true, Ordering::SeqCst) {
            self.shared.changed.notify_one();
            tracing::warn!(error = %error, source = %error.source, "mirror lost the database; retrying with backoff");
        }
        if super::missing_schema(&error.source) {
            self.shared.schema_lost.notify_one();
        }
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(self.config.backoff_max);
    }

    /// After an outage the cluster may have moved on without us.
    fn reconnected(&self) {
        if self.shared.disconnected.swap(false, Ordering::SeqCst) {
            self.shared.changed.notify_one();
            tracing::info!("mirror reconnected to the database; resyncing from the cluster");
            self.shared.needs_resync.store(true, Ordering::SeqCst);
        }
    }

    /// Acknowledges the committed events and parks the orphans.
    fn settle(&mut self, batch: Vec<Pending>, orphans: &[usize]) {
        let mut orphans = orphans.iter().peekable();
        for (index, pending) in batch.into_iter().enumerate() {
            if orphans.peek() == Some(&&index) {
                orphans.next();
                self.park(pending);
            } else {
                self.shared.written.fetch_add(1, Ordering::Relaxed);
                self.finish(pending, Ok(()));
            }
        }
    }

    fn park(&mut self, mut pending: Pending) {
        pending.parked_rounds += 1;
        if pending.parked_rounds > self.config.max_parked_rounds {
            self.shared.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                event = event_kind(&pending.event),
                "mirror dropped an event whose parent row never appeared"
            );
            self.finish(
                pending,
                Err(CommitError::Rejected(
                    "its parent row never appeared".to_owned(),
                )),
            );
            return;
        }
        self.parked.push_back(pending);
        self.shared
            .parked
            .store(self.parked.len(), Ordering::Relaxed);
    }

    fn refuse(&mut self, pending: Pending, error: &WriteError) {
        if error.class() == ErrorClass::MissingParent {
            self.park(pending);
            return;
        }
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %error, source = %error.source, event = event_kind(&pending.event), "mirror rejected an event");
        let message = error.source.to_string();
        self.finish(pending, Err(CommitError::Rejected(message)));
    }

    fn finish(&self, pending: Pending, result: Result<(), CommitError>) {
        if pending.counted {
            self.shared.backlog.fetch_sub(1, Ordering::SeqCst);
            self.shared.changed.notify_one();
        }
        if let Some(commit) = pending.commit {
            let _ = commit.send(result);
        }
    }

    async fn resync(&mut self) {
        let Some(source) = self.resync.clone() else {
            return;
        };
        match source.snapshot().await {
            Ok(events) => {
                let count = events.len();
                let mut events = events.into_iter().peekable();
                while events.peek().is_some() {
                    let chunk: Vec<Pending> = events
                        .by_ref()
                        .take(self.config.max_batch.max(1))
                        .map(|event| Pending {
                            event,
                            commit: None,
                            parked_rounds: 0,
                            counted: false,
                        })
                        .collect();
                    self.write(chunk).await;
                }
                self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::info!(events = count, "mirror resynced from the cluster");
            }
            Err(error) => {
                tracing::warn!(error = %error, "mirror resync failed; trying again later");
                self.shared.needs_resync.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// A bounded label for logs.
fn event_kind(event: &MirrorEvent) -> &'static str {
    match event {
        MirrorEvent::Workspace(_) => "workspace",
        MirrorEvent::Workflow(_) => "workflow",
        MirrorEvent::Schedule(_) => "schedule",
        MirrorEvent::Connection(_) => "connection",
        MirrorEvent::Execution(_) => "execution",
        MirrorEvent::NodeExecution(_) => "node_execution",
        MirrorEvent::Log(_) => "log",
        MirrorEvent::NodeDefinition(_) => "node_definition",
        MirrorEvent::NodeType(_) => "node_type",
        MirrorEvent::NodeTypeDeleted(_) => "node_type_deleted",
        MirrorEvent::Audit(_) => "audit",
        MirrorEvent::SystemMetric(_) => "system_metric",
        MirrorEvent::Plan(_) => "plan",
        MirrorEvent::Subscription(_) => "subscription",
        MirrorEvent::Deleted(_) => "deleted",
        MirrorEvent::Inventory(_) => "inventory",
        MirrorEvent::Membership(_) => "membership",
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;

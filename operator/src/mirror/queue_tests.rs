//! Database tests of `queue.rs` (kept apart to keep that file short).

use std::sync::Mutex;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use futures::FutureExt;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::super::fixtures::*;
use super::super::records::*;
use super::*;

/// Stands in for the operator's watch caches.
#[derive(Default)]
struct FakeCluster {
    calls: AtomicUsize,
    state: Mutex<Vec<MirrorEvent>>,
}

impl ResyncSource for FakeCluster {
    fn snapshot(&self) -> BoxFuture<'_, Result<Vec<MirrorEvent>, ResyncError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let state = self.state.lock().unwrap().clone();
        async move { Ok(state) }.boxed()
    }
}

fn quick() -> MirrorConfig {
    MirrorConfig {
        linger: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..MirrorConfig::default()
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Polls until `check` holds; fails the test after 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn offered_events_are_written_and_the_backlog_drains(pool: PgPool) {
    let (mirror, task) = Mirror::start(pool.clone(), quick(), None);
    let run = execution(1, RunPhase::Running);
    for event in [
        MirrorEvent::Workspace(workspace()),
        MirrorEvent::Workflow(workflow()),
        MirrorEvent::Execution(run.clone()),
        MirrorEvent::NodeExecution(node(&run, "lookup", 0, NodePhase::Running)),
    ] {
        mirror.offer(event).unwrap();
    }
    mirror
        .send(MirrorEvent::Log(log(&run, 1, b"hello")))
        .await
        .unwrap();
    let commit = mirror
        .offer_tracked(MirrorEvent::Execution(execution(1, RunPhase::Succeeded)))
        .unwrap();
    commit.wait().await.unwrap();
    mirror.flush().await.unwrap();

    let stats = mirror.stats();
    assert_eq!((stats.backlog, stats.written, stats.rejected), (0, 6, 0));
    assert!(stats.connected);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM node_executions").await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM execution_logs").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM workflow_metrics").await,
        1
    );

    drop(mirror);
    task.await.unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_full_queue_refuses_without_blocking_and_resyncs(pool: PgPool) {
    let cluster = Arc::new(FakeCluster::default());
    *cluster.state.lock().unwrap() = vec![MirrorEvent::Workflow(workflow())];
    let config = MirrorConfig {
        capacity: 2,
        linger: Duration::ZERO,
        ..quick()
    };
    let (mirror, _task) = Mirror::start(pool.clone(), config, Some(cluster.clone()));

    // Stall the writer on its first event.
    let mut stall = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *stall)
        .await
        .unwrap();
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    eventually("the writer to take the first event", || async {
        mirror.backlog() == 1 && mirror.sender.capacity() == 2
    })
    .await;
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    assert_eq!(
        mirror.offer(MirrorEvent::Workspace(workspace())),
        Err(OfferError::Full)
    );
    assert_eq!(mirror.backlog(), 3);
    assert_eq!(mirror.stats().refused, 1);
    stall.rollback().await.unwrap();

    mirror.flush().await.unwrap();
    assert_eq!(cluster.calls.load(Ordering::SeqCst), 1);
    assert_eq!(mirror.stats().resyncs, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM workflows").await,
        1,
        "written by the resync"
    );
    assert_eq!(mirror.backlog(), 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_connection_killed_mid_batch_loses_and_duplicates_nothing(
    pool_options: PgPoolOptions,
    connect_options: PgConnectOptions,
) {
    let pool = pool_options
        .clone()
        .connect_with(connect_options.clone())
        .await
        .unwrap();
    let mirror_pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(connect_options.application_name("sluice-mirror-under-test"))
        .await
        .unwrap();
    let run = execution(1, RunPhase::Running);
    seed_runs(&pool, std::slice::from_ref(&run)).await;
    let cluster = Arc::new(FakeCluster::default());
    *cluster.state.lock().unwrap() = vec![MirrorEvent::Execution(run.clone())];
    let config = MirrorConfig {
        linger: Duration::from_millis(300),
        ..quick()
    };
    let (mirror, _task) = Mirror::start(mirror_pool, config, Some(cluster.clone()));

    // Log lines wait behind this lock, after the batch's node rows are in.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE execution_logs IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    for index in 0..1_000 {
        mirror
            .offer(MirrorEvent::NodeExecution(node(
                &run,
                &format!("tag-each[{index}]"),
                0,
                NodePhase::Succeeded,
            )))
            .unwrap();
    }
    for seq in 0..1_000 {
        mirror
            .offer(MirrorEvent::Log(log(
                &run,
                seq,
                format!("line {seq}").as_bytes(),
            )))
            .unwrap();
    }

    let started = Instant::now();
    let writer_pid: i32 = loop {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
             AND application_name = 'sluice-mirror-under-test' AND wait_event_type = 'Lock'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some(pid) = found {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the mirror never blocked on the log table"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Mid-batch: the same transaction has already written node rows.
    let wrote_nodes: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND granted
                        AND relation = 'node_executions'::regclass AND mode = 'RowExclusiveLock')",
    )
    .bind(writer_pid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(wrote_nodes);
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(writer_pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    blocker.rollback().await.unwrap();

    tokio::time::timeout(Duration::from_secs(60), mirror.flush())
        .await
        .unwrap()
        .unwrap();
    let stats = mirror.stats();
    assert!(stats.retries >= 1, "{stats:?}");
    assert!(stats.connected);
    assert_eq!(stats.backlog, 0);
    assert_eq!(stats.rejected, 0);
    assert_eq!(
        cluster.calls.load(Ordering::SeqCst),
        1,
        "one resync after reconnecting"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM node_executions").await,
        1_000
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT (execution_id, node_id, attempt)) FROM node_executions"
        )
        .await,
        1_000
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM execution_logs").await,
        1_000
    );
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT seq) FROM execution_logs").await,
        1_000
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM execution_logs WHERE node_execution_id IS NULL"
        )
        .await,
        1_000
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unwritable_event_is_rejected_alone(pool: PgPool) {
    let (mirror, _task) = Mirror::start(pool.clone(), quick(), None);
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    // Before 4713 BC: PostgreSQL's timestamptz cannot hold it.
    let ancient = Utc.with_ymd_and_hms(-10_000, 1, 1, 0, 0, 0).unwrap();
    let bad = mirror
        .offer_tracked(MirrorEvent::SystemMetric(SystemMetricRecord {
            metric_type: "ancient".into(),
            value: 1.0,
            unit: None,
            tags: json!({}),
            recorded_at: ancient,
        }))
        .unwrap();
    let good = mirror
        .offer_tracked(MirrorEvent::Workflow(workflow()))
        .unwrap();
    assert!(matches!(bad.wait().await, Err(CommitError::Rejected(_))));
    good.wait().await.unwrap();
    mirror.flush().await.unwrap();
    assert_eq!(mirror.stats().rejected, 1);
    assert_eq!(mirror.backlog(), 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM workflows").await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn orphans_wait_for_their_run(pool: PgPool) {
    let (mirror, _task) = Mirror::start(pool.clone(), quick(), None);
    let run = execution(1, RunPhase::Running);
    let node_written = mirror
        .offer_tracked(MirrorEvent::NodeExecution(node(
            &run,
            "lookup",
            0,
            NodePhase::Running,
        )))
        .unwrap();
    mirror
        .offer(MirrorEvent::Schedule(ScheduleRecord {
            uid: uid(20),
            workflow_uid: uid(10),
            name: "nightly".into(),
            cron: "@daily".into(),
            time_zone: "UTC".into(),
            active: true,
            next_run_at: None,
            last_run_at: None,
            created_at: None,
        }))
        .unwrap();
    mirror.flush().await.unwrap();
    assert_eq!(mirror.stats().parked, 2);
    assert_eq!(mirror.backlog(), 2);

    for event in [
        MirrorEvent::Workspace(workspace()),
        MirrorEvent::Workflow(workflow()),
        MirrorEvent::Execution(run),
    ] {
        mirror.offer(event).unwrap();
    }
    node_written.wait().await.unwrap();
    mirror.flush().await.unwrap();
    assert_eq!(mirror.backlog(), 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM node_executions").await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM workflow_schedules").await,
        1
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_paused_mirror_resyncs_only_once_told(pool: PgPool) {
    let cluster = Arc::new(FakeCluster::default());
    *cluster.state.lock().unwrap() = vec![MirrorEvent::Workflow(workflow())];
    let (mirror, _task) = Mirror::start(pool.clone(), quick(), Some(cluster.clone()));
    mirror.pause_resync();
    // What a full queue or a reconnect asks for: a standby ignores it.
    mirror.shared.needs_resync.store(true, Ordering::SeqCst);
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    mirror.flush().await.unwrap();
    assert_eq!(cluster.calls.load(Ordering::SeqCst), 0);

    mirror.resync_now();
    eventually("the resync a new leader asks for", || async {
        mirror.stats().resyncs == 1
    })
    .await;
    assert_eq!(count(&pool, "SELECT count(*) FROM workflows").await, 1);
}

#[tokio::test]
async fn the_stats_follower_is_woken_as_they_change() {
    // Nothing listens on port 1: every connection is refused.
    let unreachable = PgConnectOptions::new().host("127.0.0.1").port(1);
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy_with(unreachable);
    let (mirror, _task) = Mirror::start(pool, quick(), None);
    mirror.offer(MirrorEvent::Workspace(workspace())).unwrap();
    tokio::time::timeout(Duration::from_secs(10), mirror.changed())
        .await
        .expect("an accepted event wakes the follower");
    assert_eq!(mirror.stats().backlog, 1);
    tokio::time::timeout(Duration::from_secs(10), async {
        while mirror.stats().connected {
            mirror.changed().await;
        }
    })
    .await
    .expect("the failed write wakes the follower with the mirror down");
}

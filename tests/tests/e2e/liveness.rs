//! Day-2 liveness (issue 12) and catch-up (issue 20), through the real
//! operator and PostgreSQL: old runs never hold back new ones, a run's
//! history can always be written, finished runs need no operator to be
//! deleted, a run that cannot be stored is let go visibly after the grace
//! period, a new leader reaches waiting runs without listing the finished
//! ones, and a Workflow's `lastRun`/`runs` follow its runs.

use std::path::Path;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice_crds::{RunPhase, Workflow, WorkflowRun};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::operator::{Operator, OperatorOptions, TestDatabase, cluster, eventually};

use crate::operator_support::{Bed, quick_workflow, waiting_workflow};

const FINALIZER: &str = "sluice.dev/mirror";

/// Creates namespace `name`.
async fn create_namespace(cluster: &TestCluster, name: &str) {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("failed to create a namespace");
}

/// Waits until namespace `name` is gone.
async fn wait_namespace_gone(cluster: &TestCluster, name: &str) {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    eventually(&format!("namespace {name} to be gone"), || {
        let namespaces = namespaces.clone();
        async move { matches!(namespaces.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await;
}

async fn delete_namespace(cluster: &TestCluster, name: &str) {
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    namespaces
        .delete(name, &DeleteParams::background())
        .await
        .expect("failed to delete a namespace");
}

/// A run of `workflow` (whose UID is `workflow_uid`) that finished long
/// ago: Succeeded and recorded, optionally still holding the mirror
/// finalizer, as an earlier install would have left it.
async fn create_finished_run(
    runs: &Api<WorkflowRun>,
    name: &str,
    workflow: &str,
    workflow_uid: &str,
    finalizer: bool,
) {
    let mut metadata = json!({
        "name": name,
        "ownerReferences": [{
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
            "name": workflow, "uid": workflow_uid,
        }],
    });
    if finalizer {
        metadata["finalizers"] = json!([FINALIZER]);
    }
    let run: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": metadata,
        "spec": {"workflowRef": {"name": workflow}},
    }))
    .expect("a run");
    runs.create(&PostParams::default(), &run)
        .await
        .expect("failed to create a finished run");
    // A patch, not a replace: the garbage collector may already be deleting
    // a run whose owner is gone.
    let status = json!({"status": {
        "phase": "Succeeded",
        "workflowRevision": 1,
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:01Z",
        "conditions": [{
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "the run succeeded", "lastTransitionTime": "2026-01-01T00:00:01Z",
        }],
    }});
    runs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("failed to write a finished run's status");
}

async fn count(pool: &sqlx::PgPool, query: &'static str, uid: &str) -> i64 {
    sqlx::query_scalar(query)
        .bind(uuid::Uuid::parse_str(uid).expect("a uid"))
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

fn phase(run: &WorkflowRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_runs_being_deleted_never_hold_back_a_new_run_and_end_stored() {
    let cluster = cluster("liveness-stale")
        .await
        .expect("failed to start the test cluster");
    let database = TestDatabase::create()
        .await
        .expect("failed to create the test database");
    // Left by an earlier install that mirrored into another database: 60
    // finished runs, still with the finalizer, of a Workflow this database
    // has never seen (and that no longer exists).
    let stale = format!("{}-stale", cluster.namespace());
    create_namespace(&cluster, &stale).await;
    let stale_runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), &stale);
    let gone_uid = uuid::Uuid::new_v4().to_string();
    stream::iter(0..60)
        .for_each_concurrent(8, |index| {
            let stale_runs = stale_runs.clone();
            let gone_uid = gone_uid.clone();
            async move {
                create_finished_run(
                    &stale_runs,
                    &format!("old-{index:02}"),
                    "old",
                    &gone_uid,
                    true,
                )
                .await;
            }
        })
        .await;
    let mut options = OperatorOptions::with_database(&database);
    options.all_namespaces = true;
    let mut operator = Operator::start(&cluster, options)
        .await
        .expect("failed to start the operator");

    delete_namespace(&cluster, &stale).await;
    let bed_runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    cluster
        .apply_value(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
                   "metadata": {"name": "fresh"}, "spec": quick_workflow()}),
            Path::new("<test>"),
        )
        .await
        .expect("failed to apply the workflow");
    let run: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "new"}, "spec": {"workflowRef": {"name": "fresh"}},
    }))
    .expect("a run");
    bed_runs
        .create(&PostParams::default(), &run)
        .await
        .expect("failed to create the new run");
    eventually("the new run to succeed", || {
        let bed_runs = bed_runs.clone();
        async move {
            let run = bed_runs.get("new").await.ok()?;
            (phase(&run) == Some(RunPhase::Succeeded)).then_some(())
        }
    })
    .await;

    wait_namespace_gone(&cluster, &stale).await;
    let pool = database.pool();
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM workflow_executions WHERE workflow_id = $1 AND status = 'completed'",
            &gone_uid
        )
        .await,
        60,
        "every stale run's history is written"
    );
    let (name, status): (String, String) =
        sqlx::query_as("SELECT name, status::text FROM workflows WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&gone_uid).expect("a uid"))
            .fetch_one(pool)
            .await
            .expect("the stale runs' workflow row was created from the runs");
    assert_eq!((name.as_str(), status.as_str()), ("old", "archived"));
    let logs = operator.logs();
    assert!(
        !logs.contains("parent row never appeared"),
        "no event waited for a parent:\n{logs}"
    );
    operator.kill().await;
    database
        .finish()
        .await
        .expect("failed to drop the database");
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_in_place_of_the_old_one_gets_every_run_with_its_parents() {
    let bed = Bed::start("liveness-replaced-db").await;
    bed.apply_workflow("greeter", quick_workflow()).await;
    for index in 0..3 {
        bed.create_run(&format!("before-{index}"), "greeter", json!({}))
            .await;
    }
    for index in 0..3 {
        bed.wait_terminal(&format!("before-{index}"), RunPhase::Succeeded)
            .await;
        bed.wait_run(&format!("before-{index}"), "the finalizer gone", |run| {
            run.finalizers().is_empty()
        })
        .await;
    }
    bed.database
        .replace_with_empty()
        .await
        .expect("failed to replace the database");
    // The mirror notices the replaced database at its next write.
    bed.create_run("after", "greeter", json!({})).await;
    bed.wait_terminal("after", RunPhase::Succeeded).await;

    let runs = bed.runs().list(&ListParams::default()).await.expect("runs");
    let workflow = bed.workflows().get("greeter").await.expect("the workflow");
    let workflow_uid = workflow.uid().expect("a uid");
    let pool = bed.database.pool().clone();
    let uid = workflow_uid.clone();
    eventually("every run and its parents in the new database", || {
        let pool = pool.clone();
        let uid = uid.clone();
        let expected = runs.items.len() as i64;
        async move {
            let executions = count(
                &pool,
                "SELECT count(*) FROM workflow_executions WHERE workflow_id = $1 AND status = 'completed'",
                &uid,
            )
            .await;
            let workflows = count(&pool, "SELECT count(*) FROM workflows WHERE id = $1", &uid).await;
            let workspaces = count(
                &pool,
                "SELECT count(*) FROM workspaces w JOIN workflows f ON f.workspace_id = w.id WHERE f.id = $1",
                &uid,
            )
            .await;
            (executions == expected && workflows == 1 && workspaces == 1).then_some(())
        }
    })
    .await;
    assert_eq!(runs.items.len(), 4);
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_finished_runs_is_deleted_with_the_operator_scaled_to_zero() {
    let mut bed = Bed::start("liveness-no-operator").await;
    bed.apply_workflow("greeter", quick_workflow()).await;
    for index in 0..5 {
        bed.create_run(&format!("done-{index}"), "greeter", json!({}))
            .await;
    }
    for index in 0..5 {
        let name = format!("done-{index}");
        bed.wait_terminal(&name, RunPhase::Succeeded).await;
        let run = bed
            .wait_run(&name, "stored: Mirrored and no finalizer", |run| {
                run.finalizers().is_empty()
                    && run.status.as_ref().is_some_and(|status| {
                        status.conditions.iter().any(|c| {
                            c.type_ == "Mirrored" && c.status == sluice_crds::ConditionStatus::True
                        })
                    })
            })
            .await;
        assert!(run.metadata.deletion_timestamp.is_none());
    }
    bed.operator.kill().await;
    let namespace = bed.cluster.namespace().to_owned();
    delete_namespace(&bed.cluster, &namespace).await;
    wait_namespace_gone(&bed.cluster, &namespace).await;
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstorable_run_is_let_go_after_the_grace_with_event_metric_and_log() {
    let cluster = cluster("liveness-grace")
        .await
        .expect("failed to start the test cluster");
    // Nothing listens on port 1: the database is never reachable.
    let options = OperatorOptions {
        database_url: Some("postgres://postgres@127.0.0.1:1/none".into()),
        all_namespaces: true,
        env: vec![("SLUICE_MIRROR_GRACE_PERIOD".into(), "2s".into())],
        ..OperatorOptions::default()
    };
    let mut operator = Operator::start(&cluster, options)
        .await
        .expect("failed to start the operator");
    let doomed = format!("{}-doomed", cluster.namespace());
    create_namespace(&cluster, &doomed).await;
    let workflows: Api<Workflow> = Api::namespaced(cluster.client(), &doomed);
    let workflow: Workflow = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "slow"}, "spec": waiting_workflow("60s"),
    }))
    .expect("a workflow");
    workflows
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), &doomed);
    let run: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "unstorable"}, "spec": {"workflowRef": {"name": "slow"}},
    }))
    .expect("a run");
    runs.create(&PostParams::default(), &run)
        .await
        .expect("failed to create the run");
    let running = eventually("the run to be running with the finalizer", || {
        let runs = runs.clone();
        async move {
            let run = runs.get("unstorable").await.ok()?;
            (phase(&run) == Some(RunPhase::Running)
                && run.finalizers().iter().any(|f| f == FINALIZER))
            .then_some(run)
        }
    })
    .await;
    let uid = running.uid().expect("a uid");

    delete_namespace(&cluster, &doomed).await;
    wait_namespace_gone(&cluster, &doomed).await;

    let metrics = operator.metrics().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line.trim() == "sluice_runs_history_lost_total 1"),
        "{metrics}"
    );
    let logs = operator.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("released a deleted run") && line.contains(&uid))
        .unwrap_or_else(|| panic!("no loss line for the run in:\n{logs}"));
    let record: Value = serde_json::from_str(line).expect("the loss line is JSON");
    let status: Value = serde_json::from_str(
        record["fields"]["final_status"]
            .as_str()
            .expect("the line holds the final status"),
    )
    .expect("the final status is JSON");
    assert_eq!(status["phase"], "Running", "{line}");
    assert_eq!(status["jobName"].as_str().map(str::is_empty), Some(false));
    // The run's namespace is gone with its Events; the loss is recorded in
    // the operator's own namespace.
    let events: Api<Event> = Api::namespaced(cluster.client(), cluster.namespace());
    let lost: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some("HistoryLost"))
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].type_.as_deref(), Some("Warning"));
    let regarding = lost[0].regarding.clone().expect("regarding the run");
    assert_eq!(
        (regarding.name.as_deref(), regarding.namespace.as_deref()),
        (Some("unstorable"), Some(doomed.as_str()))
    );
    operator.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

/// The Workflow's `status.lastRun` and `status.runs`, once they satisfy `check`.
async fn wait_summary(bed: &Bed, what: &str, check: impl Fn(&Value) -> bool) {
    let workflows = bed.workflows();
    let check = &check;
    eventually(&format!("the workflow's summary: {what}"), || {
        let workflows = workflows.clone();
        async move {
            let workflow = workflows.get("greeter").await.ok()?;
            let status = serde_json::to_value(workflow.status?).ok()?;
            check(&status).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_run_and_run_counts_follow_the_runs() {
    let bed = Bed::start("liveness-last-run").await;
    bed.apply_workflow("greeter", quick_workflow()).await;
    bed.apply_workflow("slow", waiting_workflow("60s")).await;
    bed.create_run("first", "greeter", json!({})).await;
    bed.wait_terminal("first", RunPhase::Succeeded).await;
    wait_summary(&bed, "first succeeded", |status| {
        status["lastRun"]["name"] == "first"
            && status["lastRun"]["phase"] == "Succeeded"
            && status["lastRun"]["startTime"].is_string()
            && status["runs"] == json!({"active": 0, "succeeded": 1, "failed": 0, "cancelled": 0})
    })
    .await;
    bed.create_run("second", "greeter", json!({"cancel": true}))
        .await;
    wait_summary(&bed, "second cancelled", |status| {
        status["lastRun"]["name"] == "second"
            && status["lastRun"]["phase"] == "Cancelled"
            && status["runs"] == json!({"active": 0, "succeeded": 1, "failed": 0, "cancelled": 1})
    })
    .await;
    bed.runs()
        .delete("first", &DeleteParams::default())
        .await
        .expect("failed to delete a run");
    wait_summary(&bed, "first deleted", |status| {
        status["runs"] == json!({"active": 0, "succeeded": 0, "failed": 0, "cancelled": 1})
    })
    .await;
    // Another workflow's runs do not count.
    bed.create_run("elsewhere", "slow", json!({})).await;
    bed.wait_run("elsewhere", "running", |run| {
        phase(run) == Some(RunPhase::Running)
    })
    .await;
    let greeter = bed.workflows().get("greeter").await.expect("the workflow");
    assert_eq!(
        greeter
            .status
            .and_then(|s| s.last_run)
            .map(|last| last.name),
        Some("second".to_owned())
    );
    bed.finish().await;
}

/// Creates `count` finished runs of `workflow` (no finalizer: stored long ago).
async fn create_finished_runs(runs: &Api<WorkflowRun>, workflow: &Workflow, count: usize) {
    let uid = workflow.uid().expect("a uid");
    stream::iter(0..count)
        .for_each_concurrent(16, |index| {
            let runs = runs.clone();
            let uid = uid.clone();
            async move {
                create_finished_run(&runs, &format!("kept-{index:05}"), "catch-up", &uid, false)
                    .await;
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_starts_waiting_runs_without_listing_the_finished_ones() {
    const FINISHED: usize = 2_000;
    const WAITING: usize = 50;
    let cluster = cluster("catch-up")
        .await
        .expect("failed to start the test cluster");
    let replica = |identity: &str| OperatorOptions {
        leader_election: true,
        identity: identity.to_string(),
        ..OperatorOptions::default()
    };
    let mut first = Operator::start(&cluster, replica("replica-a"))
        .await
        .expect("failed to start replica a");
    first.wait_leader().await.expect("replica a leads");
    let workflows: Api<Workflow> = Api::namespaced(cluster.client(), cluster.namespace());
    let mut spec = waiting_workflow("60s");
    spec["historyLimits"] = json!({"successful": 5000, "failed": 5000});
    let workflow: Workflow = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "catch-up"}, "spec": spec,
    }))
    .expect("a workflow");
    let workflow = workflows
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    create_finished_runs(&runs, &workflow, FINISHED).await;
    first.kill().await;
    // Created while no replica leads.
    for index in 0..WAITING {
        let run: WorkflowRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": format!("waiting-{index:02}")},
            "spec": {"workflowRef": {"name": "catch-up"}},
        }))
        .expect("a run");
        runs.create(&PostParams::default(), &run)
            .await
            .expect("failed to create a waiting run");
    }
    let stand_in = cluster.stand_in().expect(
        "this test counts LIST calls on the API server stand-in; unset SLUICE_E2E_KUBECONFIG",
    );
    let lists_before = stand_in.list_requests("workflowruns");
    let pages_before = stand_in.list_continuations("workflowruns");
    let mut second = Operator::start(&cluster, replica("replica-b"))
        .await
        .expect("failed to start replica b");
    second.wait_leader().await.expect("replica b takes over");
    // Polled with GETs: only the operator's LISTs are counted.
    eventually("all waiting runs to start under the new leader", || {
        let runs = runs.clone();
        async move {
            for index in 0..WAITING {
                let run = runs.get(&format!("waiting-{index:02}")).await.ok()?;
                if phase(&run) != Some(RunPhase::Running) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let lists = stand_in.list_requests("workflowruns") - lists_before;
    eprintln!(
        "workflowruns LISTs of the new leader with {FINISHED} finished runs kept: {lists} (plus {} continuation pages)",
        stand_in.list_continuations("workflowruns") - pages_before
    );
    // Its watches' initial lists (run controller, schedules, audit; a
    // paginated LIST counts once), not one per finished run (history limits
    // once listed the namespace for each).
    assert!(
        lists <= 10,
        "the new leader listed runs {lists} times with {FINISHED} finished runs kept"
    );
    second.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

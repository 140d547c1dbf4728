//! Benchmarks of issues 12 and 20 (see the list in `operator.rs`):
//!
//! - `stuck`: run created → Job seen, open-loop at `SLUICE_BENCH_RATE`
//!   (default 100) per second for `SLUICE_BENCH_SECONDS` (default 10),
//!   while `SLUICE_BENCH_STUCK` (default 1,000) finished runs sit in
//!   deletion, holding the mirror finalizer, their workflow unknown to the
//!   (real, fresh) database. Also reports how many were still in deletion
//!   when the load ended. `SLUICE_BENCH_SETTLED=1` makes the same number of
//!   finished runs settled instead (no finalizer, not deleted, no owner):
//!   the cost of the objects alone, for comparison.
//! - `catchup`: `SLUICE_BENCH_KEPT` (default 10,000) finished runs kept and
//!   `SLUICE_BENCH_WAITING` (default 100) runs created while no operator
//!   runs; then the operator starts (leading at once) and the time from its
//!   start to a Job for every waiting run is measured (process start-up
//!   included: an upper bound of the time from taking leadership).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sluice_crds::{Workflow, WorkflowRun};
use sluice_e2e::operator::{Operator, OperatorOptions, TestDatabase, cluster};

use super::{IN_FLIGHT, env_number, summary, watch_sightings, workflow_manifest};

/// Creates `count` finished runs named `<prefix>-NNNNN` of `workflow`
/// (owned by the Workflow with `workflow_uid` when there is one),
/// optionally holding the mirror finalizer.
async fn create_finished(
    runs: &Api<WorkflowRun>,
    prefix: &str,
    workflow: &str,
    workflow_uid: Option<&str>,
    count: usize,
    finalizer: bool,
) {
    stream::iter(0..count)
        .map(|index| {
            let runs = runs.clone();
            let name = format!("{prefix}-{index:05}");
            let owners = workflow_uid.map(|uid| {
                json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
                    "name": workflow, "uid": uid}])
            });
            let mut metadata = json!({"name": name, "ownerReferences": owners.unwrap_or_else(|| json!([]))});
            if finalizer {
                metadata["finalizers"] = json!(["sluice.dev/mirror"]);
            }
            let run: WorkflowRun = serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
                "metadata": metadata, "spec": {"workflowRef": {"name": workflow}},
            }))
            .expect("a valid WorkflowRun");
            async move {
                runs.create(&PostParams::default(), &run).await?;
                let status = json!({"status": {
                    "phase": "Succeeded", "workflowRevision": 1,
                    "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:01Z",
                    "conditions": [{"type": "Completed", "status": "True", "reason": "Succeeded",
                        "message": "the run succeeded", "lastTransitionTime": "2026-01-01T00:00:01Z"}],
                }});
                runs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("failed to create a finished run");
}

/// Issue 12: admission latency while runs sit in deletion.
pub async fn stuck() {
    let rate = env_number("SLUICE_BENCH_RATE", 100);
    let seconds = env_number("SLUICE_BENCH_SECONDS", 10);
    let stuck = env_number("SLUICE_BENCH_STUCK", 1_000) as usize;
    let cluster = cluster("bench-stuck")
        .await
        .expect("failed to start the cluster");
    let database = TestDatabase::create()
        .await
        .expect("failed to create a database (PostgreSQL on DATABASE_URL)");
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    let gone = uuid::Uuid::new_v4().to_string();
    let settled = std::env::var("SLUICE_BENCH_SETTLED").is_ok_and(|value| value == "1");
    // Settled runs have no owner: the collector would delete them.
    let owner = (!settled).then_some(gone.as_str());
    create_finished(&runs, "stuck", "gone", owner, stuck, !settled).await;
    stream::iter(0..if settled { 0 } else { stuck })
        .map(|index| {
            let runs = runs.clone();
            async move {
                runs.delete(&format!("stuck-{index:05}"), &DeleteParams::default())
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("failed to delete a stuck run");
    let mut operator = Operator::start(&cluster, OperatorOptions::with_database(&database))
        .await
        .expect("failed to start the operator");
    let workflows: Api<Workflow> = Api::namespaced(cluster.client(), cluster.namespace());
    let workflow: Workflow =
        serde_json::from_value(workflow_manifest("trivial")).expect("a valid Workflow");
    workflows
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    loop {
        let workflow = workflows.get("trivial").await.expect("the workflow");
        if workflow
            .status
            .and_then(|s| s.observed_generation)
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (seen, watch) = watch_sightings(Api::<Job>::namespaced(
        cluster.client(),
        cluster.namespace(),
    ));
    let total = rate * seconds;
    let mut clock = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut creations = Vec::with_capacity(total as usize);
    for index in 0..total {
        clock.tick().await;
        let runs = runs.clone();
        creations.push(tokio::spawn(async move {
            let name = format!("run-{index:05}");
            let run: WorkflowRun = serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
                "metadata": {"name": name}, "spec": {"workflowRef": {"name": "trivial"}},
            }))
            .expect("a valid WorkflowRun");
            runs.create(&PostParams::default(), &run)
                .await
                .expect("failed to create a run");
            (name, Instant::now())
        }));
    }
    let mut created = vec![];
    for creation in creations {
        created.push(creation.await.expect("a creation task"));
    }
    let still_stuck = runs
        .list(&Default::default())
        .await
        .expect("runs")
        .items
        .iter()
        .filter(|run| run.metadata.deletion_timestamp.is_some())
        .count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let missing = {
            let seen = seen.lock().expect("not poisoned");
            created
                .iter()
                .filter(|(name, _)| !seen.contains_key(&sluice_operator::names::job_name(name)))
                .count()
        };
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let seen = seen.lock().expect("not poisoned").clone();
    let mut latencies: Vec<f64> = created
        .iter()
        .filter_map(|(name, answered)| {
            let job_seen = seen.get(&sluice_operator::names::job_name(name))?;
            Some(job_seen.saturating_duration_since(*answered).as_secs_f64() * 1000.0)
        })
        .collect();
    println!(
        "stuck: {total} runs at {rate}/s while {stuck} finished runs {}",
        if settled {
            "were kept, settled (no finalizer, not deleted)".to_owned()
        } else {
            format!(
                "sat in deletion with no database rows ({still_stuck} still in deletion when the load ended)"
            )
        }
    );
    println!(
        "stuck: run created → Job seen: {} ({} of {total} got a Job)",
        summary(&mut latencies),
        latencies.len()
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

/// Issue 20: a new leader's catch-up with many finished runs kept.
pub async fn catchup() {
    let kept = env_number("SLUICE_BENCH_KEPT", 10_000) as usize;
    let waiting = env_number("SLUICE_BENCH_WAITING", 100) as usize;
    let cluster = cluster("bench-catchup")
        .await
        .expect("failed to start the cluster");
    let workflows: Api<Workflow> = Api::namespaced(cluster.client(), cluster.namespace());
    let mut manifest = workflow_manifest("kept");
    manifest["spec"]["historyLimits"] = json!({"successful": kept + 1, "failed": kept + 1});
    let workflow: Workflow = serde_json::from_value(manifest).expect("a valid Workflow");
    let workflow = workflows
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    let uid = workflow.metadata.uid.clone().expect("a uid");
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    let started = Instant::now();
    create_finished(&runs, "kept", "kept", Some(&uid), kept, false).await;
    println!(
        "catchup: {kept} finished runs created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let names: Vec<String> = (0..waiting).map(|i| format!("waiting-{i:03}")).collect();
    for name in &names {
        let run: WorkflowRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": name}, "spec": {"workflowRef": {"name": "kept"}},
        }))
        .expect("a valid WorkflowRun");
        runs.create(&PostParams::default(), &run)
            .await
            .expect("failed to create a waiting run");
    }
    let (seen, watch) = watch_sightings(Api::<Job>::namespaced(
        cluster.client(),
        cluster.namespace(),
    ));
    let lists_before = cluster.stand_in().map(|server| {
        (
            server.list_requests("workflowruns"),
            server.list_continuations("workflowruns"),
        )
    });
    let leading = Instant::now();
    let mut operator = Operator::start(&cluster, OperatorOptions::default())
        .await
        .expect("failed to start the operator");
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let count = {
            let seen = seen.lock().expect("not poisoned");
            names
                .iter()
                .filter(|name| seen.contains_key(&sluice_operator::names::job_name(name)))
                .count()
        };
        if count == waiting {
            break Some(leading.elapsed());
        }
        if Instant::now() > deadline {
            println!("catchup: only {count} of {waiting} runs got a Job within 600 s");
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    watch.abort();
    if let Some(done) = done {
        println!(
            "catchup: operator start → a Job for all {waiting} waiting runs with {kept} finished runs kept: {:.2} s",
            done.as_secs_f64()
        );
    }
    if let (Some((lists, pages)), Some(server)) = (lists_before, cluster.stand_in()) {
        println!(
            "catchup: workflowruns LISTs by the operator: {} (plus {} continuation pages)",
            server.list_requests("workflowruns") - lists,
            server.list_continuations("workflowruns") - pages
        );
    }
    operator.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

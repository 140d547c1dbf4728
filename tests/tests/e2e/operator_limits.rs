//! The operator's limits on the test bed: concurrency (Forbid, Queue in
//! priority order), history limits (run objects go, PostgreSQL keeps
//! them), and Jobs that die of OOM or their deadline.

use crate::operator_support::{Bed, quick_workflow};
use serde_json::json;
use sluice_crds::RunPhase;
use sluice_e2e::operator::eventually;

/// A workflow whose single shell step sleeps `.input.seconds`.
fn sleeping_workflow(concurrency: serde_json::Value) -> serde_json::Value {
    json!({
        "concurrency": concurrency,
        "nodes": [{"name": "nap", "shell": {
            "script": "sleep \"$NAP\"",
            "env": {"NAP": "${{ .input.seconds // 0 }}"},
        }}],
    })
}

async fn cancel(bed: &Bed, name: &str) {
    bed.runs()
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .expect("failed to cancel a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_forbid_refuses_a_second_run() {
    let bed = Bed::start("concurrency-forbid").await;
    bed.apply_workflow(
        "single",
        sleeping_workflow(json!({"limit": 1, "policy": "Forbid"})),
    )
    .await;
    bed.create_run("first", "single", json!({"input": {"seconds": 60}}))
        .await;
    bed.wait_run("first", "Running", |run| {
        run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Running)
    })
    .await;
    bed.create_run("second", "single", json!({})).await;
    let second = bed.wait_terminal("second", RunPhase::Failed).await;
    let status = second.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("ConcurrencyLimit"));
    assert!(status.job_name.is_none(), "a refused run gets no job");
    cancel(&bed, "first").await;
    bed.wait_terminal("first", RunPhase::Cancelled).await;
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_queue_starts_waiting_runs_in_priority_order() {
    let bed = Bed::start("concurrency-queue").await;
    bed.apply_workflow(
        "one-at-a-time",
        sleeping_workflow(json!({"limit": 1, "policy": "Queue"})),
    )
    .await;
    bed.create_run("holder", "one-at-a-time", json!({"input": {"seconds": 60}}))
        .await;
    bed.wait_run("holder", "Running", |run| {
        run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Running)
    })
    .await;
    bed.create_run("low", "one-at-a-time", json!({"priority": 1}))
        .await;
    bed.create_run("high", "one-at-a-time", json!({"priority": 5}))
        .await;
    for name in ["low", "high"] {
        let queued = bed
            .wait_run(name, "Queued", |run| {
                run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Queued)
            })
            .await;
        assert_eq!(
            queued.status.and_then(|s| s.reason).as_deref(),
            Some("ConcurrencyLimit")
        );
    }
    // Both wait: the higher priority is first in line.
    let high = bed
        .wait_run("high", "queue position 1", |run| {
            run.status.as_ref().and_then(|s| s.queue_position) == Some(1)
        })
        .await;
    assert_eq!(high.status.and_then(|s| s.phase), Some(RunPhase::Queued));

    cancel(&bed, "holder").await;
    bed.wait_terminal("holder", RunPhase::Cancelled).await;
    let high = bed.wait_terminal("high", RunPhase::Succeeded).await;
    let low = bed.wait_terminal("low", RunPhase::Succeeded).await;
    let high_started = high.status.and_then(|s| s.start_time).expect("started");
    let low_started = low.status.and_then(|s| s.start_time).expect("started");
    assert!(
        high_started <= low_started,
        "the higher priority run starts first ({high_started} vs {low_started})"
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_delete_old_runs_but_postgres_keeps_them() {
    let bed = Bed::start("history-limits").await;
    let mut spec = quick_workflow();
    spec["historyLimits"] = json!({"successful": 2});
    bed.apply_workflow("kept", spec).await;
    let mut uids = Vec::new();
    for index in 0..5 {
        let name = format!("kept-{index}");
        let run = bed
            .create_run(
                &name,
                "kept",
                json!({"input": {"name": format!("n{index}")}}),
            )
            .await;
        uids.push(run.metadata.uid.expect("uid"));
        // One after the other, so "the two newest" is well defined.
        bed.wait_run(&name, "finished or collected", |run| {
            run.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(RunPhase::is_terminal)
        })
        .await;
    }
    let pool = bed.database.pool();
    eventually("five completed executions in PostgreSQL", || async move {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM workflow_executions WHERE status = 'completed'")
                .fetch_one(pool)
                .await
                .ok()?;
        (count == 5).then_some(())
    })
    .await;
    let remaining = eventually("two runs left", || {
        let bed = &bed;
        async move {
            let names = bed.run_names().await;
            (names.len() == 2).then_some(names)
        }
    })
    .await;
    assert_eq!(remaining, ["kept-3", "kept-4"]);
    for uid in &uids {
        let (nodes,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM node_executions WHERE execution_id = $1::uuid")
                .bind(uid)
                .fetch_one(pool)
                .await
                .expect("failed to count node rows");
        assert_eq!(nodes, 2, "run {uid} keeps both node rows");
    }
    bed.finish().await;
}

async fn job_failure_fails_the_run(test: &str, failure: &str) {
    let bed = Bed::start(test).await;
    let mut spec = quick_workflow();
    spec["activeDeadlineSeconds"] = json!(30);
    bed.apply_workflow("doomed", spec).await;
    let run_name = "doomed-1";
    bed.cluster
        .kubelet()
        .expect("the kubelet emulator runs the job")
        .simulate(&sluice_operator::names::job_name(run_name), failure);
    bed.create_run(run_name, "doomed", json!({})).await;
    let run = bed.wait_terminal(run_name, RunPhase::Failed).await;
    let status = run.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some(failure), "{status:?}");
    assert!(status.message.is_some_and(|message| !message.is_empty()));
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_job_fails_the_run_with_reason_oom_killed() {
    job_failure_fails_the_run("job-oom", "OOMKilled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_fails_the_run_with_reason_deadline_exceeded() {
    job_failure_fails_the_run("job-deadline", "DeadlineExceeded").await;
}

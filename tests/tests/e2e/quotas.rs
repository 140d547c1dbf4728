//! Plans on the test bed: a namespace's concurrent-runs limit holds a burst
//! back (never more than the limit running, the rest later), a daily limit
//! refuses the next run (in status, an Event and the admission webhook's
//! answer) with the time it resets, and the namespace's label moves its
//! subscription rows.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sluice_crds::{RunPhase, WorkflowRun};
use sluice_e2e::operator::eventually;

use crate::operator_support::{Bed, quick_workflow};

/// Creates a Plan (cluster-scoped: named after the test's namespace, so
/// tests sharing a real cluster never share plans).
async fn create_plan(bed: &Bed, suffix: &str, limits: serde_json::Value) -> String {
    let name = format!("{}-{suffix}", bed.cluster.namespace());
    bed.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Plan",
        "metadata": {"name": name},
        "spec": {"description": "end-to-end test plan", "limits": limits},
    }))
    .await;
    name
}

/// Sets (or, with None, removes) the namespace's `sluice.dev/plan` label.
async fn label_namespace(bed: &Bed, plan: Option<&str>) {
    let namespaces: Api<Namespace> = Api::all(bed.cluster.client());
    let patch = json!({"metadata": {"labels": {"sluice.dev/plan": plan}}});
    namespaces
        .patch(
            bed.cluster.namespace(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("failed to label the namespace");
}

/// The namespace's subscription rows: (plan, status, ended), oldest first.
async fn subscriptions(bed: &Bed) -> Vec<(String, String, bool)> {
    sqlx::query_as(
        "SELECT s.plan_id, s.status, s.current_period_end IS NOT NULL
         FROM subscriptions s JOIN workspaces w ON w.id = s.workspace_id
         WHERE w.name = $1 ORDER BY s.current_period_start",
    )
    .bind(bed.cluster.namespace())
    .fetch_all(bed.database.pool())
    .await
    .unwrap_or_default()
}

/// Waits until the operator has seen `plan` and the namespace's label
/// naming it: both watches have written their rows.
async fn wait_subscribed(bed: &Bed, plan: &str) {
    let pool = bed.database.pool();
    eventually(&format!("plan {plan} mirrored"), || async move {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM billing_plans WHERE name = $1 AND is_active")
                .bind(plan)
                .fetch_one(pool)
                .await
                .ok()?;
        (count == 1).then_some(())
    })
    .await;
    eventually(&format!("namespace subscribed to {plan}"), || async move {
        subscriptions(bed)
            .await
            .iter()
            .any(|(name, status, _)| name == plan && status == "active")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_twenty_runs_never_has_more_than_three_running() {
    let bed = Bed::start("quota-burst").await;
    let plan = create_plan(&bed, "three", json!({"concurrentRuns": 3})).await;
    label_namespace(&bed, Some(&plan)).await;
    wait_subscribed(&bed, &plan).await;
    bed.apply_workflow(
        "nap",
        json!({
            "historyLimits": {"successful": 50},
            "nodes": [{"name": "nap", "shell": {"script": "sleep 1"}}],
        }),
    )
    .await;

    // Every phase change of every run, in the API server's order.
    let mut changes = watcher(bed.runs(), watcher::Config::default())
        .applied_objects()
        .boxed();
    for index in 0..20 {
        bed.create_run(&format!("burst-{index:02}"), "nap", json!({}))
            .await;
    }
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(240);
    while finished.len() < 20 {
        let change = tokio::time::timeout_at(deadline, changes.next())
            .await
            .unwrap_or_else(|_| {
                panic!("the burst did not finish: {finished:?} finished, {running:?} running")
            })
            .expect("the run watch ended")
            .expect("the run watch failed");
        let name = kube::ResourceExt::name_any(&change);
        let status = change.status.clone().unwrap_or_default();
        if status.reason.as_deref() == Some("QuotaExceeded") {
            held.insert(name.clone());
        }
        match status.phase {
            Some(RunPhase::Running) => {
                running.insert(name);
            }
            Some(phase) if phase.is_terminal() => {
                assert_eq!(phase, RunPhase::Succeeded, "run {name}: {status:?}");
                running.remove(&name);
                finished.insert(name);
            }
            _ => {}
        }
        most = most.max(running.len());
        assert!(most <= 3, "more than 3 runs running at once: {running:?}");
    }
    assert_eq!(most, 3, "the limit was used to the full");
    assert!(
        held.len() >= 10,
        "most of the burst waited with reason QuotaExceeded: {held:?}"
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let created = jobs
        .list(&Default::default())
        .await
        .expect("failed to list jobs")
        .items
        .len();
    assert_eq!(created, 20, "one Job per run, each created once");
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_limit_refuses_the_next_run_with_the_reset_time() {
    // Certificates checked every second: the webhooks installed below get
    // their CA at once.
    let bed =
        Bed::start_with_env("quota-daily", &[("SLUICE_ADMISSION_CHECK_INTERVAL", "1s")]).await;
    let plan = create_plan(&bed, "two-a-day", json!({"runsPerDay": 2})).await;
    label_namespace(&bed, Some(&plan)).await;
    wait_subscribed(&bed, &plan).await;
    bed.apply_workflow("quick", quick_workflow()).await;
    for name in ["first", "second"] {
        bed.create_run(name, "quick", json!({})).await;
        bed.wait_terminal(name, RunPhase::Succeeded).await;
    }
    let tomorrow = (Utc::now().date_naive() + Duration::days(1)).format("%Y-%m-%dT00:00:00Z");
    bed.create_run("third", "quick", json!({})).await;
    let third = bed.wait_terminal("third", RunPhase::Failed).await;
    let status = third.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("QuotaExceeded"));
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains(&format!(
            "plan {plan:?} allows 2 runs per day (spec.limits.runsPerDay) and this namespace has started 2 today (UTC); the limit resets at {tomorrow}"
        )),
        "{message}"
    );
    assert!(status.job_name.is_none(), "a refused run gets no job");
    let events = bed.events_about("third").await;
    assert!(
        events
            .iter()
            .any(|event| event.reason.as_deref() == Some("QuotaExceeded")
                && event
                    .note
                    .as_deref()
                    .is_some_and(|note| note.contains("resets at"))),
        "{events:?}"
    );

    // With the admission webhook installed, the API server refuses the
    // next run outright, with the same words.
    crate::admission::install_webhooks(&bed.cluster, &bed.operator).await;
    let fourth: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "fourth"},
        "spec": {"workflowRef": {"name": "quick"}},
    }))
    .expect("a valid run");
    let refused = bed
        .runs()
        .create(&PostParams::default(), &fourth)
        .await
        .expect_err("the webhook refuses a run over the daily limit");
    let text = refused.to_string();
    assert!(text.contains("QuotaExceeded"), "{text}");
    assert!(text.contains(&format!("resets at {tomorrow}")), "{text}");
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_label_changes_the_subscription_rows() {
    let bed = Bed::start("quota-label").await;
    let small = create_plan(&bed, "small", json!({"runsPerMonth": 100})).await;
    let large = create_plan(&bed, "large", json!({"runsPerMonth": 10000})).await;
    // A workspace row exists once a Sluice object is mirrored.
    bed.apply_workflow("quick", quick_workflow()).await;
    label_namespace(&bed, Some(&small)).await;
    wait_subscribed(&bed, &small).await;
    label_namespace(&bed, Some(&large)).await;
    wait_subscribed(&bed, &large).await;
    let timeline: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT plan_id, current_period_start::text, COALESCE(current_period_end::text, '')
         FROM subscriptions ORDER BY current_period_start",
    )
    .fetch_all(bed.database.pool())
    .await
    .unwrap_or_default();
    assert_eq!(
        subscriptions(&bed).await,
        [
            (small.clone(), "cancelled".to_owned(), true),
            (large.clone(), "active".to_owned(), false),
        ],
        "{timeline:?}"
    );
    label_namespace(&bed, None).await;
    eventually("the subscription ended", || {
        let bed = &bed;
        async move {
            subscriptions(bed)
                .await
                .iter()
                .all(|(_, status, ended)| status == "cancelled" && *ended)
                .then_some(())
        }
    })
    .await;
    assert_eq!(subscriptions(&bed).await.len(), 2);
    let limits: (serde_json::Value,) =
        sqlx::query_as("SELECT limits FROM billing_plans WHERE name = $1")
            .bind(&large)
            .fetch_one(bed.database.pool())
            .await
            .expect("the plan's row");
    assert_eq!(limits.0, json!({"runsPerMonth": 10000}));
    bed.finish().await;
}

//! The operator under churn: a leader stopped gracefully hands its Lease
//! to the standby before it exits, and the mirror follows deletions, both
//! watched (a deleted namespace) and unwatched (a Workflow deleted while no
//! operator ran).

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sluice_crds::Workflow;
use sluice_e2e::operator::{Operator, OperatorOptions, TestDatabase, cluster, eventually};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::operator_support::{Bed, quick_workflow};

const LEASE: &str = sluice_operator::leader::LEASE_NAME;

fn replica(identity: &str) -> OperatorOptions {
    OperatorOptions {
        leader_election: true,
        identity: identity.to_string(),
        ..OperatorOptions::default()
    }
}

/// The value of an unlabelled sample in `/metrics` text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_gracefully_hands_the_lease_to_the_standby_before_it_exits() {
    let cluster = cluster("handover")
        .await
        .expect("failed to start the test cluster");
    let mut first = Operator::start(&cluster, replica("replica-a"))
        .await
        .expect("failed to start replica a");
    first.wait_leader().await.expect("replica a leads");
    let mut second = Operator::start(&cluster, replica("replica-b"))
        .await
        .expect("failed to start replica b");
    second.wait_ready().await.expect("replica b serves");

    // Every holder the Lease has from here on.
    let leases: Api<Lease> = Api::namespaced(cluster.client(), cluster.namespace());
    let (holders, mut seen) = mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
        let mut events = watcher(leases, config).applied_objects().boxed();
        while let Some(Ok(lease)) = events.next().await {
            if holders.send(lease.spec.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let current = seen.recv().await.expect("the lease as it is");
    assert_eq!(current.holder_identity.as_deref(), Some("replica-a"));

    first.terminate().await.expect("replica a exits on SIGTERM");
    let mut history = Vec::new();
    let taken = loop {
        let lease = tokio::time::timeout(sluice_e2e::operator::WAIT_LIMIT, seen.recv())
            .await
            .expect("the lease changes hands")
            .expect("the lease watch runs");
        history.push(lease.holder_identity.clone());
        if lease.holder_identity.as_deref() == Some("replica-b") {
            break lease;
        }
    };
    watching.abort();
    assert!(
        history.contains(&None),
        "replica a released the lease rather than letting it expire: {history:?}"
    );
    // Replica a's last words: it saw replica b hold the lease, so it was
    // still running when b took it (the replicas share this machine's clock).
    let log = first.logs();
    let last_words = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["fields"]["message"] == "handed leadership over")
        .unwrap_or_else(|| {
            panic!("replica a did not see replica b take over before it exited; its log:\n{log}")
        });
    assert_eq!(last_words["fields"]["successor"], "replica-b");
    let spoken: chrono::DateTime<chrono::Utc> = last_words["timestamp"]
        .as_str()
        .and_then(|time| time.parse().ok())
        .expect("a log timestamp");
    let acquired = taken.acquire_time.expect("the new holder's acquireTime").0;
    assert!(
        acquired.as_microsecond() <= spoken.timestamp_micros(),
        "replica b acquired the lease at {acquired}, after replica a's last words at {spoken}"
    );

    second.wait_leader().await.expect("replica b leads");
    let metrics = second.metrics().await.expect("replica b's metrics");
    assert_eq!(
        sample(&metrics, "sluice_leader_changes_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "sluice_leaderless_seconds_count"),
        Some(1.0),
        "{metrics}"
    );
    second.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

async fn workspace_active(pool: &PgPool, namespace: &str) -> Option<bool> {
    sqlx::query_scalar("SELECT is_active FROM workspaces WHERE name = $1")
        .bind(namespace)
        .fetch_optional(pool)
        .await
        .ok()?
}

async fn workflow_status(pool: &PgPool, name: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM workflows WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_makes_its_workspace_inactive() {
    let cluster = cluster("ns-deleted")
        .await
        .expect("failed to start the test cluster");
    let database = TestDatabase::create()
        .await
        .expect("failed to create the test database");
    // A namespace of its own, so the test's namespace outlives it.
    let doomed = format!("{}-gone", cluster.namespace());
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let namespace = serde_json::from_value(json!({
        "metadata": {"name": doomed, "labels": {"sluice.dev/e2e": "true"}},
    }))
    .expect("a namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("failed to create the namespace");
    let mut options = OperatorOptions::with_database(&database);
    options.watch_namespaces = vec![doomed.clone()];
    let mut operator = Operator::start(&cluster, options)
        .await
        .expect("failed to start the operator");
    let workflow: Workflow = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "greeter"}, "spec": quick_workflow(),
    }))
    .expect("a workflow");
    Api::<Workflow>::namespaced(cluster.client(), &doomed)
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    let pool = database.pool();
    eventually("the namespace's active workspace", || async {
        workspace_active(pool, &doomed).await?.then_some(())
    })
    .await;

    namespaces
        .delete(&doomed, &DeleteParams::background())
        .await
        .expect("failed to delete the namespace");
    eventually("the workspace to become inactive", || async {
        (!workspace_active(pool, &doomed).await?).then_some(())
    })
    .await;
    eventually("the namespace's workflow to be archived", || async {
        (workflow_status(pool, "greeter").await? == "archived").then_some(())
    })
    .await;
    operator.kill().await;
    database
        .finish()
        .await
        .expect("failed to drop the test database");
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_deleted_while_the_operator_was_down_is_archived_after_it_starts() {
    let mut bed = Bed::start("deleted-offline").await;
    bed.apply_workflow("doomed", quick_workflow()).await;
    bed.apply_workflow("kept", quick_workflow()).await;
    let pool = bed.database.pool();
    for name in ["doomed", "kept"] {
        eventually(&format!("workflow {name}'s active row"), || async move {
            (workflow_status(pool, name).await? == "active").then_some(())
        })
        .await;
    }

    bed.operator.kill().await;
    bed.workflows()
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("failed to delete the workflow");
    bed.operator
        .restart()
        .await
        .expect("failed to restart the operator");

    eventually("the workflow deleted offline to be archived", || async {
        (workflow_status(pool, "doomed").await? == "archived").then_some(())
    })
    .await;
    assert_eq!(
        workflow_status(pool, "kept").await.as_deref(),
        Some("active"),
        "a workflow that still exists is not archived"
    );
    bed.finish().await;
}

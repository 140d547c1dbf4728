//! The operator under trouble: leader election hands over when the leader
//! dies, a SIGKILL in the middle of many runs leaves each run with one Job
//! and one terminal state, and a PostgreSQL outage in the middle of many
//! runs loses no row and duplicates none.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use serde_json::json;
use sluice_crds::{RunPhase, WorkflowRun};
use sluice_e2e::operator::{
    Operator, OperatorOptions, TestDatabase, cluster, eventually, with_database,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::operator_support::{Bed, quick_workflow};

const RUNS: usize = 20;

/// A workflow that takes a moment, keeping all of its runs.
fn batch_workflow() -> serde_json::Value {
    json!({
        "historyLimits": {"successful": 100, "failed": 100},
        "nodes": [
            {"name": "first", "transform": {"jq": ".input"}},
            {"name": "pause", "needs": ["first"], "wait": {"duration": "1s"}},
            {"name": "last", "needs": ["pause"], "transform": {"jq": "{done: true}"}},
        ],
    })
}

async fn create_batch(bed: &Bed) -> Vec<String> {
    let mut names = Vec::new();
    for index in 0..RUNS {
        let name = format!("batch-{index:02}");
        bed.create_run(&name, "batch", json!({"input": {"index": index}}))
            .await;
        names.push(name);
    }
    names
}

async fn count_running(bed: &Bed) -> usize {
    bed.runs()
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|run| run.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Running))
                .count()
        })
        .unwrap_or(0)
}

/// Every run succeeded once, with exactly one Job.
async fn assert_each_run_finished_once(bed: &Bed, names: &[String]) -> Vec<WorkflowRun> {
    let jobs: Api<Job> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let mut runs = Vec::new();
    for name in names {
        let run = bed.wait_terminal(name, RunPhase::Succeeded).await;
        let completed = run.status.as_ref().map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ == "Completed")
                .count()
        });
        assert_eq!(completed, Some(1), "{name}: one Completed condition");
        let selector = format!("sluice.dev/run={name}");
        let owned = jobs
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("failed to list jobs");
        assert_eq!(owned.items.len(), 1, "{name}: exactly one job");
        runs.push(run);
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_killed_mid_runs_leaves_one_job_and_one_end_per_run() {
    let mut bed = Bed::start("operator-killed").await;
    bed.apply_workflow("batch", batch_workflow()).await;
    let names = create_batch(&bed).await;
    eventually("a few runs running", || {
        let bed = &bed;
        async move { (count_running(bed).await >= 3).then_some(()) }
    })
    .await;
    bed.operator.kill().await;
    bed.operator
        .restart()
        .await
        .expect("failed to restart the operator");
    let runs = assert_each_run_finished_once(&bed, &names).await;

    let pool = bed.database.pool();
    for run in &runs {
        let uid = run.metadata.uid.clone().expect("uid");
        let (status,): (String,) = eventually("the execution row", || {
            let uid = uid.clone();
            async move {
                sqlx::query_as("SELECT status FROM workflow_executions WHERE id = $1::uuid")
                    .bind(&uid)
                    .fetch_optional(pool)
                    .await
                    .ok()?
                    .filter(|(status,): &(String,)| status == "completed")
            }
        })
        .await;
        assert_eq!(status, "completed");
    }
    bed.finish().await;
}

/// A TCP proxy to PostgreSQL that a test can cut and restore.
struct Proxy {
    port: u16,
    open: Arc<Mutex<bool>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("an address").port();
        let open = Arc::new(Mutex::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let open = open.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !*open.lock().unwrap() {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        Self {
            port,
            open,
            connections,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        *self.open.lock().unwrap() = false;
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        *self.open.lock().unwrap() = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_runs_loses_and_duplicates_no_row() {
    let cluster = cluster("postgres-outage")
        .await
        .expect("failed to start the test cluster");
    let database = TestDatabase::create()
        .await
        .expect("failed to create the test database");
    let options: sqlx::postgres::PgConnectOptions = database.url().parse().expect("a database URL");
    let proxy = Proxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let through_proxy = with_database(
        &database.url().replacen(
            &format!("{}:{}", options.get_host(), options.get_port()),
            &format!("127.0.0.1:{}", proxy.port),
            1,
        ),
        options.get_database().unwrap_or_default(),
    );
    assert!(
        through_proxy.contains(&proxy.port.to_string()),
        "{through_proxy}"
    );
    let operator = Operator::start(
        &cluster,
        OperatorOptions {
            database_url: Some(through_proxy),
            ..OperatorOptions::default()
        },
    )
    .await
    .expect("failed to start the operator");
    let bed = Bed {
        operator,
        database,
        cluster,
    };
    bed.apply_workflow("batch", batch_workflow()).await;
    // The mirror has the workflow before the outage starts.
    let pool = bed.database.pool();
    eventually("the workflow row", || async move {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM workflows")
            .fetch_one(pool)
            .await
            .ok()?;
        (count == 1).then_some(())
    })
    .await;
    let names = create_batch(&bed).await;
    eventually("a few runs running", || {
        let bed = &bed;
        async move { (count_running(bed).await >= 3).then_some(()) }
    })
    .await;
    proxy.cut();
    // Kubernetes carries on without the database.
    let runs = assert_each_run_finished_once(&bed, &names).await;
    proxy.restore();

    for run in &runs {
        let uid = run.metadata.uid.clone().expect("uid");
        eventually(&format!("run {uid}'s rows"), || {
            let uid = uid.clone();
            async move {
                let (status,): (String,) =
                    sqlx::query_as("SELECT status FROM workflow_executions WHERE id = $1::uuid")
                        .bind(&uid)
                        .fetch_optional(pool)
                        .await
                        .ok()??;
                let (nodes,): (i64,) = sqlx::query_as(
                    "SELECT count(*) FROM node_executions WHERE execution_id = $1::uuid AND status = 'completed'",
                )
                .bind(&uid)
                .fetch_one(pool)
                .await
                .ok()?;
                (status == "completed" && nodes == 3).then_some(())
            }
        })
        .await;
    }
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (execution_id, node_id)) FROM node_executions",
    )
    .fetch_one(pool)
    .await
    .expect("failed to count node rows");
    assert_eq!((rows, distinct), (3 * RUNS as i64, 3 * RUNS as i64));
    let (executions,): (i64,) = sqlx::query_as("SELECT count(*) FROM workflow_executions")
        .fetch_one(pool)
        .await
        .expect("failed to count executions");
    assert_eq!(executions, RUNS as i64);
    drop(proxy);
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let cluster = cluster("leader-election")
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
    let mut second = Operator::start(&cluster, replica("replica-b"))
        .await
        .expect("failed to start replica b");
    let leases: Api<Lease> = Api::namespaced(cluster.client(), cluster.namespace());
    let leader = eventually("one replica to lead", || {
        let leases = leases.clone();
        let (first, second) = (&first, &second);
        async move {
            let holders: Vec<_> = leases
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|lease| lease.spec?.holder_identity)
                .collect();
            let leading = (first.is_leader().await, second.is_leader().await);
            match (holders.as_slice(), leading) {
                ([holder], (true, false)) if holder == "replica-a" => Some("replica-a"),
                ([holder], (false, true)) if holder == "replica-b" => Some("replica-b"),
                _ => None,
            }
        }
    })
    .await;
    // Every replica serves the run API and webhooks, so the standby is
    // ready too: a Service must send it traffic.
    first.wait_ready().await.expect("replica a is ready");
    second.wait_ready().await.expect("replica b is ready");
    let bed_runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    cluster
        .apply_value(
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
                "metadata": {"name": "greeter"}, "spec": quick_workflow(),
            }),
            std::path::Path::new("<test>"),
        )
        .await
        .expect("failed to apply the workflow");
    let (dead, survivor) = if leader == "replica-a" {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    dead.kill().await;
    survivor
        .wait_leader()
        .await
        .expect("the standby replica takes over");
    let run: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "after-failover"},
        "spec": {"workflowRef": {"name": "greeter"}, "input": {"name": "b"}},
    }))
    .expect("a run");
    bed_runs
        .create(&Default::default(), &run)
        .await
        .expect("failed to create a run");
    eventually("the run to succeed under the new leader", || {
        let bed_runs = bed_runs.clone();
        async move {
            let run = bed_runs.get("after-failover").await.ok()?;
            (run.status?.phase? == RunPhase::Succeeded).then_some(())
        }
    })
    .await;
    first.kill().await;
    second.kill().await;
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

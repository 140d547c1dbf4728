//! The real operator on the test bed: workflows become Ready or show their
//! errors, runs go through their phases into PostgreSQL, failures and
//! cancellations end runs with their reasons.

use crate::operator_support::{Bed, quick_workflow, waiting_workflow};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sluice_crds::{NodePhase, RunPhase};
use sluice_e2e::operator::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_workflow_is_ready_and_an_invalid_one_shows_its_errors() {
    let bed = Bed::start("workflow-conditions").await;
    bed.apply_workflow("good", quick_workflow()).await;
    bed.apply_workflow(
        "bad",
        json!({"nodes": [
            {"name": "broken", "transform": {"jq": ".input | {"}},
            {"name": "greet", "shell": {"script": "echo hello ${{ .input.name }}"}},
        ]}),
    )
    .await;

    let workflows = bed.workflows();
    let good = eventually("workflow good to be Ready", || {
        let workflows = workflows.clone();
        async move {
            let workflow = workflows.get("good").await.ok()?;
            let status = workflow.status.clone()?;
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == sluice_crds::ConditionStatus::True)
                .then_some(workflow)
        }
    })
    .await;
    let status = good.status.unwrap_or_default();
    assert_eq!(status.observed_generation, good.metadata.generation);
    assert_eq!(status.revision, Some(1));
    assert!(status.validation_errors.is_empty());

    let bad = eventually("workflow bad to be not Ready", || {
        let workflows = workflows.clone();
        async move {
            let workflow = workflows.get("bad").await.ok()?;
            let status = workflow.status.clone()?;
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "Valid" && c.status == sluice_crds::ConditionStatus::False)
                .then_some(workflow)
        }
    })
    .await;
    let status = bad.status.unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready.status, sluice_crds::ConditionStatus::False);
    assert!(
        status
            .validation_errors
            .iter()
            .any(|issue| issue.path.contains("nodes[0]")),
        "the error names the node: {:?}",
        status.validation_errors
    );
    assert!(
        status.validation_errors.iter().any(|issue| {
            issue.path.ends_with("nodes[1].shell.script") && issue.message.contains("\"$NAME\"")
        }),
        "a template in a shell script is refused with the fix: {:?}",
        status.validation_errors
    );
    let warning = eventually("a Warning event about workflow bad", || {
        let bed = &bed;
        async move {
            bed.events_about("bad")
                .await
                .into_iter()
                .find(|event| event.type_.as_deref() == Some("Warning"))
        }
    })
    .await;
    assert!(
        warning.note.is_some(),
        "the event says what is wrong: {warning:?}"
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_succeeds_with_node_status_and_its_history_in_postgres() {
    let bed = Bed::start("run-succeeds").await;
    bed.apply_workflow("greeter", quick_workflow()).await;
    bed.create_run("greet-ada", "greeter", json!({"input": {"name": "ada"}}))
        .await;

    let running = bed
        .wait_run("greet-ada", "Running or later", |run| {
            run.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|phase| matches!(phase, RunPhase::Running | RunPhase::Succeeded))
        })
        .await;
    let job_name = running
        .status
        .as_ref()
        .and_then(|s| s.job_name.clone())
        .expect("a running run names its job");
    let run = bed.wait_terminal("greet-ada", RunPhase::Succeeded).await;
    let status = run.status.clone().unwrap_or_default();
    assert_eq!(status.progress.as_deref(), Some("2/2"));
    let counts = status.node_counts.clone().expect("node counts");
    assert_eq!((counts.succeeded, counts.failed, counts.pending), (2, 0, 0));
    assert!(
        status
            .nodes
            .iter()
            .all(|node| node.phase == NodePhase::Succeeded && node.end_time.is_some()),
        "{:?}",
        status.nodes
    );
    assert_eq!(
        status.output,
        Some(json!({"message": "hello ada", "shouted": "HELLO ADA"}))
    );
    let jobs: Api<Job> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    assert!(jobs.get_opt(&job_name).await.unwrap().is_some());

    let pool = bed.database.pool();
    let uid = run.metadata.uid.clone().expect("uid");
    let (execution_status,): (String,) = eventually("the execution row to be completed", || {
        let uid = uid.clone();
        async move {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT status::text FROM workflow_executions WHERE id = $1::uuid")
                    .bind(&uid)
                    .fetch_optional(pool)
                    .await
                    .ok()?;
            row.filter(|(status,)| status == "completed")
        }
    })
    .await;
    assert_eq!(execution_status, "completed");
    let nodes: Vec<(
        String,
        String,
        Option<serde_json::Value>,
        Option<serde_json::Value>,
    )> = eventually("both node rows", || {
        let uid = uid.clone();
        async move {
            let rows: Vec<(
                String,
                String,
                Option<serde_json::Value>,
                Option<serde_json::Value>,
            )> = sqlx::query_as(
                "SELECT node_id, status::text, input_data, output_data FROM node_executions \
                         WHERE execution_id = $1::uuid ORDER BY node_id",
            )
            .bind(&uid)
            .fetch_all(pool)
            .await
            .ok()?;
            (rows.len() == 2 && rows.iter().all(|row| row.1 == "completed")).then_some(rows)
        }
    })
    .await;
    assert_eq!(nodes[0].0, "greet");
    assert_eq!(nodes[0].3, Some(json!({"message": "hello ada"})));
    assert_eq!(nodes[1].0, "shout");
    let shout_output = nodes[1].3.clone().expect("shell output");
    assert_eq!(shout_output["stdout"], "HELLO ADA");
    assert_eq!(shout_output["stderr"], "working\n");
    assert!(nodes[1].2.is_some(), "the node's input is stored");

    let metrics: (i64, i64) = eventually("the day's workflow metrics", || async move {
        sqlx::query_as(
            "SELECT total_executions::bigint, successful_executions::bigint FROM workflow_metrics",
        )
        .fetch_optional(pool)
        .await
        .ok()?
        .filter(|(total, _): &(i64, i64)| *total >= 1)
    })
    .await;
    assert_eq!(metrics, (1, 1));
    let started = bed
        .events_about("greet-ada")
        .await
        .into_iter()
        .any(|event| event.reason.as_deref() == Some("Started"));
    assert!(started, "a Started event is published");
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_fails_the_run_and_names_it() {
    let bed = Bed::start("run-fails").await;
    bed.apply_workflow(
        "doomed",
        json!({"nodes": [
            {"name": "fine", "transform": {"jq": "1"}},
            {"name": "boom", "needs": ["fine"], "fail": {"message": "the sky fell"}},
            {"name": "after", "needs": ["boom"], "transform": {"jq": "2"}},
        ]}),
    )
    .await;
    bed.create_run("doomed-1", "doomed", json!({})).await;
    let run = bed.wait_terminal("doomed-1", RunPhase::Failed).await;
    let status = run.status.unwrap_or_default();
    assert_eq!(status.first_failed_node.as_deref(), Some("boom"));
    let message = status.message.unwrap_or_default();
    assert!(message.contains("the sky fell"), "{message}");
    let boom = status.nodes.iter().find(|n| n.name == "boom").unwrap();
    assert_eq!(boom.phase, NodePhase::Failed);
    assert!(
        boom.error.as_deref().unwrap_or("").contains("the sky fell"),
        "{boom:?}"
    );
    let fine = status.nodes.iter().find(|n| n.name == "fine").unwrap();
    assert_eq!(fine.phase, NodePhase::Succeeded);
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_long_run_cancels_it_and_deletes_its_job() {
    let bed = Bed::start("run-cancel").await;
    bed.apply_workflow("slow", waiting_workflow("60s")).await;
    bed.create_run("slow-1", "slow", json!({})).await;
    let run = bed
        .wait_run("slow-1", "its wait node running", |run| {
            run.status.as_ref().is_some_and(|s| {
                s.nodes
                    .iter()
                    .any(|n| n.name == "pause" && n.phase == NodePhase::Running)
            })
        })
        .await;
    let job_name = run.status.and_then(|s| s.job_name).expect("a job");
    bed.runs()
        .patch(
            "slow-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await
        .expect("failed to cancel");
    let run = bed.wait_terminal("slow-1", RunPhase::Cancelled).await;
    let status = run.status.unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("Cancelled"));
    let jobs: Api<Job> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    eventually("the job to be deleted", || {
        let jobs = jobs.clone();
        let job_name = job_name.clone();
        async move { jobs.get_opt(&job_name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_cannot_post_for_another_run() {
    let bed = Bed::start("run-api-auth").await;
    bed.apply_workflow("slow", waiting_workflow("60s")).await;
    bed.create_run("run-a", "slow", json!({})).await;
    bed.create_run("run-b", "slow", json!({})).await;
    for name in ["run-a", "run-b"] {
        bed.wait_run(name, "its wait node running", |run| {
            run.status.as_ref().is_some_and(|s| {
                s.nodes
                    .iter()
                    .any(|n| n.name == "pause" && n.phase == NodePhase::Running)
            })
        })
        .await;
    }
    let secrets: Api<Secret> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let secret = secrets
        .get(&sluice_operator::names::run_credential_secret_name("run-a"))
        .await
        .expect("run A's credential secret");
    let token_a = String::from_utf8(
        secret
            .data
            .and_then(|mut data| data.remove("token"))
            .expect("a token")
            .0,
    )
    .expect("a text token");
    let before = bed.runs().get("run-b").await.unwrap().status;

    sluice_e2e::cluster::install_crypto_provider();
    let client = reqwest::Client::new();
    let run_b_url = format!(
        "{}{}/{}/run-b",
        bed.operator.run_api_url(),
        sluice_crds::run_api::RUN_API_PREFIX,
        bed.cluster.namespace()
    );
    let finished = json!({"events": [{
        "seq": 99, "time": chrono::Utc::now(), "type": "runFinished",
        "phase": "Succeeded", "output": {"forged": true},
    }]});
    let forged = client
        .post(format!("{run_b_url}/events"))
        .bearer_auth(&token_a)
        .json(&finished)
        .send()
        .await
        .expect("the run API answers");
    assert_eq!(forged.status().as_u16(), 403);
    let snapshot = client
        .get(&run_b_url)
        .bearer_auth(&token_a)
        .send()
        .await
        .expect("the run API answers");
    assert_eq!(snapshot.status().as_u16(), 403);
    let anonymous = client
        .post(format!("{run_b_url}/events"))
        .json(&finished)
        .send()
        .await
        .expect("the run API answers");
    assert_eq!(anonymous.status().as_u16(), 401);
    // Run A's token still opens run A.
    let own = client
        .get(run_b_url.replace("/run-b", "/run-a"))
        .bearer_auth(&token_a)
        .send()
        .await
        .expect("the run API answers");
    assert_eq!(own.status().as_u16(), 200);

    let after = bed.runs().get("run-b").await.unwrap().status;
    assert_eq!(before, after, "run B's status is unchanged");
    for name in ["run-a", "run-b"] {
        bed.runs()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cancel": true}})),
            )
            .await
            .expect("failed to cancel");
        bed.wait_terminal(name, RunPhase::Cancelled).await;
    }
    bed.finish().await;
}

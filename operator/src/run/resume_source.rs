//! Reads what resuming a run needs ([`super::resume`] decides): the run it
//! resumes from, that run's frozen snapshot, and the outputs PostgreSQL
//! holds whole for its succeeded nodes. Writes nothing.

use super::resume::{ResumeSource, source_issue};
use super::shared::{SNAPSHOT_KEY, snapshot_name};
use crate::context::{Context, Error};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use sluice_crds::run_api::RunSnapshot;
use sluice_crds::{NodePhase, WorkflowRun};

/// The run `run` resumes from, or why it cannot (a message for the user).
pub async fn observe_resume_source(
    run: &WorkflowRun,
    context: &Context,
    namespace: &str,
) -> Result<Result<ResumeSource, String>, Error> {
    let Some(mirror) = &context.mirror else {
        return Ok(Err("spec.resumeFrom needs the PostgreSQL mirror, which keeps node outputs: give the operator a database (the chart's database.secretName), or start a fresh run".to_owned()));
    };
    let name = run.spec.resume_from.clone().unwrap_or_default();
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let found = runs.get_opt(&name).await?;
    let source = match (source_issue(run, found.as_ref()), found) {
        (None, Some(source)) => source,
        (issue, _) => return Ok(Err(issue.unwrap_or_default())),
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
    let snapshot = match config_maps
        .get_opt(&snapshot_name(&name))
        .await?
        .and_then(|config_map| config_map.data?.remove(SNAPSHOT_KEY))
    {
        Some(text) => Some(serde_json::from_str::<RunSnapshot>(&text)?),
        None => None,
    };
    let succeeded: Vec<String> = source
        .status
        .iter()
        .flat_map(|status| &status.nodes)
        .filter(|node| node.phase == NodePhase::Succeeded)
        .map(|node| node.name.clone())
        .collect();
    let uid = source
        .metadata
        .uid
        .as_deref()
        .and_then(|uid| uuid::Uuid::parse_str(uid).ok())
        .ok_or_else(|| Error::MissingField(name.clone(), "metadata.uid"))?;
    let stored_outputs =
        crate::mirror::executions::stored_node_outputs(mirror.pool(), uid, &succeeded).await?;
    Ok(Ok(ResumeSource {
        run: source,
        snapshot,
        stored_outputs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::mirror::{Mirror, MirrorConfig};
    use crate::run_api::token::TokenKey;
    use crate::telemetry::Metrics;
    use axum::http::{Request, Response};
    use clap::Parser;
    use kube::client::Body;
    use serde_json::json;
    use sluice_crds::workflow_run::NodeSummary;
    use sluice_crds::{RunPhase, WorkflowRunStatus};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An API server holding the Failed run `first` (its node `fetch`
    /// succeeded) and no snapshot; counts the requests it answers.
    fn cluster() -> (kube::Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if request.uri().path().ends_with("/workflowruns/first") {
                let mut run = WorkflowRun::fixture("first", "w");
                run.metadata.uid = Some("6f9619ff-8b86-d011-b42d-00cf4fc964ff".into());
                run.status = Some(WorkflowRunStatus {
                    phase: Some(RunPhase::Failed),
                    nodes: vec![NodeSummary {
                        name: "fetch".into(),
                        phase: NodePhase::Succeeded,
                        attempts: 1,
                        start_time: None,
                        end_time: None,
                        items: None,
                        error: None,
                    }],
                    ..WorkflowRunStatus::default()
                });
                (200, serde_json::to_value(run).expect("a run serializes"))
            } else {
                let missing = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"});
                (404, missing)
            };
            async move {
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string().into_bytes()))
                        .expect("a response"),
                )
            }
        });
        (kube::Client::new(service, "default"), calls)
    }

    fn context(client: kube::Client, mirror: Option<Mirror>) -> Context {
        let config = Config::try_parse_from(["sluice-operator"]).expect("the defaults parse");
        Context::new(
            client,
            config,
            TokenKey::generate(),
            mirror,
            Arc::new(Metrics::new()),
        )
    }

    fn resumed() -> WorkflowRun {
        let mut run = WorkflowRun::fixture("second", "w");
        run.spec.resume_from = Some("first".into());
        run
    }

    #[tokio::test]
    async fn without_a_database_the_run_is_refused_with_the_fix_and_nothing_is_read() {
        let (client, calls) = cluster();
        let refused = observe_resume_source(&resumed(), &context(client, None), "default")
            .await
            .expect("no I/O error")
            .expect_err("no database: refused");
        assert!(
            refused.contains("needs the PostgreSQL mirror") && refused.contains("database"),
            "{refused}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_an_error_to_retry_not_a_refusal() {
        let (client, _) = cluster();
        // Nothing listens on port 1: every connection attempt fails at once.
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(1);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        let (mirror, _writer) = Mirror::start(pool, MirrorConfig::default(), None);
        let error = observe_resume_source(&resumed(), &context(client, Some(mirror)), "default")
            .await
            .expect_err("the stored outputs cannot be read");
        assert!(matches!(error, Error::Database(_)), "{error}");
        assert_eq!(error.category(), "Database");
    }
}

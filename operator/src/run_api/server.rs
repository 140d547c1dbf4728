//! HTTP handlers of the run API (see `sluice_crds::run_api` for the wire
//! types). Each request must carry its run's token; a token of another run
//! is refused with 403 and nothing is read or written.
//!
//! Events are folded into the run's status with optimistic concurrency
//! (retried on 409), and their full payloads are handed to the mirror. The
//! batch is acknowledged only once both have taken it: when the mirror's
//! queue is full the runner gets 503 and sends the batch again later, so a
//! PostgreSQL outage slows runners down instead of losing node history.

use super::children;
use crate::context::Context;
use crate::mirror::MirrorEvent;
use crate::mirror_map::{event_records, execution_record, offer, workflow_uid};
use crate::run::progress::apply_events;
use crate::run::shared::{SNAPSHOT_KEY, snapshot_name};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use sluice_crds::WorkflowRun;
use sluice_crds::run_api::{EventAck, EventBatch, RUN_API_PREFIX, RunEventKind, RunSnapshot};
use std::sync::Arc;

/// Largest accepted event batch.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
const STATUS_WRITE_ATTEMPTS: usize = 8;

/// The run API's routes.
pub fn router(context: Arc<Context>) -> Router {
    Router::new()
        .route(
            &format!("{RUN_API_PREFIX}/{{namespace}}/{{name}}"),
            get(snapshot),
        )
        .route(
            &format!("{RUN_API_PREFIX}/{{namespace}}/{{name}}/events"),
            post(events),
        )
        .route(
            &format!("{RUN_API_PREFIX}/{{namespace}}/{{name}}/connections/{{connection}}/token"),
            post(super::tokens::refresh),
        )
        .route(
            &format!("{RUN_API_PREFIX}/{{namespace}}/{{name}}/children/{{child}}"),
            put(children::start)
                .get(children::read)
                .delete(children::cancel),
        )
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(context)
}

/// A refused request, with a message for the runner's log.
pub(super) struct Refusal(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<kube::Error> for Refusal {
    fn from(error: kube::Error) -> Self {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed to reach the Kubernetes API: {error}"),
        )
    }
}

/// The run named in the path, if the request's token is that run's.
pub(super) async fn authorised_run(
    context: &Context,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
) -> Result<WorkflowRun, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Refusal(StatusCode::UNAUTHORIZED, "missing bearer token".to_owned()))?;
    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), namespace);
    let run = runs.get_opt(name).await?.ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            format!("run {namespace}/{name} not found"),
        )
    })?;
    let uid = run.uid().unwrap_or_default();
    if !context.token_key.verify(&uid, token) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("this credential does not belong to run {namespace}/{name}"),
        ));
    }
    Ok(run)
}

async fn snapshot(
    State(context): State<Arc<Context>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<RunSnapshot>, Refusal> {
    authorised_run(&context, &headers, &namespace, &name).await?;
    Ok(Json(read_snapshot(&context, &namespace, &name).await?))
}

/// The frozen snapshot of run `namespace/name`.
pub(super) async fn read_snapshot(
    context: &Context,
    namespace: &str,
    name: &str,
) -> Result<RunSnapshot, Refusal> {
    let config_maps: Api<ConfigMap> = Api::namespaced(context.client.clone(), namespace);
    let snapshot = config_maps
        .get_opt(&snapshot_name(name))
        .await?
        .and_then(|map| map.data?.remove(SNAPSHOT_KEY))
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("run {namespace}/{name} has no snapshot yet"),
            )
        })?;
    serde_json::from_str(&snapshot).map_err(|e| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to read the run's snapshot: {e}"),
        )
    })
}

async fn events(
    State(context): State<Arc<Context>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(batch): Json<EventBatch>,
) -> Result<Json<EventAck>, Refusal> {
    let mut run = authorised_run(&context, &headers, &namespace, &name).await?;
    let acknowledged_seq = batch
        .events
        .iter()
        .map(|event| event.seq)
        .max()
        .unwrap_or(0);

    if context.mirror.is_some() {
        mirror_batch(&context, &run, &batch)?;
    }

    let runs: Api<WorkflowRun> = Api::namespaced(context.client.clone(), &namespace);
    for attempt in 1..=STATUS_WRITE_ATTEMPTS {
        let mut status = run.status.clone().unwrap_or_default();
        let before = status.clone();
        apply_events(&mut status, &batch.events);
        if status == before {
            break;
        }
        let mut updated = run.clone();
        updated.status = Some(status);
        match runs
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(conflict))
                if conflict.code == 409 && attempt < STATUS_WRITE_ATTEMPTS =>
            {
                run = runs.get(&name).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(Json(EventAck {
        acknowledged_seq,
        cancel: run.spec.cancel == Some(true),
    }))
}

/// Hands the batch's node executions, log lines and (for the final event)
/// the run's full output to the mirror; refuses the batch when it is full.
fn mirror_batch(context: &Context, run: &WorkflowRun, batch: &EventBatch) -> Result<(), Refusal> {
    let Some(mirror) = &context.mirror else {
        return Ok(());
    };
    let run_uid = run
        .uid()
        .and_then(|uid| uuid::Uuid::parse_str(&uid).ok())
        .unwrap_or_default();
    let worker = run.status.as_ref().and_then(|s| s.job_name.clone());
    let full = || {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history store is busy: send the batch again".to_owned(),
        )
    };
    for record in event_records(run_uid, worker.as_deref(), &batch.events) {
        mirror.offer(record).map_err(|_| full())?;
    }
    if let Some(output) = batch.events.iter().find_map(|event| match &event.kind {
        RunEventKind::RunFinished { output, .. } => Some(output.clone()),
        _ => None,
    }) {
        // The final output in full: status keeps only a capped copy.
        if let Some(record) = workflow_uid(run).and_then(|uid| execution_record(run, uid, output)) {
            offer(context, MirrorEvent::Execution(record));
        }
    }
    Ok(())
}

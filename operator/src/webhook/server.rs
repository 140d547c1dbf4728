//! The webhook HTTP server: one route, `POST /hooks/{namespace}/{workflow}/{trigger}`.
//!
//! Order of checks, cheapest and least revealing first: unknown workflow,
//! unknown or disabled trigger, or suspended workflow → 404; body over
//! `maxBodyBytes` (1 MiB) → 413; missing or wrong credential → 401;
//! over the trigger's rate → 429 (only authenticated requests spend
//! tokens, so strangers cannot exhaust a caller's budget). Then the run is
//! created (`generateName: <workflow>-`) and the answer is 202
//! `{"run": name}`, or with `response: Sync` the run's output once it
//! finishes (202 with the name if `timeout` passes first).
//!
//! The JSON body becomes the run's input (a body that is not JSON is kept
//! as text in the trigger data only); body, headers minus credentials and
//! query become `spec.trigger.data`. Nothing here logs a header value.

use super::auth::{self, credential_header};
use super::rate::RateLimiter;
use super::{BackendError, WebhookBackend};
use crate::telemetry::Metrics;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use sluice_crds::workflow::{TriggerSpec, WebhookResponse};
use sluice_crds::workflow_run::{RunTrigger, TriggerType};
use sluice_crds::{LocalObjectReference, RunPhase, Workflow, WorkflowRun, WorkflowRunSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest body when a trigger sets no `maxBodyBytes`.
pub const DEFAULT_MAX_BODY_BYTES: u32 = 1 << 20;
/// Longest wait of a Sync trigger without `timeout`.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers never copied into trigger data.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-slack-signature",
];

/// Tunables of the server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a Secret value read for a trigger is reused.
    pub secret_ttl: Duration,
    /// How often a Sync trigger reads the run's status.
    pub poll_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            secret_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
        }
    }
}

type SecretKey = (String, String, String);
/// A Secret value (None: absent) and when it was read.
type CachedSecret = (Instant, Option<Arc<Vec<u8>>>);

/// The webhook server's state, shared by every request.
pub struct WebhookServer {
    backend: Arc<dyn WebhookBackend>,
    limiter: RateLimiter,
    secrets: Mutex<HashMap<SecretKey, CachedSecret>>,
    metrics: Option<Arc<Metrics>>,
    settings: Settings,
}

impl WebhookServer {
    /// A server over `backend`, counting requests in `metrics` when given.
    pub fn new(
        backend: Arc<dyn WebhookBackend>,
        metrics: Option<Arc<Metrics>>,
        settings: Settings,
    ) -> Self {
        Self {
            backend,
            limiter: RateLimiter::default(),
            secrets: Mutex::new(HashMap::new()),
            metrics,
            settings,
        }
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Arc<Vec<u8>>>, BackendError> {
        let cache_key = (namespace.to_owned(), name.to_owned(), key.to_owned());
        if let Some((read_at, value)) = self.lock_secrets().get(&cache_key)
            && read_at.elapsed() < self.settings.secret_ttl
        {
            return Ok(value.clone());
        }
        let value = self
            .backend
            .secret_value(namespace, name, key)
            .await?
            .map(|mut value| {
                // Secrets made with --from-file often end in a newline nobody signs with.
                if value.ends_with(b"\n") {
                    value.pop();
                }
                Arc::new(value)
            });
        self.lock_secrets()
            .insert(cache_key, (Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock_secrets(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, CachedSecret>> {
        self.secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, outcome: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.webhook_request(outcome);
        }
    }
}

/// Routes `POST /hooks/{namespace}/{workflow}/{trigger}`.
pub fn router(server: Arc<WebhookServer>) -> Router {
    Router::new()
        .route("/hooks/{namespace}/{workflow}/{trigger}", post(handle))
        .with_state(server)
}

/// A refused or failed request: status, metric outcome, message.
struct Refusal(StatusCode, &'static str, String);

async fn handle(
    State(server): State<Arc<WebhookServer>>,
    Path((namespace, workflow_name, trigger_name)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = Request {
        namespace,
        workflow: workflow_name,
        trigger: trigger_name,
        query,
        headers,
    };
    match accept(&server, &request, body).await {
        Ok((outcome, status, answer)) => {
            server.count(outcome);
            (status, axum::Json(answer)).into_response()
        }
        Err(Refusal(status, outcome, message)) => {
            server.count(outcome);
            if status.is_server_error() {
                tracing::warn!(namespace = %request.namespace, workflow = %request.workflow, trigger = %request.trigger, %message, "webhook request failed");
            } else {
                tracing::debug!(namespace = %request.namespace, workflow = %request.workflow, trigger = %request.trigger, %message, "webhook request refused");
            }
            (status, axum::Json(json!({ "error": message }))).into_response()
        }
    }
}

struct Request {
    namespace: String,
    workflow: String,
    trigger: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

async fn accept(
    server: &WebhookServer,
    request: &Request,
    body: Body,
) -> Result<(&'static str, StatusCode, Value), Refusal> {
    let not_found = || {
        Refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such webhook".to_owned(),
        )
    };
    let workflow = server
        .backend
        .workflow(&request.namespace, &request.workflow)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    let trigger = find_trigger(&workflow, &request.trigger).ok_or_else(not_found)?;
    let webhook = &trigger.webhook;

    let limit = webhook.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES) as usize;
    let declared = request
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let too_large = || {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes (the trigger's maxBodyBytes)"),
        )
    };
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;

    let secret_ref = &webhook.auth.secret_ref;
    let key = server
        .secret(&request.namespace, &secret_ref.name, &secret_ref.key)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "secret_missing",
                format!(
                    "the trigger's secret {} (key {}) is missing: create it in namespace {}",
                    secret_ref.name, secret_ref.key, request.namespace
                ),
            )
        })?;
    auth::verify(
        &webhook.auth,
        &key,
        &request.headers,
        &body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|error| Refusal(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string()))?;

    if !server.limiter.try_acquire(
        &request.namespace,
        &request.workflow,
        &request.trigger,
        webhook.rate_limit.as_ref(),
        Instant::now(),
    ) {
        return Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this trigger: slow down or raise its rateLimit".to_owned(),
        ));
    }

    let run = build_run(&workflow, trigger, request, &body);
    let name = server
        .backend
        .create_run(&request.namespace, run)
        .await
        .map_err(unavailable)?;
    tracing::info!(namespace = %request.namespace, workflow = %request.workflow, trigger = %request.trigger, run = %name, "webhook started a run");
    if webhook.response.unwrap_or_default() == WebhookResponse::Sync {
        let timeout = webhook
            .timeout
            .as_ref()
            .map_or(DEFAULT_SYNC_TIMEOUT, |timeout| timeout.as_std());
        return Ok(wait_for_run(server, &request.namespace, name, timeout).await);
    }
    Ok(("accepted", StatusCode::ACCEPTED, json!({ "run": name })))
}

fn unavailable(error: BackendError) -> Refusal {
    Refusal(StatusCode::SERVICE_UNAVAILABLE, "error", error.to_string())
}

/// The enabled trigger `name` of a workflow that is not suspended.
pub fn find_trigger<'a>(workflow: &'a Workflow, name: &str) -> Option<&'a TriggerSpec> {
    if workflow.spec.suspend.unwrap_or(false) || workflow.metadata.deletion_timestamp.is_some() {
        return None;
    }
    workflow
        .spec
        .triggers
        .iter()
        .find(|trigger| trigger.name == name && trigger.enabled.unwrap_or(true))
}

/// The run a request starts: input from the JSON body, trigger data from
/// body, headers (without credentials) and query.
fn build_run(
    workflow: &Workflow,
    trigger: &TriggerSpec,
    request: &Request,
    body: &[u8],
) -> WorkflowRun {
    let parsed: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    let body_data = match &parsed {
        Some(value) => value.clone(),
        None if body.is_empty() => Value::Null,
        None => Value::String(String::from_utf8_lossy(body).into_owned()),
    };
    let data = json!({
        "body": body_data,
        "headers": data_headers(&request.headers, &credential_header(&trigger.webhook.auth)),
        "query": request
            .query
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect::<Map<String, Value>>(),
    });
    let mut run = WorkflowRun::new(
        "",
        WorkflowRunSpec {
            workflow_ref: LocalObjectReference {
                name: request.workflow.clone(),
            },
            input: parsed,
            trigger: Some(RunTrigger {
                type_: TriggerType::Webhook,
                source: Some(trigger.name.clone()),
                scheduled_time: None,
                data: Some(data),
            }),
            ..WorkflowRunSpec::default()
        },
    );
    run.metadata.name = None;
    run.metadata.generate_name = Some(format!(
        "{}-",
        workflow
            .metadata
            .name
            .as_deref()
            .unwrap_or(&request.workflow)
    ));
    run.metadata.namespace = Some(request.namespace.clone());
    run
}

/// Request headers as a JSON object, lowercase names, credentials removed.
fn data_headers(headers: &HeaderMap, credential: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if name == credential || CREDENTIAL_HEADERS.contains(&name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            map.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    map
}

/// Waits for the run to end: 200 with its output when it succeeded, 502
/// when it failed or was cancelled, 202 with its name on timeout.
async fn wait_for_run(
    server: &WebhookServer,
    namespace: &str,
    name: String,
    timeout: Duration,
) -> (&'static str, StatusCode, Value) {
    let deadline = Instant::now() + timeout;
    loop {
        match server.backend.run_status(namespace, &name).await {
            Ok(Some(status)) if status.phase.is_some_and(RunPhase::is_terminal) => {
                let phase = status.phase.unwrap_or_default();
                return if phase == RunPhase::Succeeded {
                    (
                        "completed",
                        StatusCode::OK,
                        status.output.unwrap_or(Value::Null),
                    )
                } else {
                    (
                        "run_failed",
                        StatusCode::BAD_GATEWAY,
                        json!({
                            "run": name,
                            "phase": format!("{phase:?}"),
                            "reason": status.reason,
                            "message": status.message,
                        }),
                    )
                };
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, run = %name, "failed to read the run's status"),
        }
        let now = Instant::now();
        if now >= deadline {
            return ("accepted", StatusCode::ACCEPTED, json!({ "run": name }));
        }
        tokio::time::sleep(server.settings.poll_interval.min(deadline - now)).await;
    }
}

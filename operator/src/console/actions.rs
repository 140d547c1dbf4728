//! What a signed-in user does and sees live through the console, sent to
//! the Kubernetes API as that user: the operator's client carries
//! `Impersonate-User` and `Impersonate-Group` headers with the identity
//! TokenReview gave, so the API server's RBAC (and admission, which
//! records who created a run) decides, never the operator's own rights.
//! The chart grants the operator `impersonate` on users and groups for
//! this.
//!
//! - `GET /api/workflows?namespace=`: the namespace's Workflows (live)
//! - `GET /api/workflows/{namespace}/{name}`: one Workflow (its input schema
//!   feeds the run-now form)
//! - `POST /api/workflows/{namespace}/{name}/runs` `{"input": …}`: run now
//! - `POST /api/runs/{namespace}/{name}/cancel`: sets `spec.cancel`
//! - `POST /api/runs/{namespace}/{name}/resume`: a new run with
//!   `spec.resumeFrom` (the README's resume)
//! - `GET /api/schedules?namespace=`: the namespace's Schedules (live)
//! - `POST /api/schedules/{namespace}/{name}/suspend` `{"suspend": bool}`
//!
//! Every POST carries the session's CSRF token (checked in [`SignedIn`]).

use super::identity::Identity;
use super::server::{ConsoleError, ConsoleState, SignedIn};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Where Sluice's resources are served.
const API_PREFIX: &str = "/apis/sluice.dev/v1alpha1/namespaces";
/// Content type of a JSON merge patch.
const MERGE_PATCH: &str = "application/merge-patch+json";

/// The request headers that make the API server act as `identity`.
pub fn build_impersonation_headers(identity: &Identity) -> Vec<(&'static str, String)> {
    let mut headers = vec![("Impersonate-User", identity.username.clone())];
    headers.extend(
        identity
            .groups
            .iter()
            .map(|group| ("Impersonate-Group", group.clone())),
    );
    headers
}

/// The path of `plural` (and an object of it) in `namespace`.
pub fn build_path(namespace: &str, plural: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{API_PREFIX}/{namespace}/{plural}/{name}"),
        None => format!("{API_PREFIX}/{namespace}/{plural}"),
    }
}

/// A Kubernetes name segment: lowercase letters, digits, `-` and `.`.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), ConsoleError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
        });
    if valid {
        Ok(())
    } else {
        Err(ConsoleError(
            StatusCode::BAD_REQUEST,
            format!(
                "{what} {name:?} is not a Kubernetes name: use lowercase letters, digits, '-' and '.'"
            ),
        ))
    }
}

/// Sends one request to the API server as the signed-in user; the API
/// server's refusal (403, 404, 422 …) is passed on with its message.
pub(super) async fn send_as(
    state: &ConsoleState,
    signed_in: &SignedIn,
    method: Method,
    path: &str,
    body: Option<(&str, Value)>,
) -> Result<Value, ConsoleError> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in build_impersonation_headers(&signed_in.session.identity) {
        let value = HeaderValue::from_str(&value).map_err(|_| {
            ConsoleError(
                StatusCode::BAD_REQUEST,
                "the signed-in identity cannot be sent in a header".to_owned(),
            )
        })?;
        builder = builder.header(name, value);
    }
    let bytes = match body {
        Some((content_type, body)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            serde_json::to_vec(&body).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let request = builder.body(bytes).map_err(|error| {
        ConsoleError(
            StatusCode::BAD_REQUEST,
            format!("failed to build the request: {error}"),
        )
    })?;
    match state.authority.client().request_text(request).await {
        Ok(text) => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(kube::Error::Api(status)) => {
            let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::BAD_GATEWAY);
            Err(ConsoleError(code, status.message))
        }
        Err(error) => {
            tracing::warn!(%error, "console failed to reach the API server");
            Err(ConsoleError(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to reach the Kubernetes API: try again".to_owned(),
            ))
        }
    }
}

#[derive(Deserialize)]
pub struct NamespaceQuery {
    pub(super) namespace: String,
}

/// A Workflow as the console's pages show it.
pub fn build_workflow_view(workflow: &Value) -> Value {
    let conditions = workflow
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "name": workflow.pointer("/metadata/name"),
        "namespace": workflow.pointer("/metadata/namespace"),
        "description": workflow.pointer("/spec/description"),
        "suspended": workflow.pointer("/spec/suspend").cloned().unwrap_or(Value::Bool(false)),
        "ready": ready.get("status").cloned().unwrap_or(Value::Null),
        "readyReason": ready.get("reason").cloned().unwrap_or(Value::Null),
        "readyMessage": ready.get("message").cloned().unwrap_or(Value::Null),
        "validationErrors": workflow.pointer("/status/validationErrors").cloned().unwrap_or(json!([])),
        "lastRun": workflow.pointer("/status/lastRun").cloned().unwrap_or(Value::Null),
        "runs": workflow.pointer("/status/runs").cloned().unwrap_or(Value::Null),
        "inputSchema": workflow.pointer("/spec/input/schema").cloned().unwrap_or(Value::Null),
        "inputDefaults": workflow.pointer("/spec/input/defaults").cloned().unwrap_or(Value::Null),
        "nodes": workflow.pointer("/spec/nodes").cloned().unwrap_or(json!([])),
    })
}

/// The items of `plural` in `namespace`, listed as the signed-in user.
pub(super) async fn list_as(
    state: &ConsoleState,
    signed_in: &SignedIn,
    namespace: &str,
    plural: &str,
) -> Result<Vec<Value>, ConsoleError> {
    check_name("namespace", namespace)?;
    let path = build_path(namespace, plural, None);
    let mut list = send_as(state, signed_in, Method::GET, &path, None).await?;
    Ok(match list["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

pub async fn list_workflows(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<NamespaceQuery>,
) -> Result<Json<Value>, ConsoleError> {
    let items = list_as(&state, &signed_in, &query.namespace, "workflows").await?;
    // Run statistics come from the history database: only for a user who
    // may list the namespace's runs.
    let access = super::identity::Access {
        namespace: &query.namespace,
        verb: "list",
        resource: "workflowruns",
    };
    let stats = if state
        .authority
        .allowed(&signed_in.session.identity, &access)
        .await?
    {
        let since = chrono::Utc::now() - super::stats::WINDOW;
        Some(super::stats::workflow_stats(&state.pool, &query.namespace, since).await?)
    } else {
        None
    };
    let workflows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut view = build_workflow_view(item);
            if let Some(stats) = &stats {
                let name = view["name"].as_str().unwrap_or_default();
                // No run in the window: zero runs, no rate, no p50.
                view["stats7d"] = serde_json::to_value(stats.get(name).cloned().unwrap_or(
                    super::stats::WorkflowStats {
                        runs: 0,
                        succeeded: 0,
                        failed: 0,
                        success_rate: None,
                        p50_duration_ms: None,
                    },
                ))
                .unwrap_or(Value::Null);
            }
            view
        })
        .collect();
    Ok(Json(json!({ "workflows": workflows })))
}

pub async fn show_workflow(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("workflow", &name)?;
    let workflow = send_as(
        &state,
        &signed_in,
        Method::GET,
        &build_path(&namespace, "workflows", Some(&name)),
        None,
    )
    .await?;
    Ok(Json(build_workflow_view(&workflow)))
}

#[derive(Deserialize, Default)]
pub struct RunNow {
    #[serde(default)]
    input: Option<Value>,
}

/// A new WorkflowRun of `workflow` (named by the API server after it).
pub fn build_run(workflow: &str, spec: Value) -> Value {
    let mut full_spec = json!({"workflowRef": {"name": workflow}});
    if let (Some(full), Some(extra)) = (full_spec.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"generateName": format!("{workflow}-")},
        "spec": full_spec,
    })
}

fn created(run: &Value) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({
            "name": run.pointer("/metadata/name"),
            "namespace": run.pointer("/metadata/namespace"),
        })),
    )
}

pub async fn run_now(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, workflow)): Path<(String, String)>,
    Json(request): Json<RunNow>,
) -> Result<(StatusCode, Json<Value>), ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("workflow", &workflow)?;
    let spec = match request.input {
        Some(input) => json!({ "input": input }),
        None => json!({}),
    };
    let run = send_as(
        &state,
        &signed_in,
        Method::POST,
        &build_path(&namespace, "workflowruns", None),
        Some(("application/json", build_run(&workflow, spec))),
    )
    .await?;
    tracing::info!(user = %signed_in.session.identity.username, %namespace, %workflow, "console: run now");
    Ok(created(&run))
}

pub async fn cancel_run(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("run", &name)?;
    send_as(
        &state,
        &signed_in,
        Method::PATCH,
        &build_path(&namespace, "workflowruns", Some(&name)),
        Some((MERGE_PATCH, json!({"spec": {"cancel": true}}))),
    )
    .await?;
    tracing::info!(user = %signed_in.session.identity.username, %namespace, run = %name, "console: cancel");
    Ok(Json(json!({"name": name, "cancelled": true})))
}

pub async fn resume_run(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("run", &name)?;
    let failed = send_as(
        &state,
        &signed_in,
        Method::GET,
        &build_path(&namespace, "workflowruns", Some(&name)),
        None,
    )
    .await?;
    let workflow = failed
        .pointer("/spec/workflowRef/name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ConsoleError(
                StatusCode::CONFLICT,
                format!("run {name} names no workflow to resume"),
            )
        })?
        .to_owned();
    let run = send_as(
        &state,
        &signed_in,
        Method::POST,
        &build_path(&namespace, "workflowruns", None),
        Some((
            "application/json",
            build_run(&workflow, json!({"resumeFrom": name})),
        )),
    )
    .await?;
    tracing::info!(user = %signed_in.session.identity.username, %namespace, run = %name, "console: resume");
    Ok(created(&run))
}

pub async fn list_schedules(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<NamespaceQuery>,
) -> Result<Json<Value>, ConsoleError> {
    let items = list_as(&state, &signed_in, &query.namespace, "schedules").await?;
    // Recent fires are the schedules' runs; a user who may not list runs
    // still sees the schedules, without them.
    let runs = send_as(
        &state,
        &signed_in,
        Method::GET,
        &format!(
            "{}?labelSelector={}",
            build_path(&query.namespace, "workflowruns", None),
            crate::schedule::controller::SCHEDULE_LABEL.replace('/', "%2F")
        ),
        None,
    )
    .await
    .ok()
    .map(|list| list["items"].as_array().cloned().unwrap_or_default());
    let now = chrono::Utc::now();
    let schedules: Vec<Value> = items
        .iter()
        .map(|schedule| super::schedules::build_schedule_view(schedule, runs.as_deref(), now))
        .collect();
    Ok(Json(json!({ "schedules": schedules })))
}

#[derive(Deserialize)]
pub struct Suspend {
    suspend: bool,
}

pub async fn suspend_schedule(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
    Json(request): Json<Suspend>,
) -> Result<Json<Value>, ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("schedule", &name)?;
    send_as(
        &state,
        &signed_in,
        Method::PATCH,
        &build_path(&namespace, "schedules", Some(&name)),
        Some((MERGE_PATCH, json!({"spec": {"suspend": request.suspend}}))),
    )
    .await?;
    tracing::info!(user = %signed_in.session.identity.username, %namespace, schedule = %name, suspend = request.suspend, "console: suspend");
    Ok(Json(json!({"name": name, "suspended": request.suspend})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_users_identity_not_the_operators() {
        let identity = Identity {
            username: "ada".to_owned(),
            groups: vec!["team".to_owned(), "system:authenticated".to_owned()],
            ..Identity::default()
        };
        assert_eq!(
            build_impersonation_headers(&identity),
            [
                ("Impersonate-User", "ada".to_owned()),
                ("Impersonate-Group", "team".to_owned()),
                ("Impersonate-Group", "system:authenticated".to_owned()),
            ]
        );
    }

    #[test]
    fn a_run_now_is_a_workflow_run_named_after_its_workflow() {
        let run = build_run("greeting", json!({"input": {"name": "ada"}}));
        assert_eq!(run["metadata"]["generateName"], "greeting-");
        assert_eq!(
            run["spec"],
            json!({"workflowRef": {"name": "greeting"}, "input": {"name": "ada"}})
        );
        assert_eq!(
            build_path("team", "workflowruns", Some("r-1")),
            "/apis/sluice.dev/v1alpha1/namespaces/team/workflowruns/r-1"
        );
    }

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        assert!(check_name("run", "greeting-1").is_ok());
        for bad in ["", "../secrets", "a/b", "A", "x?y"] {
            assert!(check_name("run", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_workflow_view_has_its_readiness_and_input_schema() {
        let view = build_workflow_view(&json!({
            "metadata": {"name": "greeting", "namespace": "team"},
            "spec": {"input": {"schema": {"type": "object"}}, "nodes": [{"name": "a"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Invalid", "message": "bad"}]},
        }));
        assert_eq!(view["ready"], "False");
        assert_eq!(view["readyReason"], "Invalid");
        assert_eq!(view["inputSchema"], json!({"type": "object"}));
    }
}

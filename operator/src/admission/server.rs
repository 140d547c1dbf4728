//! The admission HTTP handlers: `POST /validate` and `POST /mutate`, each
//! taking and answering an `admission.k8s.io/v1` AdmissionReview.
//!
//! `/validate` looks up what [`rules::needs`] asks for through a [`Lookup`]
//! and answers with [`rules::judge`]'s verdict: refusals become a 422
//! `Invalid` status whose message lists every `field: message` and whose
//! causes carry the field paths; warnings travel as admission warnings.
//! A failed lookup never refuses a write: the object is judged without it
//! and a warning says so (the controllers check again later).
//!
//! `/mutate` answers with [`creator::plan_creator_patch`]'s JSON patch,
//! naming the trigger of a run the operator starts ([`creator::creator_of`]).
//! Neither handler writes anything to Kubernetes.

use super::creator::{self, Requester};
use super::rules::{self, Kind, Needs, Observed};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use futures::future::BoxFuture;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use serde_json::Value;
use sluice_crds::Workflow;
use std::sync::Arc;

/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate";
/// Path of the mutating webhook.
pub const MUTATE_PATH: &str = "/mutate";
/// Largest AdmissionReview accepted (an object may be 3 MiB, and a review
/// carries the old object too).
pub const MAX_REVIEW_BYTES: usize = 8 << 20;
/// Most refusals listed in the message (all are in the causes).
const MAX_LISTED: usize = 20;

/// A failed lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to {action}: {message}")]
pub struct LookupError {
    /// What was attempted, e.g. "read the workflow".
    pub action: &'static str,
    /// Why it failed.
    pub message: String,
}

/// The reads admission needs from Kubernetes.
pub trait Lookup: Send + Sync {
    /// The Workflow `name` in `namespace`, if it exists.
    fn workflow<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, LookupError>>;

    /// The names of the Connections in `namespace`.
    fn connection_names<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>>;

    /// Whether the Secret `name` exists in `namespace`.
    fn secret_exists<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, LookupError>>;

    /// The plan `namespace` is on, with the namespace's runs when a limit
    /// counts them; None without a plan (the default: no quotas).
    fn quota<'a>(
        &'a self,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<rules::Quota>, LookupError>> {
        Box::pin(async { Ok(None) })
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    lookup: Arc<dyn Lookup>,
    /// The operator's own Kubernetes username, whose runs name their trigger.
    operator: Option<Arc<str>>,
}

/// The router serving both webhooks over `lookup`. `operator` is the
/// operator's own Kubernetes username (its service account): runs it
/// creates for a trigger are recorded as created by that trigger
/// ([`creator::creator_of`]); None records every requester as is.
pub fn router(lookup: Arc<dyn Lookup>, operator: Option<String>) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .route(MUTATE_PATH, post(mutate))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(Shared {
            lookup,
            operator: operator.filter(|name| !name.is_empty()).map(Arc::from),
        })
}

type Review = AdmissionReview<DynamicObject>;

fn answer(response: AdmissionResponse) -> Response {
    let mut review = serde_json::to_value(response.into_review()).unwrap_or(Value::Null);
    // kube serializes the patch bytes as a JSON array of numbers; the API
    // documents `patch` as base64 (Go's encoding of []byte), so send that.
    if let Some(patch) = review.pointer_mut("/response/patch")
        && let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone())
    {
        *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    (StatusCode::OK, axum::Json(review)).into_response()
}

/// A review's request, with its objects as plain JSON.
pub struct Request {
    /// The request; its `object` and `oldObject` are moved out into the
    /// two fields below.
    pub request: AdmissionRequest<DynamicObject>,
    /// `request.object`.
    pub object: Option<Value>,
    /// `request.oldObject`.
    pub old_object: Option<Value>,
}

/// The request inside a review body, or why there is none.
///
/// The body is read into one JSON tree and the objects are moved out of it
/// before the rest is read as kube's types: a 1,000-node workflow is read
/// once, not buffered and copied again through `DynamicObject`.
pub fn request_of(body: &[u8]) -> Result<Request, String> {
    let mut review: Value = serde_json::from_slice(body)
        .map_err(|error| format!("failed to read the AdmissionReview: {error}"))?;
    let mut take = |field: &str| {
        review
            .get_mut("request")
            .and_then(|request| request.get_mut(field))
            .map(Value::take)
            .filter(|object| !object.is_null())
    };
    let object = take("object");
    let old_object = take("oldObject");
    let review: Review = serde_json::from_value(review)
        .map_err(|error| format!("failed to read the AdmissionReview: {error}"))?;
    let request = review
        .try_into()
        .map_err(|_| "failed to read the AdmissionReview: it carries no request".to_owned())?;
    Ok(Request {
        request,
        object,
        old_object,
    })
}

/// Judges one review; public for the benchmark.
pub async fn review(lookup: &dyn Lookup, request: &Request) -> AdmissionResponse {
    let Request {
        request,
        object,
        old_object,
    } = request;
    let response = AdmissionResponse::from(request);
    let Some(kind) = Kind::from_kind(&request.kind.kind) else {
        return response;
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = object else {
        return response.deny("the AdmissionReview carries no object");
    };
    let old = old_object
        .as_ref()
        .filter(|_| request.operation == Operation::Update);
    let namespace = request.namespace.clone().unwrap_or_default();
    let mut lookup_warnings = Vec::new();
    let mut needs = rules::needs(kind, object);
    // Quotas judge a run once, when it is created.
    needs.quota &= old.is_none();
    let observed = observe(lookup, &namespace, &needs, &mut lookup_warnings).await;
    let mut verdict = rules::judge(kind, object, old, &observed);
    verdict.warnings.extend(lookup_warnings);
    let mut response = response;
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings.clone());
    }
    if verdict.allowed() {
        return response;
    }
    let name = if request.name.is_empty() {
        object
            .pointer("/metadata/name")
            .or_else(|| object.pointer("/metadata/generateName"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        request.name.clone()
    };
    let mut listed: Vec<String> = verdict
        .refusals
        .iter()
        .take(MAX_LISTED)
        .map(|refusal| format!("{}: {}", refusal.field, refusal.message))
        .collect();
    if verdict.refusals.len() > MAX_LISTED {
        listed.push(format!(
            "and {} more errors",
            verdict.refusals.len() - MAX_LISTED
        ));
    }
    let mut response = response.deny(format!(
        "{} {name:?} is invalid: {}",
        request.kind.kind,
        listed.join("; ")
    ));
    response.result.code = 422;
    response.result.reason = "Invalid".to_owned();
    response.result.details = Some(StatusDetails {
        name,
        group: request.kind.group.clone(),
        kind: request.kind.kind.clone(),
        uid: String::new(),
        causes: verdict
            .refusals
            .iter()
            .map(|refusal| StatusCause {
                reason: "FieldValueInvalid".to_owned(),
                message: refusal.message.clone(),
                field: refusal.field.clone(),
            })
            .collect(),
        retry_after_seconds: 0,
    });
    response
}

async fn observe(
    lookup: &dyn Lookup,
    namespace: &str,
    needs: &Needs,
    warnings: &mut Vec<String>,
) -> Observed {
    let mut observed = Observed::default();
    let mut failed = |error: LookupError| {
        warnings.push(format!(
            "admission could not check references ({error}): the controller checks them shortly"
        ))
    };
    if let Some(name) = &needs.workflow {
        match lookup.workflow(namespace, name).await {
            Ok(workflow) => observed.workflow = workflow,
            Err(error) => failed(error),
        }
    }
    if needs.connections {
        match lookup.connection_names(namespace).await {
            Ok(names) => observed.connections = names,
            Err(error) => failed(error),
        }
    }
    if needs.quota {
        observed.now = chrono::Utc::now();
        match lookup.quota(namespace).await {
            Ok(quota) => observed.quota = quota,
            // The controller counts again at admission: nothing slips by.
            Err(error) => failed(error),
        }
    }
    if let Some(name) = &needs.secret {
        match lookup.secret_exists(namespace, name).await {
            Ok(exists) => observed.secret_exists = exists,
            Err(error) => {
                // Unknown: do not warn about a Secret that may well exist.
                observed.secret_exists = true;
                failed(error)
            }
        }
    }
    observed
}

async fn validate(State(shared): State<Shared>, body: axum::body::Bytes) -> Response {
    match request_of(&body) {
        Ok(request) => answer(review(shared.lookup.as_ref(), &request).await),
        Err(message) => answer(AdmissionResponse::invalid(message)),
    }
}

/// The mutating answer for one review, `operator` being the operator's own
/// username; public for tests.
pub fn mutation(request: &Request, operator: Option<&str>) -> AdmissionResponse {
    let Request {
        request,
        object,
        old_object,
    } = request;
    let response = AdmissionResponse::from(request);
    let creatable = matches!(
        Kind::from_kind(&request.kind.kind),
        Some(Kind::Workflow | Kind::WorkflowRun)
    );
    if !creatable || !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = object else {
        return response;
    };
    let old = old_object
        .as_ref()
        .filter(|_| request.operation == Operation::Update);
    let requester = Requester {
        username: request.user_info.username.clone().unwrap_or_default(),
        groups: request.user_info.groups.clone().unwrap_or_default(),
    };
    // Only a new run can be started by a trigger; an update keeps the
    // stored creator whoever sends it.
    let requester = if old.is_none() && request.kind.kind == "WorkflowRun" {
        creator::creator_of(&requester, operator, object)
    } else {
        requester
    };
    let operations = creator::plan_creator_patch(&requester, object, old);
    if operations.is_empty() {
        return response;
    }
    match response.clone().with_patch(json_patch::Patch(operations)) {
        Ok(patched) => patched,
        Err(error) => response.deny(format!("failed to build the creator patch: {error}")),
    }
}

async fn mutate(State(shared): State<Shared>, body: axum::body::Bytes) -> Response {
    match request_of(&body) {
        Ok(request) => answer(mutation(&request, shared.operator.as_deref())),
        Err(message) => answer(AdmissionResponse::invalid(message)),
    }
}

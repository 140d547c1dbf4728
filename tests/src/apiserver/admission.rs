//! Dynamic admission, as kube-apiserver does it: every create or update of
//! an object is sent as an `admission.k8s.io/v1` AdmissionReview to the
//! webhooks of the stored MutatingWebhookConfigurations (first, in order of
//! configuration name, their JSON patches applied one after another) and
//! then ValidatingWebhookConfigurations whose rules match the request's
//! group, version, resource (with `/status` for status writes) and
//! operation.
//!
//! Followed from the Kubernetes documentation: `clientConfig.url` over
//! HTTPS verified against `caBundle`, `timeoutSeconds` (default 10),
//! `failurePolicy` (default Fail: an unreachable webhook refuses the write
//! with 500 InternalError "failed calling webhook"; Ignore admits it), a
//! denial answered with the webhook's status code, reason and details and
//! the message `admission webhook "<name>" denied the request: <message>`,
//! `warnings` passed to the client as `Warning: 299 - "<text>"` headers,
//! `dryRun` passed on (the write itself is then not stored).
//!
//! Not done: `clientConfig.service` (nothing resolves Services on loopback:
//! such a call fails and `failurePolicy` decides), `namespaceSelector`,
//! `objectSelector`, `matchConditions`, `matchPolicy: Equivalent` across
//! versions, reinvocation, authentication of the stand-in to the webhook.
//! The requester is `kubernetes-admin` (groups `system:masters`,
//! `system:authenticated`) unless the request impersonates someone with
//! `Impersonate-User` / `Impersonate-Group` headers (kube's and kubectl's
//! `--as` / `--as-group`), which the stand-in allows without checking.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use super::registry::ResourceType;
use super::status::{ApiError, ApiResult};
use super::store::{Store, meta_str};

/// The webhook configuration kinds, as (group, plural).
pub(crate) const MUTATING: (&str, &str) = (
    "admissionregistration.k8s.io",
    "mutatingwebhookconfigurations",
);
/// See [`MUTATING`].
pub(crate) const VALIDATING: (&str, &str) = (
    "admissionregistration.k8s.io",
    "validatingwebhookconfigurations",
);

/// CREATE or UPDATE (the only operations the stand-in sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
        }
    }
}

/// Who sent the request.
#[derive(Clone, Debug)]
pub(crate) struct UserInfo {
    username: String,
    groups: Vec<String>,
}

impl UserInfo {
    /// The requester of a request with these headers.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let user = headers
            .get("impersonate-user")
            .and_then(|value| value.to_str().ok())
            .filter(|user| !user.is_empty());
        match user {
            Some(user) => {
                let mut groups: Vec<String> = headers
                    .get_all("impersonate-group")
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .map(str::to_owned)
                    .collect();
                if !groups.iter().any(|group| group == "system:authenticated") {
                    groups.push("system:authenticated".to_owned());
                }
                Self {
                    username: user.to_owned(),
                    groups,
                }
            }
            None => Self {
                username: "kubernetes-admin".to_owned(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        }
    }
}

/// One webhook to call.
#[derive(Clone, Debug)]
pub(crate) struct Hook {
    name: String,
    mutating: bool,
    url: Option<String>,
    ca_bundle: Option<Vec<u8>>,
    ignore_failures: bool,
    timeout: Duration,
}

/// What is being written.
pub(crate) struct Attributes<'a> {
    pub(crate) resource: &'a ResourceType,
    pub(crate) version: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) operation: Operation,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) object: &'a Value,
    pub(crate) old: Option<&'a Value>,
    pub(crate) user: &'a UserInfo,
    pub(crate) dry_run: bool,
}

fn listed_matches(list: Option<&Value>, wanted: &str) -> bool {
    list.and_then(Value::as_array).is_some_and(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .any(|item| item == "*" || item == wanted)
    })
}

fn rule_matches(rule: &Value, attributes: &Attributes<'_>) -> bool {
    let resource = match attributes.subresource {
        Some(sub) => format!("{}/{sub}", attributes.resource.plural),
        None => attributes.resource.plural.clone(),
    };
    let resource_listed = rule
        .get("resources")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items.iter().filter_map(Value::as_str).any(|item| {
                item == resource
                    || (item == "*" && attributes.subresource.is_none())
                    || item == "*/*"
                    || (attributes.subresource.is_some()
                        && item == format!("*/{}", attributes.subresource.unwrap_or_default()))
            })
        });
    listed_matches(rule.get("apiGroups"), &attributes.resource.group)
        && listed_matches(rule.get("apiVersions"), attributes.version)
        && listed_matches(rule.get("operations"), attributes.operation.as_str())
        && resource_listed
}

/// The webhooks that apply to `attributes`: mutating ones first, each kind
/// in order of configuration name. Webhook configurations themselves are
/// never admitted (as on a real server).
pub(crate) fn matching(store: &Store, attributes: &Attributes<'_>) -> Vec<Hook> {
    if attributes.resource.group == MUTATING.0 {
        return Vec::new();
    }
    // `registry()` takes the lock itself: read it before locking.
    let registry = store.registry();
    let state = store.lock();
    let mut hooks = Vec::new();
    for (mutating, (group, plural)) in [(true, MUTATING), (false, VALIDATING)] {
        let Some(resource) = registry.resolve(group, "v1", plural) else {
            continue;
        };
        let mut configurations: Vec<&Value> = state.list(&resource.key(), None);
        configurations.sort_by_key(|configuration| meta_str(configuration, "name").to_owned());
        for configuration in configurations {
            for webhook in configuration
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let rules = webhook.get("rules").and_then(Value::as_array);
                if !rules
                    .is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, attributes)))
                {
                    continue;
                }
                let client = &webhook["clientConfig"];
                hooks.push(Hook {
                    name: webhook["name"].as_str().unwrap_or_default().to_owned(),
                    mutating,
                    url: client["url"].as_str().map(str::to_owned),
                    ca_bundle: client["caBundle"].as_str().and_then(|text| {
                        base64::engine::general_purpose::STANDARD.decode(text).ok()
                    }),
                    ignore_failures: webhook["failurePolicy"].as_str() == Some("Ignore"),
                    timeout: Duration::from_secs(webhook["timeoutSeconds"].as_u64().unwrap_or(10)),
                });
            }
        }
    }
    hooks
}

/// The object after admission, and the warnings to pass on.
pub(crate) struct Admitted {
    pub(crate) object: Value,
    pub(crate) warnings: Vec<String>,
}

/// Calls `hooks` in order on `attributes`.
pub(crate) async fn admit(hooks: &[Hook], attributes: &Attributes<'_>) -> ApiResult<Admitted> {
    let mut object = attributes.object.clone();
    let mut warnings = Vec::new();
    for hook in hooks {
        let review = review_body(attributes, &object);
        let response = match call(hook, &review).await {
            Ok(response) => response,
            Err(_) if hook.ignore_failures => continue,
            Err(message) => {
                return Err(ApiError::internal(format!(
                    "Internal error occurred: failed calling webhook \"{}\": {message}",
                    hook.name
                )));
            }
        };
        if let Some(list) = response.get("warnings").and_then(Value::as_array) {
            warnings.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if response.get("allowed").and_then(Value::as_bool) != Some(true) {
            return Err(denial(&hook.name, response.get("status")));
        }
        if hook.mutating
            && let Some(patch) = response.get("patch")
        {
            object = apply_patch(&hook.name, object, patch)?;
        }
    }
    Ok(Admitted { object, warnings })
}

fn review_body(attributes: &Attributes<'_>, object: &Value) -> Value {
    let resource = attributes.resource;
    let gvk =
        json!({"group": resource.group, "version": attributes.version, "kind": resource.kind});
    let gvr = json!({"group": resource.group, "version": attributes.version, "resource": resource.plural});
    let mut request = json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": attributes.name,
        "operation": attributes.operation.as_str(),
        "userInfo": {"username": attributes.user.username, "groups": attributes.user.groups},
        "object": object,
        "oldObject": attributes.old.cloned().unwrap_or(Value::Null),
        "dryRun": attributes.dry_run,
        "options": match attributes.operation {
            Operation::Create => json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}),
            Operation::Update => json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}),
        },
    });
    if resource.namespaced {
        request["namespace"] = json!(attributes.namespace);
    }
    if let Some(subresource) = attributes.subresource {
        request["subResource"] = json!(subresource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn client_for(hook: &Hook) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = &hook.ca_bundle {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for certificate in CertificateDer::pem_slice_iter(bundle) {
            let certificate = certificate.map_err(|error| format!("bad caBundle: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("bad caBundle: {error}"))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(hook.timeout)
        .build()
        .map_err(|error| error.to_string())
}

async fn call(hook: &Hook, review: &Value) -> Result<Value, String> {
    let Some(url) = &hook.url else {
        return Err(
            "the stand-in cannot reach clientConfig.service: give the webhook a clientConfig.url"
                .to_owned(),
        );
    };
    if !url.starts_with("https://") {
        return Err(format!("webhook URL {url} is not https"));
    }
    let client = client_for(hook)?;
    let response = client
        .post(url)
        .json(review)
        .send()
        .await
        .map_err(|error| format!("failed to call webhook: {error:?}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "expected response.uid, got HTTP {}",
            response.status()
        ));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|error| format!("failed to decode the response: {error}"))?;
    if answer["response"]["uid"] != review["request"]["uid"] {
        return Err("the response's uid does not match the request's".to_owned());
    }
    Ok(answer["response"].clone())
}

fn static_reason(reason: &str, code: u16) -> &'static str {
    match reason {
        "Invalid" => "Invalid",
        "Forbidden" => "Forbidden",
        "Conflict" => "Conflict",
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Unauthorized" => "Unauthorized",
        "TooManyRequests" => "TooManyRequests",
        "InternalError" => "InternalError",
        _ if code == 422 => "Invalid",
        _ if code == 403 => "Forbidden",
        _ => "BadRequest",
    }
}

fn denial(hook: &str, status: Option<&Value>) -> ApiError {
    let status = status.cloned().unwrap_or_else(|| json!({}));
    let code = status["code"]
        .as_u64()
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| *code >= 400)
        .unwrap_or(400);
    let message = status["message"].as_str().unwrap_or_default();
    let message = if message.is_empty() {
        format!("admission webhook \"{hook}\" denied the request without explanation")
    } else {
        format!("admission webhook \"{hook}\" denied the request: {message}")
    };
    ApiError {
        code,
        reason: static_reason(status["reason"].as_str().unwrap_or_default(), code),
        message,
        details: status.get("details").cloned(),
    }
}

fn apply_patch(hook: &str, mut object: Value, patch: &Value) -> ApiResult<Value> {
    // Documented as base64 of a JSON patch; Go also decodes a JSON array of
    // byte values into []byte, so both are accepted.
    let bytes = match patch {
        Value::String(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| {
                ApiError::internal(format!(
                    "webhook \"{hook}\" sent a patch that is not base64: {error}"
                ))
            })?,
        other => serde_json::from_value::<Vec<u8>>(other.clone()).map_err(|error| {
            ApiError::internal(format!(
                "webhook \"{hook}\" sent an unreadable patch: {error}"
            ))
        })?,
    };
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::internal(format!(
            "webhook \"{hook}\" sent a patch that is not a JSON patch: {error}"
        ))
    })?;
    json_patch::patch(&mut object, &patch).map_err(|error| {
        ApiError::internal(format!(
            "webhook \"{hook}\" sent a patch that does not apply: {error}"
        ))
    })?;
    Ok(object)
}

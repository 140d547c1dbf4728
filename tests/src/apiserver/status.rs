//! Kubernetes `Status` error bodies for the API server stand-in.
//!
//! Every failed request answers with a `meta/v1 Status` whose `code`,
//! `reason` and `details` follow the API conventions, because clients branch
//! on them (`kube::Error::Api(status)` with `status.reason == "Conflict"`).
//! This module only builds errors; it does not decide when to raise them.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// A request that failed, rendered as a `Status` body with the HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code, mirrored in `Status.code`.
    pub code: u16,
    /// Machine-readable `Status.reason` (NotFound, AlreadyExists, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `Status.details` (name, group, kind, causes), if any.
    pub details: Option<Value>,
}

/// What a resource error is about, for `Status.details`.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// API group of the resource ("" for core).
    pub group: &'a str,
    /// Plural resource name, used as `details.kind` like the real server.
    pub plural: &'a str,
    /// Object name.
    pub name: &'a str,
}

impl Subject<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        json!({"name": self.name, "group": self.group, "kind": self.plural})
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a missing object.
    pub fn not_found(subject: Subject<'_>) -> Self {
        let mut error = Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", subject.qualified(), subject.name),
        );
        error.details = Some(subject.details());
        error
    }

    /// 404 for a path the server does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 for a create whose name is taken.
    pub fn already_exists(subject: Subject<'_>) -> Self {
        let mut error = Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{}\" already exists",
                subject.qualified(),
                subject.name
            ),
        );
        error.details = Some(subject.details());
        error
    }

    /// 409 for a write based on a stale `resourceVersion`.
    pub fn conflict(subject: Subject<'_>) -> Self {
        let mut error = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                subject.qualified(),
                subject.name
            ),
        );
        error.details = Some(subject.details());
        error
    }

    /// 422 for an object that fails validation; `field` is the offending path.
    pub fn invalid(subject: Subject<'_>, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut details = subject.details();
        details["causes"] =
            json!([{"reason": "FieldValueInvalid", "message": message, "field": field}]);
        let mut error = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: {field}: {message}",
                subject.qualified(),
                subject.name
            ),
        );
        error.details = Some(details);
        error
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 for a patch type the server does not accept.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 410 for a watch or continue token older than the kept history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 500 for a failure inside the server (a webhook it could not call).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 403 for writes into a namespace that is being deleted.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// The `Status` object clients decode.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    /// The HTTP status code.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Result of a stand-in operation.
pub type ApiResult<T> = Result<T, ApiError>;

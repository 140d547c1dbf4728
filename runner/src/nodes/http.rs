//! The `http` node type: sends one HTTP request and returns
//! `{status, headers, body}`.
//!
//! A relative `url` is resolved against the Connection's `baseUrl` and the
//! Connection's credentials are added (see [`auth`]). Connection failures,
//! timeouts, 408, 429 and 5xx are retryable; other unexpected statuses are
//! permanent. This module must never put a credential into the output, an
//! error or a log line: request headers are not part of the output, and
//! anything the server echoes back passes through the connection's
//! [`Redactor`] first.

pub(crate) mod auth;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use crate::budget::MemoryBudget;
use crate::connections::Redactor;
use crate::node::{Attempt, BoxFuture, LogLevel, Node, NodeContext, NodeError, parse_params};
use auth::Auth;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sluice_crds::nodes::{HttpMethod, ResponseFormat};
use sluice_crds::{ConnectionType, NodeType};
use std::time::Instant;

/// The `http` node type.
#[derive(Debug, Default)]
pub struct HttpNode;

/// How much of an error response body an error message quotes.
const SNIPPET_CHARS: usize = 200;

impl Node for HttpNode {
    fn node_type(&self) -> NodeType {
        NodeType::Http
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(execute(params, attempt, context))
    }
}

async fn execute(
    params: Value,
    attempt: &Attempt,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let params: sluice_crds::nodes::HttpNode = parse_params(NodeType::Http, params)?;
    let mut redactor = Redactor::default();
    let (base_url, auth) = match params.connection.as_deref() {
        Some(name) => {
            let connection = context.connections.get(name)?;
            if connection.spec.type_ != ConnectionType::Http {
                return Err(NodeError::permanent(format!(
                    "connection {name:?} has type {}, but http nodes need a connection of type http",
                    connection.spec.type_.as_str()
                )));
            }
            redactor = connection.redactor();
            let auth = Auth::from_connection(&connection, &mut redactor)?;
            (connection.config("baseUrl").map(str::to_owned), auth)
        }
        None => (None, Auth::None),
    };
    let mut url = resolve_url(&params.url, base_url.as_deref())?;
    for (name, value) in &params.query {
        url.query_pairs_mut().append_pair(name, value);
    }
    let display_url = url_for_display(&url);
    auth.apply_to_url(&mut url);

    let method = match params.method.unwrap_or_default() {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
        HttpMethod::Head => reqwest::Method::HEAD,
        HttpMethod::Options => reqwest::Method::OPTIONS,
    };
    let headers = build_headers(&params.headers, params.body.as_ref())?;
    let body = build_body(params.body.as_ref());
    let follow_redirects = params.follow_redirects.unwrap_or(true);
    let client = if follow_redirects {
        context.http.clone()
    } else {
        no_redirect_client()?
    };

    let started = Instant::now();
    let what = format!("{method} {display_url}");
    let response = auth
        .send(
            context,
            || {
                let request = client
                    .request(method.clone(), url.clone())
                    .headers(headers.clone());
                match &body {
                    Some(bytes) => request.body(bytes.clone()),
                    None => request,
                }
            },
            &mut redactor,
        )
        .await
        .map_err(|mut error| {
            error.message = format!("{what}: {}", error.message);
            error
        })?;
    let status = response.status();
    let response_headers = headers_json(response.headers(), &redactor);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = read_body(response, &what, &redactor, &context.memory).await?;
    context.logs.log(
        &attempt.node,
        LogLevel::Info,
        &redactor.redact(&format!(
            "{what} answered {status} ({} bytes, {} ms)",
            bytes.len(),
            started.elapsed().as_millis()
        )),
    );

    let success = if params.success_status.is_empty() {
        status.is_success() || (!follow_redirects && status.is_redirection())
    } else {
        params.success_status.contains(&status.as_u16())
    };
    if !success {
        let mut error = status_error(&what, status, &bytes, &redactor);
        if matches!(status.as_u16(), 401 | 403) {
            error.message.push_str(match params.connection {
                Some(_) => ": check the connection's credentials",
                None => ": set `connection` to a Connection with credentials",
            });
        }
        return Err(error);
    }
    let body = parse_body(
        &bytes,
        &content_type,
        params.response_format.unwrap_or_default(),
    )
    .map_err(|reason| NodeError::permanent(format!("{what} answered {status} with {reason}")))?;
    Ok(json!({
        "status": status.as_u16(),
        "headers": response_headers,
        "body": redactor.redact_json(body),
    }))
}

/// `url` itself when absolute; otherwise `base` joined with it, keeping the
/// base's path (`https://api/v1` + `/users` = `https://api/v1/users`).
/// An absolute URL must share the base's origin, so a template cannot send
/// the connection's credentials to another host.
fn resolve_url(url: &str, base: Option<&str>) -> Result<reqwest::Url, NodeError> {
    let invalid =
        |e: &dyn std::fmt::Display| NodeError::permanent(format!("invalid url {url:?}: {e}"));
    let base = base
        .map(|base| {
            reqwest::Url::parse(base).map_err(|e| {
                NodeError::permanent(format!("invalid connection baseUrl {base:?}: {e}"))
            })
        })
        .transpose()?;
    let resolved = if has_scheme(url) {
        let absolute = reqwest::Url::parse(url).map_err(|e| invalid(&e))?;
        if let Some(base) = &base
            && absolute.origin() != base.origin()
        {
            return Err(NodeError::permanent(format!(
                "url {} is outside the connection's baseUrl {}: use a path relative to it, or no connection",
                url_for_display(&absolute),
                url_for_display(base)
            )));
        }
        absolute
    } else {
        let base = base.ok_or_else(|| {
            NodeError::permanent(format!(
                "url {url:?} is relative: give an absolute http(s) URL, or a connection with a baseUrl"
            ))
        })?;
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            url.trim_start_matches('/')
        );
        reqwest::Url::parse(&joined).map_err(|e| invalid(&e))?
    };
    if !matches!(resolved.scheme(), "http" | "https") {
        return Err(invalid(&"only http and https URLs are supported"));
    }
    Ok(resolved)
}

/// Whether `url` starts with `scheme:` (RFC 3986), i.e. is not a relative reference.
fn has_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `url` without its query string and credentials, for messages.
pub(crate) fn url_for_display(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn build_headers(
    headers: &std::collections::BTreeMap<String, String>,
    body: Option<&Value>,
) -> Result<HeaderMap, NodeError> {
    let mut map = HeaderMap::new();
    match body {
        Some(Value::String(_)) => {
            map.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| NodeError::permanent(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            NodeError::permanent(format!(
                "invalid value for header {name:?}: it must not contain line breaks or control characters"
            ))
        })?;
        map.insert(header, value);
    }
    Ok(map)
}

fn build_body(body: Option<&Value>) -> Option<Vec<u8>> {
    match body? {
        Value::Null => None,
        Value::String(text) => Some(text.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// A client that does not follow redirects, built per request: the option
/// is rare, and a client cached across tokio runtimes would hold dead
/// pooled connections.
fn no_redirect_client() -> Result<reqwest::Client, NodeError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| NodeError::permanent(format!("failed to build an HTTP client: {e}")))
}

/// Response headers as `{name: value}`; repeated headers are joined with `, `.
fn headers_json(headers: &HeaderMap, redactor: &Redactor) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        let value = redactor.redact(&String::from_utf8_lossy(value.as_bytes()));
        match object.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                object.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(object)
}

/// Reads the body, up to what is left of the run's memory budget (the
/// body is held while it is parsed, and its value is held afterwards).
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    what: &str,
    redactor: &Redactor,
    budget: &MemoryBudget,
) -> Result<Vec<u8>, NodeError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        transport_error(
            &format!("{what}: failed to read the response"),
            error,
            redactor,
        )
    })? {
        budget
            .check(
                || format!("{what}: the response body"),
                bytes.len() + chunk.len(),
            )
            .map_err(|over| NodeError::permanent(over.to_string()))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn parse_body(bytes: &[u8], content_type: &str, format: ResponseFormat) -> Result<Value, String> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let is_blank = bytes.iter().all(u8::is_ascii_whitespace);
    match format {
        ResponseFormat::Text => Ok(Value::String(text())),
        ResponseFormat::Json if is_blank => Ok(Value::Null),
        ResponseFormat::Json => serde_json::from_slice(bytes)
            .map_err(|e| format!("a body that is not JSON ({e}); use responseFormat Text or Auto")),
        ResponseFormat::Auto if is_blank => Ok(Value::Null),
        ResponseFormat::Auto => {
            let says_json = content_type.contains("json");
            let says_text = content_type.starts_with("text/") && !says_json;
            match serde_json::from_slice(bytes) {
                Ok(value) if !says_text => Ok(value),
                _ => Ok(Value::String(text())),
            }
        }
    }
}

/// An error for an unexpected status: 408, 429 and 5xx are retryable.
/// Quotes the start of the body, redacted.
pub(crate) fn status_error(
    what: &str,
    status: reqwest::StatusCode,
    body: &[u8],
    redactor: &Redactor,
) -> NodeError {
    let text = redactor.redact(&String::from_utf8_lossy(body));
    let mut snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = snippet.char_indices().nth(SNIPPET_CHARS) {
        snippet.truncate(cut);
        snippet.push('…');
    }
    let mut message = format!("{what} answered {status}");
    if !snippet.is_empty() {
        message.push_str(&format!(": {snippet}"));
    }
    let message = redactor.redact(&message);
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    if retryable {
        NodeError::retryable(message)
    } else {
        NodeError::permanent(message)
    }
}

/// An error for a failed send or read: connection failures and timeouts are
/// retryable. The message lists the error's causes, without the URL.
pub(crate) fn transport_error(what: &str, error: reqwest::Error, redactor: &Redactor) -> NodeError {
    let retryable = !(error.is_builder() || error.is_redirect());
    let error = error.without_url();
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let message = redactor.redact(&message);
    if retryable {
        NodeError::retryable(message)
    } else {
        NodeError::permanent(message)
    }
}

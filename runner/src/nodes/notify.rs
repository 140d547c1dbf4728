//! The `notify` node type: sends `text` through a Connection, by its type —
//! `slack` (POST `{text, ...payload}` to the Secret's `webhookUrl`), `http`
//! (POST `{text, subject?, ...payload}` to the connection's `baseUrl`, with
//! its credentials as for `http` nodes) or `smtp` (an email, see [`smtp`],
//! over [`tls`] when asked).
//! Output: `{delivered: true, channel, …}`.
//!
//! Delivery failures follow the `http` rules (connection errors, 5xx, 429
//! retryable; other statuses permanent) and SMTP's (4xx retryable). The
//! webhook URL is a credential: it never appears in an output, an error or
//! a log line.

mod smtp;
#[cfg(test)]
mod smtp_tests;
#[cfg(test)]
mod tests;
mod tls;

use super::http::auth::Auth;
use super::http::{read_body, status_error, transport_error};
use crate::connections::{Redactor, ResolvedConnection};
use crate::node::{Attempt, BoxFuture, LogLevel, Node, NodeContext, NodeError, parse_params};
use serde_json::{Value, json};
use sluice_crds::nodes::NotifyNode as Params;
use sluice_crds::{ConnectionType, NodeType};

/// The `notify` node type.
#[derive(Debug, Default)]
pub struct NotifyNode;

/// How much of a webhook's answer the output keeps.
const RESPONSE_CHARS: usize = 1000;

impl Node for NotifyNode {
    fn node_type(&self) -> NodeType {
        NodeType::Notify
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
    let params: Params = parse_params(NodeType::Notify, params)?;
    let connection = context.connections.get(&params.connection)?;
    let output = match connection.spec.type_ {
        ConnectionType::Slack => send_slack(&params, &connection, context).await?,
        ConnectionType::Http => send_webhook(&params, &connection, context).await?,
        ConnectionType::Smtp => smtp::send(&params, &connection, attempt, context).await?,
        ConnectionType::Postgres => {
            return Err(NodeError::permanent(format!(
                "connection {:?} has type postgres: notify needs a connection of type slack, http or smtp",
                connection.name
            )));
        }
    };
    context.logs.log(
        &attempt.node,
        LogLevel::Info,
        &format!(
            "notification sent through connection {:?} ({})",
            connection.name,
            connection.spec.type_.as_str()
        ),
    );
    Ok(output)
}

/// `{text, subject?}` with the node's `payload` fields merged over it.
fn build_payload(params: &Params, with_subject: bool) -> Result<Value, NodeError> {
    let mut body = serde_json::Map::new();
    body.insert("text".to_owned(), Value::String(params.text.clone()));
    if let (true, Some(subject)) = (with_subject, &params.subject) {
        body.insert("subject".to_owned(), Value::String(subject.clone()));
    }
    match &params.payload {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => body.extend(fields.clone()),
        Some(_) => {
            return Err(NodeError::permanent(
                "invalid notify parameters: payload must be an object of fields to merge into the message",
            ));
        }
    }
    Ok(Value::Object(body))
}

async fn send_slack(
    params: &Params,
    connection: &ResolvedConnection<'_>,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let redactor = connection.redactor();
    let webhook_url = connection.secret("webhookUrl")?;
    let url = reqwest::Url::parse(&webhook_url).map_err(|_| {
        NodeError::permanent(format!(
            "the webhookUrl key of connection {:?}'s Secret is not a URL: paste the Slack incoming webhook URL",
            connection.name
        ))
    })?;
    let payload = build_payload(params, false)?;
    let what = format!("slack webhook of connection {:?}", connection.name);
    let response = context
        .http
        .post(url)
        .json(&payload)
        .send()
        .await
        .map_err(|error| {
            transport_error(&format!("failed to post to the {what}"), error, &redactor)
        })?;
    delivered(response, "slack", &what, &redactor, context).await
}

async fn send_webhook(
    params: &Params,
    connection: &ResolvedConnection<'_>,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let mut redactor = connection.redactor();
    let base_url = connection.config("baseUrl").ok_or_else(|| {
        NodeError::permanent(format!(
            "connection {:?} has no config.baseUrl: set it to the webhook's URL",
            connection.name
        ))
    })?;
    let mut url = reqwest::Url::parse(base_url).map_err(|e| {
        NodeError::permanent(format!(
            "connection {:?} has an invalid config.baseUrl: {e}",
            connection.name
        ))
    })?;
    let auth = Auth::from_connection(connection, &mut redactor)?;
    auth.apply_to_url(&mut url);
    let payload = build_payload(params, true)?;
    let what = format!("webhook of connection {:?}", connection.name);
    let response = auth
        .send(
            context,
            || context.http.post(url.clone()).json(&payload),
            &mut redactor,
        )
        .await
        .map_err(|mut error| {
            error.message = format!("{what}: {}", error.message);
            error
        })?;
    delivered(response, "webhook", &what, &redactor, context).await
}

/// The output for a webhook's answer, or the error for a failed delivery.
async fn delivered(
    response: reqwest::Response,
    channel: &str,
    what: &str,
    redactor: &Redactor,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let status = response.status();
    let body = read_body(response, what, redactor, &context.memory).await?;
    if !status.is_success() {
        return Err(status_error(what, status, &body, redactor));
    }
    let text = redactor.redact(&String::from_utf8_lossy(&body));
    let response: String = text.chars().take(RESPONSE_CHARS).collect();
    Ok(json!({
        "delivered": true,
        "channel": channel,
        "status": status.as_u16(),
        "response": response,
    }))
}

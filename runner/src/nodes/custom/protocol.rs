//! The wire shapes of the custom node protocol (docs/node-protocol.md) and
//! the reading of an `/execute` answer. Pure: no I/O.

use crate::node::RunInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Route of the health check.
pub const HEALTH_PATH: &str = "/healthz";
/// Route of one attempt.
pub const EXECUTE_PATH: &str = "/execute";
/// Route of cancellation.
pub const CANCEL_PATH: &str = "/cancel";

/// Body of `POST /execute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    /// Identifies the attempt; `/cancel` names it.
    pub id: String,
    /// The custom type's name.
    #[serde(rename = "type")]
    pub type_: String,
    /// Rendered parameters (preset first, the node's own laid over them).
    pub params: Value,
    /// The forEach item, when the node has forEach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// The item's position, when the node has forEach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Who is asking.
    pub context: ExecuteContext,
}

/// The run context of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteContext {
    /// The run.
    pub run: RunInfo,
    /// Node name; with forEach, `name[index]`.
    pub node: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The Connection the node names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionInfo>,
}

/// A Connection as a node server sees it: settings and where its secret
/// files are, never the secrets themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Name of the Connection.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Its non-secret settings.
    pub config: serde_json::Map<String, Value>,
    /// The folder with one file per Secret key, when it has a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_dir: Option<String>,
}

/// Body of `POST /cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    /// The attempt to stop.
    pub id: String,
}

/// What an `/execute` answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{"output": …}`.
    Output(Value),
    /// `{"error": {"message", "retryable"}}`.
    Error {
        /// The server's message.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

/// Why an answer is not a protocol answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// Reads an `/execute` answer body.
pub fn parse_answer(body: &[u8]) -> Result<Answer, Malformed> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| Malformed(format!("the body is not JSON ({error})")))?;
    let Value::Object(mut fields) = value else {
        return Err(Malformed("the body is not a JSON object".into()));
    };
    match (fields.remove("output"), fields.remove("error")) {
        (Some(output), None) => Ok(Answer::Output(output)),
        (None, Some(Value::Object(error))) => {
            let message = match error.get("message") {
                Some(Value::String(message)) if !message.trim().is_empty() => message.clone(),
                _ => {
                    return Err(Malformed(
                        "error.message is missing or not a non-empty string".into(),
                    ));
                }
            };
            let retryable = match error.get("retryable") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(retryable)) => *retryable,
                Some(_) => return Err(Malformed("error.retryable is not a boolean".into())),
            };
            Ok(Answer::Error { message, retryable })
        }
        (None, Some(_)) => Err(Malformed("error is not an object".into())),
        (Some(_), Some(_)) => Err(Malformed(
            "it has both output and error: answer with exactly one".into(),
        )),
        (None, None) => Err(Malformed("it has neither output nor error".into())),
    }
}

/// The start of a body, as one line of at most `limit` characters.
pub fn body_preview(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(limit)
        .collect();
    if text.chars().count() > limit {
        format!("{line}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_and_errors_are_read() {
        assert_eq!(
            parse_answer(br#"{"output": {"a": 1}}"#),
            Ok(Answer::Output(json!({"a": 1})))
        );
        assert_eq!(
            parse_answer(br#"{"output": null}"#),
            Ok(Answer::Output(Value::Null))
        );
        assert_eq!(
            parse_answer(br#"{"error": {"message": "busy", "retryable": true}}"#),
            Ok(Answer::Error {
                message: "busy".into(),
                retryable: true
            })
        );
        assert_eq!(
            parse_answer(br#"{"error": {"message": "bad"}}"#),
            Ok(Answer::Error {
                message: "bad".into(),
                retryable: false
            })
        );
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        for (body, expected) in [
            (&b"<html>"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (b"{}", "neither output nor error"),
            (br#"{"output": 1, "error": {"message": "x"}}"#, "both"),
            (br#"{"error": "x"}"#, "error is not an object"),
            (br#"{"error": {"message": 3}}"#, "error.message"),
            (
                br#"{"error": {"message": "x", "retryable": "yes"}}"#,
                "retryable",
            ),
        ] {
            let error = parse_answer(body).unwrap_err();
            assert!(error.0.contains(expected), "{body:?}: {error}");
        }
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(body_preview(b"a\nb", 10), "a b");
        assert_eq!(body_preview(b"abcdef", 3), "abc…");
    }
}

//! The `shell` node: runs `/bin/sh -c script` or a program with arguments
//! in the runner container. Output: `{exitCode, stdout, stderr}` plus
//! `json` when `parseJson` is set and stdout is JSON.
//!
//! The child is killed when the attempt is dropped (timeout, cancellation).
//! Workflow `env` values are merged into the node's `env` at compile time.

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError, parse_params};
use sluice_crds::NodeType;
use sluice_crds::nodes::ShellNode as ShellParams;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The `shell` node type.
#[derive(Debug, Default)]
pub struct ShellNode;

impl Node for ShellNode {
    fn node_type(&self) -> NodeType {
        NodeType::Shell
    }

    fn execute<'a>(
        &'a self,
        params: serde_json::Value,
        _attempt: &'a Attempt,
        _context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<serde_json::Value, NodeError>> {
        Box::pin(async move {
            let params = parse_params::<ShellParams>(NodeType::Shell, params)?;
            run(params).await
        })
    }
}

async fn run(params: ShellParams) -> Result<serde_json::Value, NodeError> {
    let mut command = match (&params.script, params.command.as_slice()) {
        (Some(script), []) => {
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(script);
            command
        }
        (None, [program, args @ ..]) => {
            let mut command = tokio::process::Command::new(program);
            command.args(args);
            command
        }
        _ => {
            return Err(NodeError::permanent(
                "a shell node needs exactly one of script and command",
            ));
        }
    };
    let shown = params
        .command
        .first()
        .cloned()
        .unwrap_or_else(|| "/bin/sh".to_owned());
    command
        .envs(&params.env)
        .stdin(if params.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| NodeError::permanent(format!("failed to start {shown:?}: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (params.stdin, child.stdin.take()) {
        // A command that exits without reading its input is not an error.
        let _ = stdin.write_all(text.as_bytes()).await;
        drop(stdin);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| NodeError::retryable(format!("failed to wait for {shown:?}: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let success_codes = if params.success_exit_codes.is_empty() {
        vec![0]
    } else {
        params.success_exit_codes
    };
    let Some(code) = output.status.code() else {
        return Err(NodeError::retryable(format!(
            "{shown:?} was killed by a signal{}",
            last_line_suffix(&stderr)
        )));
    };
    if !success_codes.contains(&code) {
        return Err(NodeError::retryable(format!(
            "{shown:?} exited with code {code}{}",
            last_line_suffix(&stderr)
        )));
    }
    let mut result = serde_json::json!({
        "exitCode": code,
        "stdout": stdout,
        "stderr": stderr,
    });
    if params.parse_json == Some(true)
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&stdout)
    {
        result["json"] = json;
    }
    Ok(result)
}

fn last_line_suffix(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| format!(": {}", line.trim()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: serde_json::Value) -> ShellParams {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn scripts_see_env_and_stdin_and_report_their_output() {
        let output = run(params(json!({
            "script": "read line; echo \"$GREETING $line\"; echo warn >&2",
            "env": {"GREETING": "hello"},
            "stdin": "Ada\n",
        })))
        .await
        .unwrap();
        assert_eq!(
            output,
            json!({"exitCode": 0, "stdout": "hello Ada\n", "stderr": "warn\n"})
        );
    }

    #[tokio::test]
    async fn commands_run_without_a_shell_and_json_is_parsed() {
        let output = run(params(json!({
            "command": ["echo", "{\"n\": 1}"],
            "parseJson": true,
        })))
        .await
        .unwrap();
        assert_eq!(output["json"], json!({"n": 1}));
    }

    #[tokio::test]
    async fn a_failing_exit_code_names_the_last_stderr_line() {
        let error = run(params(
            json!({"script": "echo one >&2; echo two >&2; exit 3"}),
        ))
        .await
        .unwrap_err();
        assert_eq!(error.message, "\"/bin/sh\" exited with code 3: two");
        let ok = run(params(json!({"script": "exit 3", "successExitCodes": [3]}))).await;
        assert_eq!(ok.unwrap()["exitCode"], 3);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_permanent_error() {
        let error = run(params(json!({"command": ["/nonexistent/sluice-test"]})))
            .await
            .unwrap_err();
        assert!(!error.retryable);
        assert!(
            error.message.starts_with("failed to start"),
            "{}",
            error.message
        );
    }
}

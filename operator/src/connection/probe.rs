//! Probing a Connection with the runner's own node code, so a probe
//! succeeds exactly when a node using the connection would authenticate:
//! http → a GET of `verify.url` (resolved against `baseUrl`, with the
//! connection's auth, OAuth2 included), postgres → `SELECT 1`, smtp → the
//! server's 220 greeting. Slack is never probed (posting sends a message).
//!
//! The Secret's values are written to a private temporary folder laid out
//! as the runner pod's (`<dir>/<connection>/<key>`, 0700/0600), read by a
//! [`ConnectionStore`], and deleted when the probe ends, whatever happens.
//! Every message passes through a [`Redactor`] holding those values: a
//! probe's outcome never carries a secret.

use super::plan::{ProbeOutcome, reason};
use serde_json::{Value, json};
use sluice_crds::{ConnectionSpec, ConnectionType};
use sluice_runner::connections::{ConnectionStore, Redactor};
use sluice_runner::node::{Attempt, NoLogs, Node, NodeContext, NodeError, RunInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Longest a probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Probes the connection `name` with `spec` and the Secret's `data`.
pub async fn probe(
    name: &str,
    spec: &ConnectionSpec,
    data: &BTreeMap<String, Vec<u8>>,
) -> ProbeOutcome {
    let mut redactor = Redactor::default();
    for value in data.values() {
        redactor.add(&String::from_utf8_lossy(value));
    }
    let outcome = match tokio::time::timeout(PROBE_TIMEOUT, run_probe(name, spec, data)).await {
        Ok(outcome) => outcome,
        Err(_) => failure(
            reason::UNREACHABLE,
            format!(
                "the probe did not finish within {}s",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
    };
    ProbeOutcome {
        message: redactor.redact(&outcome.message),
        ..outcome
    }
}

async fn run_probe(
    name: &str,
    spec: &ConnectionSpec,
    data: &BTreeMap<String, Vec<u8>>,
) -> ProbeOutcome {
    if spec.type_ == ConnectionType::Smtp {
        return probe_smtp(spec).await;
    }
    if spec.type_ == ConnectionType::Slack {
        return failure(
            reason::INVALID_CONFIG,
            "slack connections are not probed".to_owned(),
        );
    }
    let folder = match SecretFolder::create(name, data) {
        Ok(folder) => folder,
        Err(error) => {
            return failure(
                reason::INVALID_CONFIG,
                format!("failed to write the secret for the probe: {error}"),
            );
        }
    };
    let store = ConnectionStore::from_dir(
        folder.path(),
        BTreeMap::from([(name.to_owned(), spec.clone())]),
    );
    let http = match reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() {
        Ok(http) => http,
        Err(error) => {
            return failure(
                reason::INVALID_CONFIG,
                format!("failed to build an HTTP client: {error}"),
            );
        }
    };
    let context = NodeContext {
        run: RunInfo::default(),
        connections: Arc::new(store),
        http,
        logs: Arc::new(NoLogs),
        run_api: None,
        memory: Arc::default(),
    };
    let outcome = match spec.type_ {
        ConnectionType::Http => probe_http(name, spec, &context).await,
        _ => probe_postgres(name, &context).await,
    };
    drop(folder);
    outcome
}

async fn probe_http(name: &str, spec: &ConnectionSpec, context: &NodeContext) -> ProbeOutcome {
    let url = spec
        .verify
        .as_ref()
        .and_then(|verify| verify.url.clone())
        .or_else(|| spec.config.get("baseUrl").cloned());
    let Some(url) = url else {
        return failure(
            reason::INVALID_CONFIG,
            "nothing to probe: set spec.verify.url or config.baseUrl".to_owned(),
        );
    };
    // Every status is returned as output so the probe can classify it.
    let params = json!({
        "method": "GET",
        "url": url,
        "connection": name,
        "responseFormat": "Text",
        "successStatus": (100..=599).collect::<Vec<u16>>(),
    });
    let output = execute(&sluice_runner::nodes::http::HttpNode, params, context).await;
    match output {
        Ok(output) => {
            let status = output.get("status").and_then(Value::as_u64).unwrap_or(0);
            let message = format!("GET {url} answered {status}");
            match status {
                200..=299 => ProbeOutcome {
                    ok: true,
                    reason: reason::VERIFIED,
                    message,
                },
                401 | 403 => failure(
                    reason::AUTHENTICATION_FAILED,
                    format!(
                        "{message}: check the credentials in the Secret named by spec.secretRef"
                    ),
                ),
                _ => failure(
                    reason::UNEXPECTED_RESPONSE,
                    format!("{message}: expected a 2xx status; fix spec.verify.url or the server"),
                ),
            }
        }
        Err(error) => classify(error),
    }
}

async fn probe_postgres(name: &str, context: &NodeContext) -> ProbeOutcome {
    let params = json!({"connection": name, "query": "SELECT 1"});
    match execute(
        &sluice_runner::nodes::postgres::PostgresNode,
        params,
        context,
    )
    .await
    {
        Ok(_) => ProbeOutcome {
            ok: true,
            reason: reason::VERIFIED,
            message: "SELECT 1 succeeded".to_owned(),
        },
        Err(error) => classify(error),
    }
}

async fn execute(
    node: &dyn Node,
    params: Value,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let attempt = Attempt {
        node: "verify".to_owned(),
        number: 1,
        item: None,
    };
    node.execute(params, &attempt, context).await
}

/// Maps a node error to a probe reason: the runner's messages say when the
/// server refused the credentials; retryable errors mean the server was
/// not reached.
fn classify(error: NodeError) -> ProbeOutcome {
    let lower = error.message.to_lowercase();
    let reason = if lower.contains("authentication failed")
        || lower.contains("clientid and clientsecret")
        || lower.contains(" 401")
        || lower.contains(" 403")
    {
        reason::AUTHENTICATION_FAILED
    } else if error.retryable {
        reason::UNREACHABLE
    } else if lower.contains("config")
        || lower.contains("invalid")
        || lower.contains("no secret key")
    {
        reason::INVALID_CONFIG
    } else {
        reason::UNEXPECTED_RESPONSE
    };
    failure(reason, error.message)
}

fn failure(reason: &'static str, message: String) -> ProbeOutcome {
    ProbeOutcome {
        ok: false,
        reason,
        message,
    }
}

/// Reads the SMTP greeting. With `tls: tls` the greeting comes after a TLS
/// handshake the runner does not expose, so only the TCP connection is checked.
async fn probe_smtp(spec: &ConnectionSpec) -> ProbeOutcome {
    let Some(host) = spec.config.get("host") else {
        return failure(
            reason::INVALID_CONFIG,
            "smtp connection has no config.host: set it".to_owned(),
        );
    };
    let implicit_tls = spec.config.get("tls").map(String::as_str) == Some("tls");
    let default_port = if implicit_tls { 465 } else { 587 };
    let port = match spec.config.get("port").map(|p| p.parse::<u16>()) {
        None => default_port,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            return failure(
                reason::INVALID_CONFIG,
                "config.port is not a port number: use e.g. 587".to_owned(),
            );
        }
    };
    let server = format!("{host}:{port}");
    let tcp = match tokio::net::TcpStream::connect(&server).await {
        Ok(tcp) => tcp,
        Err(error) => {
            return failure(
                reason::UNREACHABLE,
                format!("failed to connect to {server}: {error}"),
            );
        }
    };
    if implicit_tls {
        return ProbeOutcome {
            ok: true,
            reason: reason::VERIFIED,
            message: format!("connected to {server} (implicit TLS: greeting not read)"),
        };
    }
    let mut line = String::new();
    let mut reader = BufReader::new(tcp).take(8192);
    if let Err(error) = reader.read_line(&mut line).await {
        return failure(
            reason::UNREACHABLE,
            format!("failed to read the greeting of {server}: {error}"),
        );
    }
    let line = line.trim_end();
    if line.starts_with("220") {
        ProbeOutcome {
            ok: true,
            reason: reason::VERIFIED,
            message: format!("{server} greeted with 220"),
        }
    } else {
        let shown: String = line.chars().take(200).collect();
        failure(
            reason::UNEXPECTED_RESPONSE,
            format!("{server} greeted with {shown:?} instead of 220"),
        )
    }
}

/// A private folder holding one connection's secret files; removed on drop.
struct SecretFolder {
    root: PathBuf,
}

impl SecretFolder {
    fn create(name: &str, data: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Self> {
        let root = std::env::temp_dir().join(format!("sluice-probe-{}", uuid::Uuid::new_v4()));
        create_private_dir(&root)?;
        let folder = Self { root };
        let dir = folder.root.join(name);
        create_private_dir(&dir)?;
        for (key, value) in data {
            // Keys are Secret keys ([-._a-zA-Z0-9]+); refuse anything that could escape.
            if key.contains('/') || key.starts_with('.') {
                continue;
            }
            write_private_file(&dir.join(key), value)?;
        }
        Ok(folder)
    }

    fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for SecretFolder {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(%error, "failed to delete the probe's secret folder");
        }
    }
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

#[cfg(unix)]
fn write_private_file(path: &Path, value: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value)
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, value: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, value)
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;

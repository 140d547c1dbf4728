//! `custom` nodes: one attempt is one call of the type's node server over
//! the protocol of `docs/node-protocol.md` (health check before the first
//! call, `/execute`, `/cancel` when the attempt is dropped).
//!
//! Which server serves which type ([`NodeServers`]) comes from
//! `--node-server` locally and from `SLUICE_NODE_SERVERS` in a run's pod;
//! type definitions ([`CustomTypes`]) give presets and the params schema.
//! Nothing here retries or times out: the engine does, by dropping the
//! future, which sends `/cancel`.

pub mod protocol;
pub mod types;

use crate::node::{Attempt, BoxFuture, Node, NodeContext, NodeError, parse_params};
use protocol::{
    Answer, CANCEL_PATH, CancelRequest, ConnectionInfo, EXECUTE_PATH, ExecuteContext,
    ExecuteRequest, HEALTH_PATH, body_preview, parse_answer,
};
use serde_json::Value;
use sluice_crds::NodeType;
use sluice_crds::nodes::CustomNode as CustomParams;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
pub use types::{CustomType, CustomTypes, Scope};

/// How long a node server may take to answer `/healthz` the first time.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between health checks while a node server starts.
const HEALTH_POLL: Duration = Duration::from_millis(200);

/// Longest the runner waits for one health check or cancellation.
const SHORT_CALL: Duration = Duration::from_secs(1);

/// The name of the sidecar container serving custom type `type_name` in a
/// run's pod (container names have at most 63 characters).
pub fn sidecar_name(type_name: &str) -> String {
    let mut name = format!("node-{type_name}");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// Where each custom type's node server listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeServers {
    servers: BTreeMap<String, String>,
}

impl NodeServers {
    /// No servers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the server of `type_name` at `base_url` (no trailing slash needed).
    pub fn insert(&mut self, type_name: impl Into<String>, base_url: impl Into<String>) {
        let url: String = base_url.into();
        self.servers
            .insert(type_name.into(), url.trim_end_matches('/').to_owned());
    }

    /// The base URL of `type_name`'s server.
    pub fn get(&self, type_name: &str) -> Option<&str> {
        self.servers.get(type_name).map(String::as_str)
    }

    /// Reads one `TYPE=URL` entry (`--node-server`).
    pub fn parse_entry(text: &str) -> Result<(String, String), String> {
        let (type_name, url) = text.split_once('=').ok_or_else(|| {
            format!("{text:?} is not TYPE=URL: write it like greeter=http://127.0.0.1:9100")
        })?;
        let (type_name, url) = (type_name.trim(), url.trim());
        if type_name.is_empty() {
            return Err(format!("{text:?} has no type name before '='"));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "the URL of node server {type_name:?} must start with http://, e.g. http://127.0.0.1:9100"
            ));
        }
        Ok((type_name.to_owned(), url.trim_end_matches('/').to_owned()))
    }

    /// Reads the value of `SLUICE_NODE_SERVERS`: `TYPE=URL` entries
    /// separated by commas.
    pub fn from_env_value(text: &str) -> Result<Self, String> {
        let mut servers = Self::new();
        for entry in text.split(',').filter(|entry| !entry.trim().is_empty()) {
            let (type_name, url) = Self::parse_entry(entry)?;
            servers.insert(type_name, url);
        }
        Ok(servers)
    }

    /// The value of `SLUICE_NODE_SERVERS` for these servers.
    pub fn to_env_value(&self) -> String {
        self.servers
            .iter()
            .map(|(type_name, url)| format!("{type_name}={url}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where a user looks when a node server misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHint {
    /// A server the user started (`sluice-runner run --node-server`).
    Local,
    /// A sidecar of a run's pod.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
}

impl ServerHint {
    fn where_to_look(&self, type_name: &str) -> String {
        match self {
            ServerHint::Local => format!(
                "check that the server passed with --node-server {type_name}=URL is running"
            ),
            ServerHint::Pod { namespace, pod } => format!(
                "see its logs: kubectl logs -n {namespace} {pod} -c {}",
                sidecar_name(type_name)
            ),
        }
    }
}

/// The `custom` node type.
pub struct CustomNode {
    servers: NodeServers,
    types: CustomTypes,
    client: reqwest::Client,
    start_timeout: Duration,
    hint: ServerHint,
    healthy: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for CustomNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomNode")
            .field("servers", &self.servers)
            .field("types", &self.types.names())
            .finish_non_exhaustive()
    }
}

impl CustomNode {
    /// Calls the given servers; `types` gives presets and schemas.
    pub fn new(servers: NodeServers, types: CustomTypes, hint: ServerHint) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap_or_default();
        Self {
            servers,
            types,
            client,
            start_timeout: DEFAULT_START_TIMEOUT,
            hint,
            healthy: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets how long a server may take to become healthy.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    fn describe(&self, type_name: &str, url: &str) -> String {
        format!("node server of custom type {type_name:?} at {url}")
    }

    fn is_healthy(&self, type_name: &str) -> bool {
        self.healthy
            .lock()
            .map(|healthy| healthy.contains(type_name))
            .unwrap_or(false)
    }

    /// Waits until `/healthz` answers 2xx, once per type.
    async fn wait_healthy(&self, type_name: &str, url: &str) -> Result<(), NodeError> {
        if self.is_healthy(type_name) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        let last_error = loop {
            let problem = match self
                .client
                .get(format!("{url}{HEALTH_PATH}"))
                .timeout(SHORT_CALL)
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    if let Ok(mut healthy) = self.healthy.lock() {
                        healthy.insert(type_name.to_owned());
                    }
                    return Ok(());
                }
                Ok(response) => format!("{HEALTH_PATH} answered HTTP {}", response.status()),
                Err(error) => error_chain(&error),
            };
            if tokio::time::Instant::now() + HEALTH_POLL > deadline {
                break problem;
            }
            tokio::time::sleep(HEALTH_POLL).await;
        };
        Err(NodeError::permanent(format!(
            "{} did not become healthy within {:?} (last error: {last_error}): {}",
            self.describe(type_name, url),
            self.start_timeout,
            self.hint.where_to_look(type_name)
        )))
    }

    async fn call(
        &self,
        params: Value,
        attempt: &Attempt,
        context: &NodeContext,
    ) -> Result<Value, NodeError> {
        let block: CustomParams = parse_params(NodeType::Custom, params)?;
        let type_name = block.type_.as_str();
        let url = self.servers.get(type_name).ok_or_else(|| {
            NodeError::permanent(match self.hint {
                ServerHint::Local => format!(
                    "no node server for custom type {type_name:?}: start one and pass --node-server {type_name}=http://127.0.0.1:PORT"
                ),
                ServerHint::Pod { .. } => format!(
                    "no node server for custom type {type_name:?} in this pod: create a NodeType or ClusterNodeType named {type_name:?} and start the run again"
                ),
            })
        })?;
        let definition = self.types.get(type_name);
        let params = match definition {
            Some(custom) => types::merged_params(
                type_name,
                &custom.spec,
                block.preset.as_deref(),
                block.params.as_ref(),
            )
            .and_then(|merged| types::check_params(&custom.spec, &merged).map(|()| merged))
            .map_err(|error| NodeError::permanent(error.to_string()))?,
            None if block.preset.is_some() => {
                return Err(NodeError::permanent(format!(
                    "preset {:?} of custom type {type_name:?} is unknown here: pass the type's NodeType manifest with --connections, or set params instead",
                    block.preset.as_deref().unwrap_or_default()
                )));
            }
            None => block
                .params
                .clone()
                .unwrap_or(Value::Object(Default::default())),
        };
        let connection = match &block.connection {
            None => None,
            Some(name) => {
                let resolved = context.connections.get(name)?;
                if let Some(custom) = definition
                    && !custom.spec.connection_types.contains(&resolved.spec.type_)
                {
                    let accepted: Vec<&str> = custom
                        .spec
                        .connection_types
                        .iter()
                        .map(|t| t.as_str())
                        .collect();
                    return Err(NodeError::permanent(format!(
                        "connection {name:?} has type {}, which custom type {type_name:?} does not accept: name a Connection of type {}",
                        resolved.spec.type_.as_str(),
                        if accepted.is_empty() {
                            "(none: remove connection)".to_owned()
                        } else {
                            accepted.join(" or ")
                        }
                    )));
                }
                Some(ConnectionInfo {
                    name: name.clone(),
                    type_: resolved.spec.type_.as_str().to_owned(),
                    config: resolved
                        .spec
                        .config
                        .iter()
                        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                        .collect(),
                    secrets_dir: resolved.secrets_dir().map(|dir| dir.display().to_string()),
                })
            }
        };
        self.wait_healthy(type_name, url).await?;
        let id = format!(
            "{}/{}/{}/{}",
            context.run.namespace, context.run.name, attempt.node, attempt.number
        );
        let request = ExecuteRequest {
            id: id.clone(),
            type_: type_name.to_owned(),
            params,
            item: attempt.item.as_ref().map(|(_, item)| item.clone()),
            index: attempt.item.as_ref().map(|(index, _)| *index),
            context: ExecuteContext {
                run: context.run.clone(),
                node: attempt.node.clone(),
                attempt: attempt.number,
                connection,
            },
        };
        let mut cancel = CancelOnDrop {
            client: self.client.clone(),
            url: format!("{url}{CANCEL_PATH}"),
            id: Some(id),
        };
        let answer = self
            .client
            .post(format!("{url}{EXECUTE_PATH}"))
            .json(&request)
            .send()
            .await;
        let response = answer.map_err(|error| self.unreachable(type_name, url, &error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.unreachable(type_name, url, &error))?;
        cancel.disarm();
        match parse_answer(&body) {
            Ok(Answer::Output(output)) => Ok(output),
            Ok(Answer::Error { message, retryable }) => Err(NodeError {
                message: format!("custom type {type_name:?}: {message}"),
                retryable,
            }),
            Err(malformed) if status.is_server_error() => Err(NodeError::retryable(format!(
                "{} answered HTTP {status} without a protocol answer ({malformed}): {}",
                self.describe(type_name, url),
                body_preview(&body, 200)
            ))),
            Err(malformed) => Err(NodeError::permanent(format!(
                "{} answered with a malformed body (HTTP {status}): {malformed}; it must answer {{\"output\": …}} or {{\"error\": {{\"message\": …, \"retryable\": …}}}} (docs/node-protocol.md). Body: {}",
                self.describe(type_name, url),
                body_preview(&body, 200)
            ))),
        }
    }

    fn unreachable(&self, type_name: &str, url: &str, error: &reqwest::Error) -> NodeError {
        NodeError::retryable(format!(
            "{} did not answer ({}): its container may have crashed or restarted; {}",
            self.describe(type_name, url),
            error_chain(error),
            self.hint.where_to_look(type_name)
        ))
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Sends `/cancel` for an attempt dropped before its answer arrived.
struct CancelOnDrop {
    client: reqwest::Client,
    url: String,
    id: Option<String>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .client
            .post(std::mem::take(&mut self.url))
            .timeout(SHORT_CALL)
            .json(&CancelRequest { id });
        runtime.spawn(async move {
            let _ = request.send().await;
        });
    }
}

impl Node for CustomNode {
    fn node_type(&self) -> NodeType {
        NodeType::Custom
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(self.call(params, attempt, context))
    }
}

#[cfg(test)]
mod tests;

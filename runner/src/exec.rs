//! `sluice-runner exec`: executes one WorkflowRun inside the Job the
//! operator created for it.
//!
//! It fetches the run's frozen snapshot from the operator's run API, runs
//! it with the same engine as `sluice-runner run`, and streams the events
//! back in batches. Each batch is resent with backoff until the operator
//! acknowledges it (the operator may be restarting, or slowing runners
//! down while PostgreSQL is away); sequence numbers make resending
//! harmless. An acknowledgement that says `cancel` stops the run. Events
//! are also written to stdout as JSON lines, for `kubectl logs`.
//!
//! The process needs no database credentials: only its run's token (a
//! mounted file) and the connection secrets the operator mounted under the
//! connections folder. `workflow` nodes reach the run API with the same
//! token ([`RunApiAccess`]); only `kubernetes` nodes talk to the Kubernetes
//! API, with the pod's ServiceAccount.

use crate::clock::SystemClock;
use crate::connections::{ConnectionStore, pod_connections_dir};
use crate::engine::{Cancellation, Engine, RunRequest};
use crate::node::{LogLevel, RunApiAccess, RunInfo};
use crate::nodes::Catalog;
use crate::nodes::custom::{CustomNode, CustomTypes, NodeServers, ServerHint};
use crate::report::{Event, EventKind, Reporter, TerminalFormat, TerminalReporter};
use sluice_crds::RunPhase;
use sluice_crds::node_type::NODE_SERVERS_ENV;
use sluice_crds::run_api::{
    EventAck, EventBatch, RUN_API_PREFIX, RunEvent, RunEventKind, RunSnapshot, env,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most events sent in one request.
const MAX_BATCH: usize = 200;
/// How long events wait for company before a batch leaves.
const LINGER: Duration = Duration::from_millis(100);
/// Longest wait between two tries of a request.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long the snapshot may stay unreachable before giving up.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(120);
/// How long to keep resending the last events after the run ended.
const FLUSH_PATIENCE: Duration = Duration::from_secs(300);

/// Where `exec` finds its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Base URL of the run API.
    pub api_url: String,
    /// Namespace of the run.
    pub namespace: String,
    /// Name of the run.
    pub name: String,
    /// The run's token.
    pub token: String,
}

/// Why `exec` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A required environment variable is unset.
    #[error(
        "environment variable {0} is not set: sluice-runner exec runs inside a Job created by the operator"
    )]
    MissingEnv(&'static str),
    /// The token file cannot be read.
    #[error("failed to read the run token from {path}: {source}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The run API refused or never answered.
    #[error("failed to {what} through the run API: {message}")]
    RunApi {
        /// What was attempted.
        what: &'static str,
        /// Why it failed.
        message: String,
    },
}

impl ExecConfig {
    /// Reads the configuration the operator sets on runner pods.
    pub fn from_env() -> Result<Self, ExecError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ExecError::MissingEnv(name));
        let token_file = var(env::RUN_TOKEN_FILE)?;
        let token = std::fs::read_to_string(&token_file)
            .map_err(|source| ExecError::Token {
                path: token_file.clone(),
                source,
            })?
            .trim()
            .to_owned();
        Ok(Self {
            api_url: var(env::RUN_API_URL)?.trim_end_matches('/').to_owned(),
            namespace: var(env::RUN_NAMESPACE)?,
            name: var(env::RUN_NAME)?,
            token,
        })
    }

    fn run_url(&self) -> String {
        format!(
            "{}{RUN_API_PREFIX}/{}/{}",
            self.api_url, self.namespace, self.name
        )
    }
}

/// Runs the run; returns its final phase.
pub async fn exec(config: ExecConfig) -> Result<RunPhase, ExecError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ExecError::RunApi {
            what: "build an HTTP client",
            message: e.to_string(),
        })?;
    let snapshot = fetch_snapshot(&http, &config).await?;
    let cancel = Cancellation::new();
    let (sender, receiver) = mpsc::unbounded_channel();
    let shipper = tokio::spawn(ship_events(
        http.clone(),
        config.clone(),
        receiver,
        cancel.clone(),
    ));
    let reporter: Arc<dyn Reporter> = Arc::new(RunApiReporter {
        sender,
        stdout: TerminalReporter::new(TerminalFormat::Json),
    });

    let phase = match crate::validate::compile(&snapshot.spec) {
        Err(errors) => {
            // The operator validated this spec; a mismatch means runner and
            // operator versions disagree. Report it as the run's failure.
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            report_failure(
                &reporter,
                format!("the runner rejected the workflow: {message}"),
            );
            RunPhase::Failed
        }
        Ok(workflow) => {
            let request = RunRequest {
                input: snapshot.input.clone(),
                info: RunInfo {
                    namespace: snapshot.namespace.clone(),
                    workflow: snapshot.workflow.clone(),
                    name: snapshot.name.clone(),
                },
                connections: Arc::new(ConnectionStore::from_dir(
                    pod_connections_dir(),
                    snapshot.connections.clone(),
                )),
                http,
                cancel: cancel.clone(),
                run_api: Some(RunApiAccess {
                    base_url: config.api_url.clone(),
                    token: config.token.clone(),
                }),
                reused: snapshot.reused_outputs.clone(),
            };
            let clock = Arc::new(SystemClock);
            let mut catalog = Catalog::local(clock.clone());
            catalog.register(Arc::new(pod_custom_node(&snapshot)));
            let engine = Engine::new(catalog, clock)
                .with_output_cap(usize::try_from(snapshot.output_cap_bytes).unwrap_or(usize::MAX));
            tokio::spawn(crate::cli::cancel_on_signal(cancel.clone()));
            engine
                .run(&workflow, request, reporter.clone())
                .await
                .summary
                .phase
        }
    };
    drop(reporter);
    match tokio::time::timeout(FLUSH_PATIENCE, shipper).await {
        Ok(Ok(Ok(()))) => Ok(phase),
        Ok(Ok(Err(error))) => Err(error),
        Ok(Err(join)) => Err(ExecError::RunApi {
            what: "send events",
            message: join.to_string(),
        }),
        Err(_) => Err(ExecError::RunApi {
            what: "send the last events",
            message: format!("not acknowledged within {}s", FLUSH_PATIENCE.as_secs()),
        }),
    }
}

/// The `custom` node type of a run's pod: the sidecars' ports from
/// `SLUICE_NODE_SERVERS` (set by the operator), the type definitions from
/// the snapshot. A malformed variable leaves no server, so custom nodes
/// fail with a reason instead of the whole run.
fn pod_custom_node(snapshot: &RunSnapshot) -> CustomNode {
    let servers = std::env::var(NODE_SERVERS_ENV)
        .ok()
        .and_then(|text| {
            NodeServers::from_env_value(&text)
                .inspect_err(|error| tracing::warn!(%error, "ignoring {NODE_SERVERS_ENV}"))
                .ok()
        })
        .unwrap_or_default();
    let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| "POD".to_owned());
    CustomNode::new(
        servers,
        CustomTypes::from_specs(&snapshot.node_types),
        ServerHint::Pod {
            namespace: snapshot.namespace.clone(),
            pod,
        },
    )
}

fn report_failure(reporter: &Arc<dyn Reporter>, message: String) {
    reporter.report(&Event {
        sequence: 1,
        time: chrono::Utc::now(),
        kind: EventKind::RunFinished(crate::report::RunSummary {
            phase: RunPhase::Failed,
            reason: "RunnerRejected".to_owned(),
            message: Some(message),
            failed_node: None,
            output: serde_json::Value::Null,
            output_truncated: false,
            duration_ms: 0.0,
            counts: Default::default(),
        }),
    });
}

async fn fetch_snapshot(
    http: &reqwest::Client,
    config: &ExecConfig,
) -> Result<RunSnapshot, ExecError> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = http
            .get(config.run_url())
            .bearer_auth(&config.token)
            .send()
            .await;
        let retryable = match attempt {
            Ok(response) if response.status().is_success() => {
                return response.json().await.map_err(|e| ExecError::RunApi {
                    what: "read the run's snapshot",
                    message: e.to_string(),
                });
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_client_error() && status.as_u16() != 404 && status.as_u16() != 429 {
                    return Err(ExecError::RunApi {
                        what: "fetch the run's snapshot",
                        message: format!("{status}: {body}"),
                    });
                }
                format!("{status}: {body}")
            }
            Err(error) => error.to_string(),
        };
        if started.elapsed() > SNAPSHOT_PATIENCE {
            return Err(ExecError::RunApi {
                what: "fetch the run's snapshot",
                message: retryable,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Sends event batches until the reporter is dropped and every event is
/// acknowledged.
async fn ship_events(
    http: reqwest::Client,
    config: ExecConfig,
    mut receiver: mpsc::UnboundedReceiver<RunEvent>,
    cancel: Cancellation,
) -> Result<(), ExecError> {
    let url = format!("{}/events", config.run_url());
    while let Some(first) = receiver.recv().await {
        let mut events = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while events.len() < MAX_BATCH {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(event) => events.push(event),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let ack = send_batch(&http, &url, &config.token, &EventBatch { events }).await?;
        if ack.cancel {
            cancel.cancel();
        }
    }
    Ok(())
}

async fn send_batch(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    batch: &EventBatch,
) -> Result<EventAck, ExecError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match http.post(url).bearer_auth(token).json(batch).send().await {
            Ok(response) if response.status().is_success() => {
                if let Ok(ack) = response.json::<EventAck>().await {
                    return Ok(ack);
                }
            }
            Ok(response) if matches!(response.status().as_u16(), 401 | 403 | 404 | 413 | 422) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                return Err(ExecError::RunApi {
                    what: "send events",
                    message: format!("{status}: {body}"),
                });
            }
            Ok(_) | Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Forwards engine events to the run API sender (and to stdout).
struct RunApiReporter {
    sender: mpsc::UnboundedSender<RunEvent>,
    stdout: TerminalReporter,
}

impl Reporter for RunApiReporter {
    fn report(&self, event: &Event) {
        self.stdout.report(event);
        if let Some(kind) = wire_kind(&event.kind) {
            // A closed channel means the shipper failed; its error is returned by exec.
            let _ = self.sender.send(RunEvent {
                seq: event.sequence,
                time: event.time,
                kind,
            });
        }
    }
}

/// The wire form of an engine event, or `None` for events the operator
/// does not need.
pub fn wire_kind(kind: &EventKind) -> Option<RunEventKind> {
    Some(match kind {
        EventKind::RunStarted { .. } => return None,
        EventKind::NodeStarted {
            node,
            node_type,
            items,
        } => {
            // Plain nodes are announced by their first attempt; a forEach
            // node is announced here because its attempts are per item.
            items.as_ref()?;
            RunEventKind::NodeStarted {
                node: node.clone(),
                node_type: node_type.to_string(),
                attempt: 0,
                input: None,
            }
        }
        EventKind::AttemptStarted {
            node,
            node_type,
            attempt,
            input,
        } => RunEventKind::NodeStarted {
            node: node.clone(),
            node_type: node_type.to_string(),
            attempt: *attempt,
            input: Some(input.clone()),
        },
        EventKind::NodeFinished(result) => RunEventKind::NodeFinished {
            node: result.node.clone(),
            node_type: result.node_type.to_string(),
            phase: result.phase,
            attempts: result.attempts,
            started_at: result.started_at,
            output: result.output.clone(),
            output_truncated: result.truncated,
            error: result.error.clone(),
        },
        EventKind::Log {
            node,
            level,
            message,
        } => RunEventKind::Log {
            node: (!node.is_empty()).then(|| node.clone()),
            level: level_name(*level).to_owned(),
            message: message.clone(),
        },
        EventKind::RunFinished(summary) => RunEventKind::RunFinished {
            phase: summary.phase,
            output: (!summary.output.is_null()).then(|| summary.output.clone()),
            output_truncated: false,
            error: summary.message.clone(),
            failed_node: summary.failed_node.clone(),
        },
    })
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{NodeResult, PhaseCounts, RunSummary};
    use sluice_crds::{NodePhase, NodeType};

    #[test]
    fn node_results_and_run_summaries_keep_their_meaning_on_the_wire() {
        let finished = EventKind::NodeFinished(NodeResult {
            node: "lookup".into(),
            node_type: NodeType::Http,
            phase: NodePhase::Failed,
            attempts: 3,
            started_at: None,
            finished_at: chrono::Utc::now(),
            duration_ms: 12.0,
            output: None,
            error: Some("HTTP 503".into()),
            reason: None,
            truncated: false,
            output_bytes: None,
            continue_on_error: false,
        });
        match wire_kind(&finished) {
            Some(RunEventKind::NodeFinished {
                node_type,
                attempts,
                error,
                ..
            }) => {
                assert_eq!(
                    (node_type.as_str(), attempts, error.as_deref()),
                    ("http", 3, Some("HTTP 503"))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let summary = EventKind::RunFinished(RunSummary {
            phase: RunPhase::Failed,
            reason: "NodeFailed".into(),
            message: Some("node lookup failed".into()),
            failed_node: Some("lookup".into()),
            output: serde_json::Value::Null,
            output_truncated: false,
            duration_ms: 12.0,
            counts: PhaseCounts::default(),
        });
        match wire_kind(&summary) {
            Some(RunEventKind::RunFinished {
                failed_node,
                output,
                ..
            }) => {
                assert_eq!(failed_node.as_deref(), Some("lookup"));
                assert_eq!(output, None);
            }
            other => panic!("unexpected {other:?}"),
        }
        let started = EventKind::RunStarted {
            workflow: "w".into(),
            run: "r".into(),
            node_count: 1,
        };
        assert_eq!(wire_kind(&started), None);
    }

    #[test]
    fn exec_explains_a_missing_environment() {
        // SLUICE_RUN_TOKEN_FILE is never set in the test environment.
        let error = ExecConfig::from_env().unwrap_err();
        assert!(
            error.to_string().contains("SLUICE_RUN_TOKEN_FILE"),
            "{error}"
        );
    }
}

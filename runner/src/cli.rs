//! The `sluice-runner` command line: `run` (execute a workflow file locally),
//! `validate`, `nodes` (the node catalog) and `exec` (inside a Job).
//!
//! Only argument handling, file reading and printing live here; the work is
//! done by [`crate::validate`], [`crate::engine`] and the node catalog.

use crate::clock::{Clock, SystemClock};
use crate::compiled::CompiledWorkflow;
use crate::engine::{Cancellation, Engine, RunRequest};
use crate::node::RunInfo;
use crate::nodes::Catalog;
use crate::nodes::custom::{CustomNode, CustomTypes, NodeServers, Scope, ServerHint};
use crate::report::{TerminalFormat, TerminalReporter, format_millis};
use crate::validate::{ValidationError, compile, parse_spec};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;
use sluice_crds::{RunPhase, WorkflowSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code of a failed run.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of invalid usage, an invalid workflow or input.
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a cancelled run (as after SIGINT).
pub const EXIT_CANCELLED: u8 = 130;

/// Sluice's workflow runner.
///
/// Runs Sluice workflows: locally from a YAML file with `run`, or inside a
/// Kubernetes Job started by the operator with `exec`.
#[derive(Debug, Parser)]
#[command(name = "sluice-runner", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow locally, printing each node as it starts and ends and
    /// the run's output at the end (exit code 0 when it succeeds, 1 when it
    /// fails, 2 when the file or input is invalid).
    Run(RunArgs),
    /// Check a workflow file and print every error with its field path and
    /// how to fix it (exit code 1 when there is any).
    Validate {
        /// YAML file holding a Workflow (other documents are ignored).
        file: PathBuf,
    },
    /// Print the node catalog as JSON: per node type its name, description,
    /// category and the JSON schema of its parameters; then the custom
    /// types (NodeType, ClusterNodeType) found in the --connections files,
    /// with their version, image, output schema and presets.
    Nodes {
        /// Files or folders of manifests to read NodeTypes and
        /// ClusterNodeTypes from (as for `run --connections`). May be repeated.
        #[arg(long, num_args = 1..)]
        connections: Vec<PathBuf>,
    },
    /// Run the WorkflowRun this pod belongs to (inside a Job started by the
    /// operator; needs the operator's run API).
    Exec,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// YAML file holding a Workflow (other documents, such as Connections,
    /// are ignored).
    pub file: PathBuf,
    /// The run's input as JSON, e.g. '{"name": "Ada"}'. Checked against the
    /// workflow's input schema, with its defaults merged.
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// A file holding the run's input as JSON.
    #[arg(long)]
    pub input_file: Option<PathBuf>,
    /// How to print progress: text (for people, on stderr; the output JSON on
    /// stdout) or json (one event object per line on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Files or folders of Connection and Secret manifests the workflow's
    /// nodes use. May be repeated.
    #[arg(long, num_args = 1..)]
    pub connections: Vec<PathBuf>,
    /// Largest node output shown whole in progress events, in bytes of
    /// JSON; a larger one is shown as a marker with a preview. Dependants
    /// and the run's output always get the whole value.
    #[arg(long, default_value_t = crate::engine::DEFAULT_OUTPUT_CAP)]
    pub output_cap: usize,
    /// Most data the run may hold (node outputs as JSON), e.g. 512Mi or 2Gi;
    /// overrides the workflow's spec.memoryBudget. Default: the workflow's,
    /// else 256Mi.
    #[arg(long, value_parser = parse_budget)]
    pub memory_budget: Option<usize>,
    /// Where a custom node type's server listens, as TYPE=URL (e.g.
    /// greeter=http://127.0.0.1:9100); custom nodes of that type call it
    /// (docs/node-protocol.md). May be repeated. Pass the type's NodeType
    /// manifest with --connections to check params and use presets.
    #[arg(long = "node-server", value_parser = parse_node_server)]
    pub node_servers: Vec<(String, String)>,
}

fn parse_node_server(text: &str) -> Result<(String, String), String> {
    NodeServers::parse_entry(text)
}

fn parse_budget(text: &str) -> Result<usize, String> {
    crate::budget::parse_bytes(text).map_err(|error| error.to_string())
}

/// Progress format of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human lines.
    Text,
    /// JSON lines.
    Json,
}

/// Why the command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file could not be read or parsed.
    #[error("failed to read {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The workflow is invalid.
    #[error("{path} is not a valid workflow:\n{}", list(.errors))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every error.
        errors: Vec<ValidationError>,
    },
    /// The input is not JSON or breaks the input schema.
    #[error("invalid input: {0}")]
    Input(String),
    /// The connections could not be loaded.
    #[error(transparent)]
    Connections(#[from] crate::connections::LoadError),
    /// The runtime could not start.
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// `exec` could not reach or use the operator's run API.
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
}

fn list(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Workflow read from a file.
#[derive(Debug)]
pub struct WorkflowFile {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (or `default`).
    pub namespace: String,
    /// The spec.
    pub spec: WorkflowSpec,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => finish(run(args)),
        Command::Validate { file } => validate_file(&file),
        Command::Nodes { connections } => finish(print_nodes(&connections)),
        Command::Exec => finish(exec()),
    }
}

fn print_nodes(connections: &[PathBuf]) -> Result<ExitCode, CliError> {
    let catalog = Catalog::local(Arc::new(SystemClock));
    let mut entries = match catalog.catalog_json() {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    };
    if !connections.is_empty() {
        let local = crate::connections::load_manifests(connections)?;
        entries.extend(
            local
                .node_types()
                .iter()
                .map(|custom| custom.catalog_entry()),
        );
    }
    let text = serde_json::to_string_pretty(&Value::Array(entries)).unwrap_or_default();
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Checks the custom nodes of a local run before it starts: against the
/// manifests passed with --connections where there is one, and that each
/// type has a node server.
fn check_local_custom_nodes(
    args: &RunArgs,
    spec: &WorkflowSpec,
    defined: &CustomTypes,
    servers: &NodeServers,
) -> Result<(), CliError> {
    let mut usable = defined.clone();
    for (type_name, _) in &args.node_servers {
        if defined.get(type_name).is_none() {
            usable.insert(
                type_name.clone(),
                Scope::NodeType,
                sluice_crds::NodeTypeSpec::default(),
            );
        }
    }
    let mut errors = crate::validate::check_custom_nodes(spec, &usable);
    for (index, node) in spec.nodes.iter().enumerate() {
        if let Some(custom) = &node.custom
            && servers.get(&custom.type_).is_none()
        {
            let path = format!("spec.nodes[{index}].custom.type");
            errors.retain(|error| error.path != path);
            errors.push(ValidationError::new(
                path,
                format!(
                    "node {:?}: no node server for custom type {:?}: start one and pass --node-server {}=http://127.0.0.1:PORT (and its NodeType manifest with --connections to check params)",
                    node.name, custom.type_, custom.type_
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Invalid {
            path: args.file.clone(),
            errors,
        })
    }
}

fn finish(result: Result<ExitCode, CliError>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_INVALID)
    })
}

/// Reads the Workflow document of a (possibly multi-document) YAML file.
pub fn read_workflow(path: &Path) -> Result<WorkflowFile, CliError> {
    let file_error = |message: String| CliError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| file_error(e.to_string()))?;
    let workflow = documents
        .into_iter()
        .find(|doc| doc.get("kind").and_then(Value::as_str) == Some("Workflow"))
        .ok_or_else(|| {
            file_error("it holds no document with kind: Workflow: add one (apiVersion: sluice.dev/v1alpha1, kind: Workflow)".into())
        })?;
    let metadata = workflow.get("metadata");
    let text_of = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let spec_value = workflow.get("spec").cloned().unwrap_or(Value::Null);
    let spec = parse_spec(&spec_value).map_err(|errors| CliError::Invalid {
        path: path.to_owned(),
        errors,
    })?;
    Ok(WorkflowFile {
        name: text_of("name").unwrap_or_else(|| "workflow".into()),
        namespace: text_of("namespace").unwrap_or_else(|| "default".into()),
        spec,
    })
}

/// Reads and compiles a workflow file.
pub fn load(path: &Path) -> Result<(WorkflowFile, CompiledWorkflow), CliError> {
    let file = read_workflow(path)?;
    let compiled = compile(&file.spec).map_err(|errors| CliError::Invalid {
        path: path.to_owned(),
        errors,
    })?;
    Ok((file, compiled))
}

fn validate_file(path: &Path) -> ExitCode {
    match load(path) {
        Ok((file, compiled)) => {
            let count = compiled.nodes.len();
            println!(
                "{}: workflow {:?} is valid ({count} node{})",
                path.display(),
                file.name,
                if count == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(CliError::Invalid { errors, .. }) => {
            for error in &errors {
                println!("{error}");
            }
            eprintln!(
                "{}: {} error{}",
                path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_FAILED)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn read_input(args: &RunArgs) -> Result<Value, CliError> {
    let text = match (&args.input, &args.input_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| CliError::File {
            path: path.clone(),
            message: e.to_string(),
        })?,
        (None, None) => return Ok(Value::Null),
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::Input(format!(
            "it is not JSON ({e}): pass an object such as --input '{{\"name\": \"Ada\"}}'"
        ))
    })
}

fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let (file, compiled) = load(&args.file)?;
    let input =
        crate::input::prepare(file.spec.input.as_ref(), read_input(&args)?).map_err(|errors| {
            CliError::Input(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    let local_connections = if args.connections.is_empty() {
        None
    } else {
        Some(crate::connections::load_manifests(&args.connections)?)
    };
    let mut servers = NodeServers::new();
    for (type_name, url) in &args.node_servers {
        servers.insert(type_name.clone(), url.clone());
    }
    let defined = local_connections
        .as_ref()
        .map(|local| local.node_types().clone())
        .unwrap_or_default();
    if file.spec.nodes.iter().any(|node| node.custom.is_some()) {
        check_local_custom_nodes(&args, &file.spec, &defined, &servers)?;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut catalog = Catalog::local(clock.clone());
    catalog.register(Arc::new(CustomNode::new(
        servers,
        defined,
        ServerHint::Local,
    )));
    let mut engine = Engine::new(catalog, clock).with_output_cap(args.output_cap);
    if let Some(budget) = args.memory_budget {
        engine = engine.with_memory_budget(budget);
    }
    let format = match args.output {
        OutputFormat::Text => TerminalFormat::Text,
        OutputFormat::Json => TerminalFormat::Json,
    };
    let cancel = Cancellation::new();
    let request = RunRequest {
        input,
        info: RunInfo {
            namespace: file.namespace.clone(),
            workflow: file.name.clone(),
            name: format!("{}-local", file.name),
        },
        connections: local_connections
            .as_ref()
            .map(|local| local.store())
            .unwrap_or_default(),
        http: reqwest::Client::new(),
        cancel: cancel.clone(),
        run_api: None,
        reused: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let result = runtime.block_on(async {
        tokio::spawn(cancel_on_signal(cancel));
        engine
            .run(&compiled, request, Arc::new(TerminalReporter::new(format)))
            .await
    });
    drop(local_connections);
    let summary = &result.summary;
    if format == TerminalFormat::Text {
        // The whole output when the run succeeded, else what went wrong:
        // stdout always carries JSON a script can read.
        let printed = if summary.phase == RunPhase::Succeeded {
            serde_json::to_string_pretty(&result.output)
        } else {
            serde_json::to_string_pretty(&failure_summary(&result))
        };
        let _ = writeln!(std::io::stdout().lock(), "{}", printed.unwrap_or_default());
        let counts = summary.counts;
        let _ = writeln!(
            std::io::stderr().lock(),
            "run {} in {}: {} succeeded, {} failed, {} skipped, {} cancelled",
            format!("{:?}", summary.phase).to_lowercase(),
            format_millis(summary.duration_ms),
            counts.succeeded,
            counts.failed,
            counts.skipped,
            counts.cancelled
        );
    }
    if let Some(message) = &summary.message
        && summary.phase != RunPhase::Succeeded
    {
        eprintln!("error: {message}");
    }
    Ok(match summary.phase {
        RunPhase::Succeeded => ExitCode::SUCCESS,
        RunPhase::Cancelled => ExitCode::from(EXIT_CANCELLED),
        _ => ExitCode::from(EXIT_FAILED),
    })
}

/// What `run` prints on stdout for a run that did not succeed: its phase,
/// reason and message, the node that failed it, and every node that
/// failed or was cancelled, with its error.
fn failure_summary(result: &crate::engine::RunResult) -> Value {
    let summary = &result.summary;
    let nodes: Vec<Value> = result
        .nodes
        .iter()
        .filter(|node| {
            matches!(
                node.phase,
                sluice_crds::NodePhase::Failed | sluice_crds::NodePhase::Cancelled
            )
        })
        .map(|node| {
            serde_json::json!({
                "node": node.node,
                "phase": node.phase,
                "attempts": node.attempts,
                "error": node.error.as_ref().or(node.reason.as_ref()),
            })
        })
        .collect();
    serde_json::json!({
        "phase": summary.phase,
        "reason": summary.reason,
        "message": summary.message,
        "failedNode": summary.failed_node,
        "nodes": nodes,
        "counts": summary.counts,
    })
}

/// Runs this pod's WorkflowRun through the operator's run API.
fn exec() -> Result<ExitCode, CliError> {
    let config = crate::exec::ExecConfig::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let phase = runtime.block_on(crate::exec::exec(config))?;
    Ok(match phase {
        RunPhase::Succeeded => ExitCode::SUCCESS,
        RunPhase::Cancelled => ExitCode::from(EXIT_CANCELLED),
        _ => ExitCode::from(EXIT_FAILED),
    })
}

/// Cancels the run on SIGTERM or Ctrl-C. The handlers are registered when
/// this is called (inside the runtime), not when the returned future is
/// first polled, so a signal arriving right after the run starts is not lost.
pub(crate) fn cancel_on_signal(
    cancel: Cancellation,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (Some(mut terminate), Some(mut interrupt)) = (terminate, interrupt) else {
                return;
            };
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        cancel.cancel();
    }
}

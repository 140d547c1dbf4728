//! `sluice-operator`: parses the configuration, sets up JSON logs and runs
//! the operator (see `sluice_operator::process`).

use clap::Parser;
use sluice_operator::config::{Command, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS provider for kube, reqwest and sqlx: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    match config.command.clone() {
        Some(Command::RecomputeMetrics { from, to }) => {
            sluice_operator::process::recompute_metrics(&config, from, to).await
        }
        Some(Command::Usage {
            from,
            to,
            namespace,
            output,
        }) => {
            sluice_operator::process::usage(&config, from, to, namespace.as_deref(), output).await
        }
        None => sluice_operator::process::run(config).await,
    }
}

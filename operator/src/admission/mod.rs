//! Admission webhooks for Workflows, WorkflowRuns, Schedules and
//! Connections, on their own HTTPS port, served by every replica.
//!
//! - [`rules`] (pure): what the validating webhook refuses or warns about,
//!   using the runner's validator and the controllers' own checks, so a
//!   refusal says exactly what the status condition would have said.
//! - [`creator`] (pure): the creator annotations the mutating webhook
//!   stamps and a user cannot forge.
//! - [`server`]: the AdmissionReview v1 handlers over a [`server::Lookup`];
//!   [`lookup`] is the kube-backed implementation.
//! - [`certs`] (pure): the self-managed CA and serving certificate, and
//!   when to renew them; [`keeper`] stores them in a Secret, loads them
//!   into [`tls`] and keeps the webhook configurations' `caBundle` current.
//! - [`settings`] holds the flags.
//!
//! Nothing here writes Sluice objects; admission only reads. The webhook
//! configurations themselves are installed by the Helm chart, whose
//! `failurePolicy` decides what the API server does while no replica
//! answers.

pub mod certs;
pub mod creator;
pub mod keeper;
pub mod lookup;
pub mod rules;
pub mod server;
pub mod settings;
#[cfg(test)]
mod tests;
pub mod tls;

pub use settings::{AdmissionConfig, CertSource};

use std::sync::Arc;
use tokio::sync::watch;

/// Serves both webhooks on `settings.admission_addr` until `stopping`, and
/// keeps the certificate current meanwhile.
pub async fn serve(
    client: kube::Client,
    namespace: String,
    settings: AdmissionConfig,
    default_plan: Option<String>,
    stopping: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let address = settings.admission_addr;
    let cert = Arc::new(tls::ReloadableCert::default());
    let config = tls::server_config(cert.clone()).map_err(ServeError::Tls)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let listener = tls::TlsListener::new(listener, config)
        .map_err(|source| ServeError::Bind { address, source })?;
    tracing::info!(%address, "admission webhooks listening (https)");
    let operator = Some(settings.admission_operator_username.clone());
    let keeper = keeper::Keeper::new(client.clone(), namespace, settings, cert);
    tokio::spawn(keeper.run(stopping.clone()));
    let router = server::router(
        Arc::new(lookup::KubeLookup::new(client, default_plan)),
        operator,
    );
    let mut stopping = stopping;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(ServeError::Serve)
}

/// Why the admission server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS configuration could not be built.
    #[error("failed to configure TLS for admission: {0}")]
    Tls(#[source] rustls::Error),
    /// The port could not be bound.
    #[error("failed to listen on {address}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("admission server failed")]
    Serve(#[source] std::io::Error),
}

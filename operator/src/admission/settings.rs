//! The admission webhook's flags, each also settable by an environment
//! variable (the Helm chart sets them). Flattened into the operator's
//! [`Config`](crate::config::Config).

use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// Where the serving certificate comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum CertSource {
    /// The operator keeps its own CA and serving certificate in the Secret,
    /// patches the `caBundle` of the webhook configurations and renews both
    /// before they expire.
    #[default]
    SelfManaged,
    /// cert-manager writes the Secret (a Certificate) and injects the
    /// `caBundle` (cainjector); the operator only reads the Secret.
    CertManager,
}

/// Flags of the admission webhooks.
#[derive(Clone, Debug, Args)]
pub struct AdmissionConfig {
    /// Address of the admission webhooks (HTTPS: `/validate`, `/mutate`).
    /// Served by every replica.
    #[arg(long, env = "SLUICE_ADMISSION_ADDR", default_value = "0.0.0.0:8443")]
    pub admission_addr: SocketAddr,

    /// Turn the admission webhooks off (no port, no certificates).
    #[arg(long, env = "SLUICE_NO_ADMISSION")]
    pub no_admission: bool,

    /// Where the serving certificate comes from.
    #[arg(long, env = "SLUICE_ADMISSION_CERTS", value_enum, default_value_t = CertSource::SelfManaged)]
    pub admission_certs: CertSource,

    /// Secret (in the operator's namespace) holding the serving certificate,
    /// and with self-managed certificates the CA.
    #[arg(
        long,
        env = "SLUICE_ADMISSION_SECRET",
        default_value = "sluice-admission-tls"
    )]
    pub admission_secret: String,

    /// Names the serving certificate covers (comma separated): the
    /// Service's DNS names, or an IP address for a URL webhook.
    #[arg(
        long,
        env = "SLUICE_ADMISSION_DNS_NAMES",
        value_delimiter = ',',
        default_value = "sluice-operator.sluice-system.svc,sluice-operator.sluice-system.svc.cluster.local"
    )]
    pub admission_dns_names: Vec<String>,

    /// Name of the ValidatingWebhookConfiguration and the
    /// MutatingWebhookConfiguration whose `caBundle` the operator keeps
    /// current (self-managed certificates only).
    #[arg(
        long,
        env = "SLUICE_ADMISSION_WEBHOOK_CONFIG",
        default_value = "sluice-admission"
    )]
    pub admission_webhook_config: String,

    /// The operator's own Kubernetes username
    /// (`system:serviceaccount:<namespace>:<service account>`; the chart sets
    /// it). Runs it creates for a Schedule, a webhook or a `workflow` node
    /// are recorded as created by that trigger
    /// (`system:sluice:schedule:<name>`, …); empty records the operator's
    /// username on them like any requester's.
    #[arg(long, env = "SLUICE_ADMISSION_OPERATOR_USERNAME", default_value = "")]
    pub admission_operator_username: String,

    /// How often the certificates are checked for renewal and the
    /// `caBundle` for drift.
    #[arg(long, env = "SLUICE_ADMISSION_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub admission_check_interval: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_crds::Duration::parse(text)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

//! The operator's configuration: command-line flags, each also settable by
//! an environment variable (the Helm chart uses the variables).

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

/// Sluice operator: reconciles Workflows, WorkflowRuns, Schedules and
/// Connections, runs one Job per run, serves the run API and webhooks, and
/// mirrors everything into PostgreSQL.
#[derive(Clone, Debug, Parser)]
#[command(name = "sluice-operator", version, about, long_about = None)]
pub struct Config {
    /// A maintenance command to run instead of the operator.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Only watch these namespaces, comma separated (e.g.
    /// `--watch-namespaces team-a,team-b`): the operator needs rights in
    /// these only. Default: every namespace. `--namespace` is the older
    /// name of this flag.
    #[arg(
        long,
        env = "SLUICE_WATCH_NAMESPACES",
        alias = "namespace",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,

    /// The older `SLUICE_NAMESPACE` (one namespace), still read and added
    /// to the list, so that an operator configured with it never widens to
    /// every namespace after an upgrade.
    #[arg(long = "legacy-namespace", env = "SLUICE_NAMESPACE", hide = true)]
    pub legacy_namespace: Option<String>,

    /// PostgreSQL URL of the mirror, e.g. postgres://sluice@db:5432/sluice.
    /// Without it the mirror is off and everything else works.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address of the run API (runner pods fetch their run and report
    /// events here). Served by every replica.
    #[arg(long, env = "SLUICE_RUN_API_ADDR", default_value = "0.0.0.0:8081")]
    pub run_api_addr: SocketAddr,

    /// Base URL runner pods use to reach the run API, usually the
    /// operator's Service, e.g. http://sluice-operator.sluice-system:8081.
    #[arg(
        long,
        env = "SLUICE_RUN_API_URL",
        default_value = "http://sluice-operator.sluice-system:8081"
    )]
    pub run_api_url: String,

    /// Address of the webhook server (`POST /hooks/<namespace>/<workflow>/<trigger>`).
    /// Served by every replica.
    #[arg(long, env = "SLUICE_WEBHOOK_ADDR", default_value = "0.0.0.0:8082")]
    pub webhook_addr: SocketAddr,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Runner image used for Jobs unless a workflow overrides it (the
    /// image `docker build -t sluice:0.1.0 .` makes holds both binaries).
    #[arg(long, env = "SLUICE_RUNNER_IMAGE", default_value = "sluice:0.1.0")]
    pub runner_image: String,

    /// Command that starts the runner inside the Job (space separated).
    #[arg(
        long,
        env = "SLUICE_RUNNER_COMMAND",
        default_value = "sluice-runner exec"
    )]
    pub runner_command: String,

    /// Memory limit of runner containers unless a workflow overrides it.
    #[arg(long, env = "SLUICE_RUNNER_MEMORY_LIMIT", default_value = "512Mi")]
    pub runner_memory_limit: String,

    /// CPU request of runner containers unless a workflow overrides it.
    #[arg(long, env = "SLUICE_RUNNER_CPU_REQUEST", default_value = "100m")]
    pub runner_cpu_request: String,

    /// Largest node output, in bytes of JSON, kept whole; larger outputs are
    /// truncated and the truncation recorded.
    #[arg(long, env = "SLUICE_OUTPUT_CAP_BYTES", default_value_t = 1 << 20)]
    pub output_cap_bytes: u64,

    /// Reconciles each controller runs at once. Bounds the operator's
    /// memory and its load on the API server when many objects change
    /// together (a restart, a bulk apply); objects beyond it wait in the
    /// controller's queue.
    #[arg(long, env = "SLUICE_RECONCILE_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,

    /// How long a run being deleted may wait for its final state to be
    /// stored in PostgreSQL. After it, the operator removes the run's
    /// finalizer so the deletion (or its namespace's) can finish, and
    /// records the loss: a Warning Event, the `sluice_runs_history_lost`
    /// counter and one JSON log line holding the run's final status.
    #[arg(long, env = "SLUICE_MIRROR_GRACE_PERIOD", default_value = "15m", value_parser = parse_duration)]
    pub mirror_grace_period: Duration,

    /// How often the leader samples its own state (runs, mirror backlog,
    /// memory, CPU) into the `system_metrics` table. Needs the database.
    #[arg(long, env = "SLUICE_METRICS_SAMPLE_INTERVAL", default_value = "60s",
          value_parser = parse_positive_duration)]
    pub metrics_sample_interval: Duration,

    /// How long `system_metrics` rows are kept (default 720h, 30 days);
    /// older ones are deleted, a thousand rows per statement, after each
    /// sample.
    #[arg(long, env = "SLUICE_METRICS_RETENTION", default_value = "720h", value_parser = parse_duration)]
    pub metrics_retention: Duration,

    /// Plan (a cluster-scoped `sluice.dev` Plan) of every namespace without
    /// a `sluice.dev/plan` label. Default: none, such namespaces have no
    /// limits.
    #[arg(long, env = "SLUICE_DEFAULT_PLAN")]
    pub default_plan: Option<String>,

    /// Name of this replica for leader election (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "sluice-operator")]
    pub identity: String,

    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub lease_namespace: String,

    /// How long the leader Lease stays valid without a renewal: after a
    /// leader crashes, a standby takes over within this plus one retry
    /// period. (A graceful shutdown hands over at once.)
    #[arg(long, env = "SLUICE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long a leader keeps leading while it cannot renew the Lease;
    /// shorter than --lease-duration. Default: two thirds of it (10s).
    #[arg(long, env = "SLUICE_LEASE_RENEW_DEADLINE", value_parser = parse_duration)]
    pub lease_renew_deadline: Option<Duration>,

    /// How often the leader renews the Lease and a standby looks at it;
    /// shorter than the renew deadline. Default: a fifth of
    /// --lease-duration, at most 2s.
    #[arg(long, env = "SLUICE_LEASE_RETRY_PERIOD", value_parser = parse_duration)]
    pub lease_retry_period: Option<Duration>,

    /// Turn leader election off (a single replica, tests).
    #[arg(long, env = "SLUICE_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,

    /// The admission webhooks' port and certificates.
    #[command(flatten)]
    pub admission: crate::admission::AdmissionConfig,

    /// The web console's port and sessions.
    #[command(flatten)]
    pub console: crate::console::ConsoleConfig,
}

/// Maintenance commands; without one, the operator runs.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Rebuild the daily workflow and node metrics and the usage records of
    /// a range of UTC days from the executions table, then exit. Needs
    /// --database-url (or DATABASE_URL); applies pending migrations first.
    RecomputeMetrics {
        /// First day, e.g. 2026-11-01.
        #[arg(long)]
        from: NaiveDate,
        /// Last day, inclusive. Defaults to today (UTC).
        #[arg(long)]
        to: Option<NaiveDate>,
    },
    /// Print usage per namespace and workflow over a range of UTC days:
    /// runs by outcome, node-seconds (runner pod time), data bytes (run
    /// input and output) and the namespace's plan limits, read from
    /// PostgreSQL. Needs --database-url (or DATABASE_URL).
    Usage {
        /// First day, e.g. 2026-11-01.
        #[arg(long)]
        from: NaiveDate,
        /// Last day, inclusive.
        #[arg(long)]
        to: NaiveDate,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// table (default), csv or json.
        #[arg(long, value_enum, default_value_t = UsageFormat::Table)]
        output: UsageFormat,
    },
}

/// How `usage` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageFormat {
    /// Aligned columns for people.
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON array of rows.
    Json,
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_crds::Duration::parse(text)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err("must be longer than zero".into()),
        duration => Ok(duration),
    }
}

impl Config {
    /// The leader election timings, checked against each other.
    pub fn lease_settings(
        &self,
    ) -> Result<crate::leader::LeaseSettings, crate::leader::LeaseSettingsError> {
        crate::leader::LeaseSettings::new(
            self.lease_duration,
            self.lease_renew_deadline,
            self.lease_retry_period,
        )
    }

    /// The namespaces the operator watches.
    pub fn scope(&self) -> crate::scope::WatchScope {
        let mut namespaces = self.watch_namespaces.clone();
        namespaces.extend(self.legacy_namespace.clone());
        crate::scope::WatchScope::new(&namespaces)
    }

    /// The runner command as argv.
    pub fn runner_argv(&self) -> Vec<String> {
        self.runner_command
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_flags_override() {
        let config = Config::try_parse_from([
            "sluice-operator",
            "--lease-duration",
            "30s",
            "--no-leader-election",
        ])
        .unwrap();
        assert_eq!(config.lease_duration, Duration::from_secs(30));
        let lease = config.lease_settings().unwrap();
        assert_eq!(lease.renew_deadline, Duration::from_secs(20));
        assert_eq!(config.mirror_grace_period, Duration::from_secs(15 * 60));
        assert_eq!(config.metrics_sample_interval, Duration::from_secs(60));
        assert_eq!(config.metrics_retention, Duration::from_secs(30 * 86_400));
        assert!(
            Config::try_parse_from(["sluice-operator", "--metrics-sample-interval", "0s"]).is_err()
        );
        assert!(config.no_leader_election);
        assert_eq!(config.runner_argv(), ["sluice-runner", "exec"]);
        assert!(Config::try_parse_from(["sluice-operator", "--lease-duration", "soon"]).is_err());
        assert_eq!(config.command, None);
    }

    #[test]
    fn watched_namespaces_are_a_comma_separated_list() {
        let config =
            Config::try_parse_from(["sluice-operator", "--watch-namespaces", "team-b,team-a"])
                .unwrap();
        assert_eq!(
            config.scope(),
            crate::scope::WatchScope::Namespaces(vec!["team-a".into(), "team-b".into()])
        );
        let older = Config::try_parse_from(["sluice-operator", "--namespace", "growth"]).unwrap();
        assert_eq!(
            older.scope(),
            crate::scope::WatchScope::Namespaces(vec!["growth".into()])
        );
        let legacy = Config::try_parse_from([
            "sluice-operator",
            "--legacy-namespace",
            "growth",
            "--watch-namespaces",
            "payments",
        ])
        .unwrap();
        assert_eq!(
            legacy.scope(),
            crate::scope::WatchScope::Namespaces(vec!["growth".into(), "payments".into()])
        );
        let everything = Config::try_parse_from(["sluice-operator"]).unwrap();
        assert_eq!(everything.scope(), crate::scope::WatchScope::Cluster);
    }

    #[test]
    fn recompute_metrics_takes_a_day_range() {
        let config = Config::try_parse_from([
            "sluice-operator",
            "recompute-metrics",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
        ])
        .unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(
            config.command,
            Some(Command::RecomputeMetrics {
                from: day(1),
                to: Some(day(3))
            })
        );
        assert!(
            Config::try_parse_from(["sluice-operator", "recompute-metrics", "--from", "November"])
                .is_err()
        );
    }

    #[test]
    fn usage_takes_a_range_a_namespace_and_an_output() {
        let config = Config::try_parse_from([
            "sluice-operator",
            "usage",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--namespace",
            "growth",
            "--output",
            "csv",
        ])
        .unwrap();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(
            config.command,
            Some(Command::Usage {
                from: day(1),
                to: day(30),
                namespace: Some("growth".into()),
                output: UsageFormat::Csv,
            })
        );
        let bare = Config::try_parse_from([
            "sluice-operator",
            "usage",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
        ])
        .unwrap();
        assert!(matches!(
            bare.command,
            Some(Command::Usage {
                namespace: None,
                output: UsageFormat::Table,
                ..
            })
        ));
        assert!(
            Config::try_parse_from([
                "sluice-operator",
                "usage",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-02",
                "--output",
                "xml"
            ])
            .is_err()
        );
        assert_eq!(
            Config::try_parse_from(["sluice-operator", "--default-plan", "free"])
                .unwrap()
                .default_plan
                .as_deref(),
            Some("free")
        );
    }
}

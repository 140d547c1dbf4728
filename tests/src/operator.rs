//! Runs the real `sluice-operator` binary against a [`TestCluster`], with a
//! fresh PostgreSQL database per test.
//!
//! - [`ensure_binaries`]: builds `sluice-operator` and `sluice-runner` once
//!   per test process (`cargo build`, a no-op when they are fresh). `cargo
//!   test -p sluice-e2e` does not build other packages' binaries, and an
//!   end-to-end test of a stale binary proves nothing, so the harness
//!   builds them itself rather than trusting whatever is in `target/`.
//!   `SLUICE_E2E_NO_BUILD=1` skips the build (the binaries must then exist).
//! - [`TestDatabase`]: `CREATE DATABASE e2e_<random>` on the server of
//!   `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   dropped by [`TestDatabase::finish`].
//! - [`Operator`]: the operator process, configured for the test's
//!   namespace only, on free loopback ports; killed when dropped. When the
//!   test panics its log is printed, so a failure shows what the operator
//!   did; `SLUICE_E2E_OPERATOR_LOGS=<folder>` keeps every log there.
//!   How runner pods reach it (loopback, or in cluster mode every address
//!   and an advertised one) is [`crate::reach`]'s decision.
//!
//! It does not define scenarios; those live in `tests/e2e/operator*.rs`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use crate::binaries::{Binary, locate, workspace_root};
use crate::cluster::{ClusterError, TestCluster};
use crate::reach::{Reach, ReachError};

/// Default PostgreSQL server of the tests (as in `.cargo/config.toml`).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Environment variable that turns the build of the binaries off.
pub const NO_BUILD_ENV: &str = "SLUICE_E2E_NO_BUILD";
/// Environment variable naming a folder that keeps the operators' logs
/// after the tests (by default they are printed only when a test fails).
pub const LOG_DIR_ENV: &str = "SLUICE_E2E_OPERATOR_LOGS";
/// How long [`eventually`] waits.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Cluster mode is missing a setting.
    #[error(transparent)]
    Reach(#[from] ReachError),
    /// The workspace binaries could not be built.
    #[error("failed to build the operator and runner binaries: {0}")]
    Build(String),
    /// PostgreSQL is not reachable or refused a statement.
    #[error(
        "failed to {action} on PostgreSQL at {server}: {source} (the end-to-end tests need PostgreSQL: `bash .ci/run` installs and starts it, or set DATABASE_URL to a server where user may create databases)"
    )]
    Database {
        /// What the harness was doing.
        action: String,
        /// The server URL.
        server: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A binary is missing.
    #[error(transparent)]
    Binary(#[from] crate::binaries::MissingBinary),
    /// The cluster refused something.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The operator process could not start or did not become ready.
    #[error("operator: {0}")]
    Operator(String),
}

/// Builds `sluice-operator` and `sluice-runner` once per process; every
/// caller gets the first outcome.
pub fn ensure_binaries() -> Result<(), HarnessError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = BUILT.get_or_init(|| {
        if std::env::var(NO_BUILD_ENV).is_ok_and(|value| value == "1") {
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .or_else(|| option_env!("CARGO").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("cargo"));
        let output = std::process::Command::new(&cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "-p",
                Binary::Operator.package(),
                "-p",
                Binary::Runner.package(),
                "--bin",
                Binary::Operator.name(),
                "--bin",
                Binary::Runner.name(),
            ])
            .args(crate::binaries::release().then_some("--release"))
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("failed to run {}: {error}", cargo.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            Err(format!(
                "`cargo build -p sluice-operator -p sluice-runner` failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    });
    outcome.clone().map_err(HarnessError::Build)?;
    locate(Binary::Operator)?;
    locate(Binary::Runner)?;
    Ok(())
}

/// A test cluster whose kubelet can run `sluice-runner`: builds the
/// binaries first, then starts the cluster.
pub async fn cluster(test: &str) -> Result<TestCluster, HarnessError> {
    tokio::task::spawn_blocking(ensure_binaries)
        .await
        .map_err(|error| HarnessError::Build(error.to_string()))??;
    Ok(TestCluster::start(test).await?)
}

/// The PostgreSQL server the tests use.
pub fn database_server_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A fresh database for one test.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDatabase {
    /// Creates `e2e_<random>` on [`database_server_url`].
    pub async fn create() -> Result<Self, HarnessError> {
        let server = database_server_url();
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let failed = |action: &str| {
            let server = server.clone();
            let action = action.to_string();
            move |source| HarnessError::Database {
                action,
                server,
                source,
            }
        };
        let mut admin = PgConnection::connect(&server)
            .await
            .map_err(failed("connect"))?;
        // The name is ours (`e2e_` and hex digits), never input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(failed("create a database"))?;
        let _ = admin.close().await;
        let url = with_database(&server, &name);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .map_err(failed("connect to the test database"))?;
        Ok(Self {
            server,
            name,
            url,
            pool,
        })
    }

    /// URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on the test database, for assertions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops the database and creates an empty one of the same name in
    /// its place (its connections are cut), as a restore or a replaced
    /// server would.
    pub async fn replace_with_empty(&self) -> Result<(), HarnessError> {
        let failed = |action: &str| {
            let server = self.server.clone();
            let action = action.to_string();
            move |source| HarnessError::Database {
                action,
                server,
                source,
            }
        };
        let mut admin = PgConnection::connect(&self.server)
            .await
            .map_err(failed("connect"))?;
        for statement in [
            format!("DROP DATABASE {} WITH (FORCE)", self.name),
            format!("CREATE DATABASE {}", self.name),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .map_err(failed("replace the test database"))?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// Drops the database (after the operator has been stopped).
    pub async fn finish(self) -> Result<(), HarnessError> {
        self.pool.close().await;
        let server = self.server.clone();
        let mut admin =
            PgConnection::connect(&server)
                .await
                .map_err(|source| HarnessError::Database {
                    action: "connect".into(),
                    server: server.clone(),
                    source,
                })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .map_err(|source| HarnessError::Database {
            action: "drop the test database".into(),
            server,
            source,
        })?;
        Ok(())
    }
}

/// How to start the operator.
#[derive(Debug, Clone, Default)]
pub struct OperatorOptions {
    /// `DATABASE_URL` of the mirror; none turns the mirror off.
    pub database_url: Option<String>,
    /// Take part in leader election (a Lease in the test's namespace)
    /// instead of leading at once.
    pub leader_election: bool,
    /// Replica name (`POD_NAME`); `sluice-operator` when empty.
    pub identity: String,
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// Watch every namespace instead of only the test's (the stand-in
    /// holds only this test's objects; on a real cluster it sees others').
    pub all_namespaces: bool,
    /// Watch these namespaces (`SLUICE_WATCH_NAMESPACES`) instead of only
    /// the test's; ignored with `all_namespaces`.
    pub watch_namespaces: Vec<String>,
}

impl OperatorOptions {
    /// Options with the mirror writing to `database`.
    pub fn with_database(database: &TestDatabase) -> Self {
        Self {
            database_url: Some(database.url().to_string()),
            ..Self::default()
        }
    }
}

/// A free loopback port (bound, read and released: a small race, fine for tests).
pub fn free_port() -> Result<u16, HarnessError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| HarnessError::Operator(format!("failed to find a free port: {error}")))
}

/// A running `sluice-operator`.
#[derive(Debug)]
pub struct Operator {
    child: Option<tokio::process::Child>,
    binary: PathBuf,
    env: Vec<(String, String)>,
    run_api_port: u16,
    metrics_port: u16,
    webhook_port: u16,
    admission_port: u16,
    console_port: u16,
    advertised_host: String,
    log: PathBuf,
    starts: u32,
    logs: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator for `cluster`'s namespace and waits until it
    /// serves `/healthz` and `/readyz`.
    pub async fn start(
        cluster: &TestCluster,
        options: OperatorOptions,
    ) -> Result<Self, HarnessError> {
        let binary = locate(Binary::Operator)?;
        let reach = Reach::from_env()?;
        let run_api_port = free_port()?;
        let metrics_port = free_port()?;
        let webhook_port = free_port()?;
        let admission_port = free_port()?;
        let console_port = free_port()?;
        let identity = if options.identity.is_empty() {
            "sluice-operator".to_string()
        } else {
            options.identity.clone()
        };
        let mut env = vec![
            (
                "KUBECONFIG".to_string(),
                cluster.kubeconfig_path().display().to_string(),
            ),
            ("POD_NAMESPACE".into(), cluster.namespace().to_string()),
            ("POD_NAME".into(), identity),
            (
                "SLUICE_RUN_API_ADDR".into(),
                format!("{}:{run_api_port}", reach.bind_host),
            ),
            (
                "SLUICE_RUN_API_URL".into(),
                format!("http://{}:{run_api_port}", reach.advertised_host),
            ),
            (
                "SLUICE_METRICS_ADDR".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            (
                "SLUICE_WEBHOOK_ADDR".into(),
                format!("{}:{webhook_port}", reach.bind_host),
            ),
            ("SLUICE_RUNNER_COMMAND".into(), "sluice-runner exec".into()),
            (
                "SLUICE_ADMISSION_ADDR".into(),
                format!("{}:{admission_port}", reach.bind_host),
            ),
            // Webhook configurations name the operator by URL (on loopback,
            // or in cluster mode at the advertised address the API server
            // reaches); one pair per test namespace, so tests on one
            // cluster never share.
            (
                "SLUICE_ADMISSION_DNS_NAMES".into(),
                reach.advertised_host.clone(),
            ),
            (
                "SLUICE_ADMISSION_WEBHOOK_CONFIG".into(),
                format!("sluice-admission-{}", cluster.namespace()),
            ),
            (
                "RUST_LOG".into(),
                std::env::var("SLUICE_E2E_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,kube_runtime=warn".into()),
            ),
        ];
        if !options.all_namespaces {
            let watched = if options.watch_namespaces.is_empty() {
                cluster.namespace().to_string()
            } else {
                options.watch_namespaces.join(",")
            };
            env.push(("SLUICE_WATCH_NAMESPACES".into(), watched));
        }
        if !options.leader_election {
            env.push(("SLUICE_NO_LEADER_ELECTION".into(), "true".into()));
        } else {
            env.push(("SLUICE_LEASE_DURATION".into(), "3s".into()));
        }
        if let Some(url) = &options.database_url {
            env.push(("DATABASE_URL".into(), url.clone()));
            // The console reads the database, so it runs with the mirror.
            env.push((
                "SLUICE_CONSOLE_ADDR".into(),
                format!("127.0.0.1:{console_port}"),
            ));
        }
        if let Some(image) = &reach.runner_image {
            env.push(("SLUICE_RUNNER_IMAGE".into(), image.clone()));
        }
        env.extend(options.env.iter().cloned());
        let mut operator = Self {
            child: None,
            binary,
            env,
            run_api_port,
            metrics_port,
            webhook_port,
            admission_port,
            console_port,
            advertised_host: reach.advertised_host,
            log: PathBuf::new(),
            starts: 0,
            logs: tempfile::Builder::new()
                .prefix("sluice-e2e-operator-")
                .tempdir()
                .map_err(|error| {
                    HarnessError::Operator(format!("failed to create a log folder: {error}"))
                })?,
        };
        operator.spawn()?;
        operator.wait_healthy().await?;
        if !options.leader_election {
            operator.wait_ready().await?;
        }
        Ok(operator)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        self.starts += 1;
        let name = self
            .env
            .iter()
            .find(|(key, _)| key == "POD_NAME")
            .map_or("operator", |(_, value)| value.as_str());
        let folder = std::env::var_os(LOG_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.logs.path().to_path_buf());
        let _ = std::fs::create_dir_all(&folder);
        let namespace = self
            .env
            .iter()
            .find(|(key, _)| key == "SLUICE_WATCH_NAMESPACES")
            .and_then(|(_, value)| value.split(',').next())
            .unwrap_or("");
        self.log = folder.join(format!("{namespace}-{name}-{}.log", self.starts));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|error| {
                    HarnessError::Operator(format!(
                        "failed to open {}: {error}",
                        self.log.display()
                    ))
                })
        };
        let child = tokio::process::Command::new(&self.binary)
            .env_remove("DATABASE_URL")
            .env_remove("SLUICE_WATCH_NAMESPACES")
            .env_remove("SLUICE_NAMESPACE")
            .env_remove("KUBECONFIG")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(open()?))
            .stderr(Stdio::from(open()?))
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                HarnessError::Operator(format!(
                    "failed to start {}: {error}",
                    self.binary.display()
                ))
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Base URL of the run API (what runners use: loopback, or in cluster
    /// mode the address advertised to pods).
    pub fn run_api_url(&self) -> String {
        format!("http://{}:{}", self.advertised_host, self.run_api_port)
    }

    /// Base URL of the admission webhooks (HTTPS, `/validate`, `/mutate`).
    pub fn admission_url(&self) -> String {
        format!("https://{}:{}", self.advertised_host, self.admission_port)
    }

    /// Base URL of `/metrics`, `/healthz`, `/readyz`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// Base URL of the webhook server (`POST /hooks/...`; in cluster mode
    /// at the address advertised to pods).
    pub fn webhook_url(&self) -> String {
        format!("http://{}:{}", self.advertised_host, self.webhook_port)
    }

    /// Base URL of the web console (served when the mirror is on).
    pub fn console_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.console_port)
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// Everything the current process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Path of the current process's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    async fn get(&self, path: &str) -> Option<u16> {
        crate::cluster::install_crypto_provider();
        let url = format!("{}{path}", self.metrics_url());
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// Text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, HarnessError> {
        crate::cluster::install_crypto_provider();
        let url = format!("{}/metrics", self.metrics_url());
        let response = reqwest::get(url)
            .await
            .map_err(|error| HarnessError::Operator(format!("failed to read /metrics: {error}")))?;
        response
            .text()
            .await
            .map_err(|error| HarnessError::Operator(format!("failed to read /metrics: {error}")))
    }

    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the operator exited ({status}) before it was ready; its log:\n{}",
                self.logs()
            )),
            _ => None,
        }
    }

    async fn wait_for_status(&mut self, path: &str) -> Result<(), HarnessError> {
        let started = tokio::time::Instant::now();
        loop {
            if self.get(path).await == Some(200) {
                return Ok(());
            }
            if let Some(message) = self.exited() {
                return Err(HarnessError::Operator(message));
            }
            if started.elapsed() > WAIT_LIMIT {
                return Err(HarnessError::Operator(format!(
                    "{path} did not answer 200 within {WAIT_LIMIT:?}; log:\n{}",
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the process answers `/healthz`.
    pub async fn wait_healthy(&mut self) -> Result<(), HarnessError> {
        self.wait_for_status("/healthz").await
    }

    /// Waits until the replica serves (`/readyz`; every replica is ready,
    /// leading or not).
    pub async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        self.wait_for_status("/readyz").await
    }

    /// Whether this replica holds the leader Lease now (`sluice_leader 1`).
    pub async fn is_leader(&self) -> bool {
        self.metrics()
            .await
            .is_ok_and(|text| text.lines().any(|line| line.trim() == "sluice_leader 1"))
    }

    /// Waits until this replica holds the leader Lease.
    pub async fn wait_leader(&mut self) -> Result<(), HarnessError> {
        let started = tokio::time::Instant::now();
        while !self.is_leader().await {
            if let Some(message) = self.exited() {
                return Err(HarnessError::Operator(message));
            }
            if started.elapsed() > WAIT_LIMIT {
                return Err(HarnessError::Operator(format!(
                    "the replica did not lead within {WAIT_LIMIT:?}; log:\n{}",
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Kills the process with SIGKILL (no graceful shutdown) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the process with SIGTERM and waits for it to exit.
    pub async fn terminate(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = child.kill().await;
                Err(HarnessError::Operator(
                    "the operator did not exit within 30 s of SIGTERM".into(),
                ))
            }
        }
    }

    /// Starts the process again (same ports, same configuration) after
    /// [`Operator::kill`], and waits until it is ready.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill().await;
        self.spawn()?;
        self.wait_healthy().await?;
        if self
            .env
            .iter()
            .any(|(key, _)| key == "SLUICE_NO_LEADER_ELECTION")
        {
            self.wait_ready().await?;
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().rev().take(200).collect();
            eprintln!(
                "---- operator log ({}), last {} lines ----\n{}",
                self.log.display(),
                lines.len(),
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Polls `check` every 50 ms until it yields a value; fails after
/// [`WAIT_LIMIT`] with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "timed out after {WAIT_LIMIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "e2e_1"),
            "postgres://postgres@127.0.0.1:5432/e2e_1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/x?sslmode=disable", "e2e_1"),
            "postgres://u:p@db/e2e_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db:5432", "e2e_1"),
            "postgres://db:5432/e2e_1"
        );
    }
}

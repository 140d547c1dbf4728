//! The operator process: connects to Kubernetes (and PostgreSQL when
//! configured), serves the run API and metrics on every replica, and runs
//! the controllers on the leader only. SIGTERM stops the controllers
//! gracefully, then hands the leader Lease over (see [`crate::leader`]),
//! while the servers drain their requests.

use crate::config::Config;
use crate::context::Context;
use crate::mirror::{Mirror, MirrorConfig, run_migrations};
use crate::run_api::token::{KEY_SECRET_KEY, KEY_SECRET_NAME, TokenKey};
use crate::telemetry::Metrics;
use anyhow::Context as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use sqlx::postgres::PgConnectOptions;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Rebuilds daily metrics for `from..=to` (UTC days) and prints what it did.
pub async fn recompute_metrics(
    config: &Config,
    from: chrono::NaiveDate,
    to: Option<chrono::NaiveDate>,
) -> anyhow::Result<()> {
    let url = config
        .database_url
        .as_deref()
        .context("recompute-metrics needs the database: pass --database-url or set DATABASE_URL")?;
    let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}: swap them");
    let options = PgConnectOptions::from_str(url).context("failed to parse the database URL")?;
    run_migrations(&options)
        .await
        .context("failed to migrate the database")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .context("failed to connect to the database")?;
    let done = crate::mirror::metrics::recompute_daily_metrics(&pool, from..=to)
        .await
        .context("failed to recompute daily metrics")?;
    println!(
        "recomputed daily metrics for {from}..={to}: {} workflow-days, {} workspace-days",
        done.workflow_days, done.workspace_days
    );
    Ok(())
}

/// Prints usage per namespace and workflow for `from..=to` (UTC days).
/// Only reads: it applies no migration, so it can run against a replica.
pub async fn usage(
    config: &Config,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    namespace: Option<&str>,
    output: crate::config::UsageFormat,
) -> anyhow::Result<()> {
    let url = config
        .database_url
        .as_deref()
        .context("usage needs the database: pass --database-url or set DATABASE_URL")?;
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}: swap them");
    let options = PgConnectOptions::from_str(url).context("failed to parse the database URL")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .context("failed to connect to the database")?;
    let rows = crate::usage::read_usage(&pool, from, to, namespace)
        .await
        .context("failed to read usage")?;
    print!("{}", crate::usage::render(&rows, output));
    Ok(())
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let lease_settings = config.lease_settings()?;
    let client = Client::try_default()
        .await
        .context("failed to build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let mirror = match &config.database_url {
        Some(url) => {
            let resync = crate::mirror_map::ClusterResync::new(client.clone(), config.scope())
                .with_default_plan(config.default_plan.clone());
            Some(start_mirror(url, metrics.clone(), Arc::new(resync))?)
        }
        None => {
            tracing::info!("no database configured: the PostgreSQL mirror is off");
            None
        }
    };
    let token_key = load_token_key(&client, &config.lease_namespace).await?;
    let context = Arc::new(Context::new(
        client.clone(),
        config.clone(),
        token_key,
        mirror,
        metrics.clone(),
    ));

    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    });

    let run_api = serve(
        config.run_api_addr,
        crate::run_api::server::router(context.clone()),
        stopping.clone(),
    );
    let telemetry = serve(
        config.metrics_addr,
        crate::telemetry::router(metrics.clone()),
        stopping.clone(),
    );

    let webhooks = serve(
        config.webhook_addr,
        crate::webhook::server::router(Arc::new(crate::webhook::server::WebhookServer::new(
            Arc::new(crate::webhook::kube_backend::KubeBackend::new(
                client.clone(),
                config.scope(),
            )),
            Some(metrics.clone()),
            crate::webhook::server::Settings::default(),
        ))),
        stopping.clone(),
    );

    let admission = async {
        if config.admission.no_admission {
            return Ok(());
        }
        crate::admission::serve(
            client.clone(),
            config.lease_namespace.clone(),
            config.admission.clone(),
            config.default_plan.clone(),
            stopping.clone(),
        )
        .await
        .context("admission webhooks failed")
    };

    let console = serve_console(&config, &client, stopping.clone());

    let (leader_tx, mut leader_rx) = watch::channel(config.no_leader_election);
    // Set once the controllers have stopped: only then may the Lease go.
    let (controllers_stopped, mut stopped) = watch::channel(false);
    let election = if config.no_leader_election {
        None
    } else {
        let elector = crate::leader::Elector::new(
            client.clone(),
            &config.lease_namespace,
            config.identity.clone(),
            lease_settings,
            metrics.clone(),
        );
        Some(tokio::spawn(elector.campaign(leader_tx, async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        })))
    };
    // Every replica serves the run API and webhooks, so every replica is
    // ready once its servers are up, whether or not it leads.
    metrics.set_ready();
    let controllers = {
        let context = context.clone();
        let stopping = stopping.clone();
        async move {
            let mut stopping_wait = stopping.clone();
            tokio::select! {
                _ = leader_rx.wait_for(|leading| *leading) => {}
                _ = stopping_wait.wait_for(|stop| *stop) => return Ok(()),
            }
            context.metrics.leader.set(1);
            tracing::info!("starting controllers");
            if let Some(mirror) = &context.mirror {
                // Deletes made while no operator led are found this way.
                mirror.resync_now();
            }
            let until_stop = |mut receiver: watch::Receiver<bool>| async move {
                let _ = receiver.wait_for(|stop| *stop).await;
            };
            let lost = async {
                let _ = leader_rx.wait_for(|leading| !*leading).await;
            };
            tokio::select! {
                _ = futures::future::join5(
                    crate::workflow::controller::run(context.clone(), until_stop(stopping.clone())),
                    crate::run::controller::run(context.clone(), until_stop(stopping.clone())),
                    crate::connection::controller::run(context.clone(), until_stop(stopping.clone())),
                    crate::schedule::controller::run(context.clone(), until_stop(stopping.clone())),
                    async {
                        futures::future::join3(
                            crate::audit::run(context.clone(), until_stop(stopping.clone())),
                            crate::sampler::run(context.clone(), until_stop(stopping.clone())),
                            crate::quota::run(context.clone(), until_stop(stopping.clone())),
                        )
                        .await
                    },
                ) => {
                    tracing::info!("controllers stopped");
                    Ok(())
                }
                _ = lost => anyhow::bail!("lost the leader lease: exiting so another replica can lead"),
            }
        }
    };
    let controllers = async {
        let outcome = controllers.await;
        controllers_stopped.send_replace(true);
        if let Some(election) = election {
            // The elector releases the Lease and waits one retry period
            // for a standby to take it; allow a little more for the calls.
            let limit = lease_settings.retry_period + Duration::from_secs(5);
            if tokio::time::timeout(limit, election).await.is_err() {
                tracing::warn!(
                    "the leader lease was not released in time; a standby takes over when it expires"
                );
            }
        }
        metrics.leader.set(0);
        outcome
    };
    let (run_api, telemetry, webhooks, admission, console, controllers) = tokio::join!(
        run_api,
        telemetry,
        webhooks,
        admission,
        console,
        controllers
    );
    run_api?;
    console?;
    admission?;
    telemetry?;
    webhooks?;
    controllers
}

/// Serves the web console when `--console-addr` is set; it reads the
/// database, so it needs `--database-url` too.
async fn serve_console(
    config: &Config,
    client: &Client,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(address) = config.console.console_addr else {
        return Ok(());
    };
    let url = config.database_url.as_deref().context(
        "the console (--console-addr) reads run history from PostgreSQL: set --database-url too",
    )?;
    let options = PgConnectOptions::from_str(url).context("failed to parse the database URL")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let state = Arc::new(crate::console::server::ConsoleState {
        pool,
        authority: crate::console::identity::KubeAuthority::new(client.clone()),
        session_lifetime: config.console.console_session_ttl,
        oauth2_redirect_url: config.console.oauth2_redirect_url.clone(),
    });
    crate::console::server::serve(address, state, stopping).await
}

async fn serve(
    address: std::net::SocketAddr,
    router: axum::Router,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address}"))?;
    tracing::info!(%address, "listening");
    let mut stopping = stopping;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await
        .context("server failed")
}

/// Starts the mirror's writer at once and applies migrations in the
/// background, retrying while PostgreSQL is unreachable: the operator
/// never waits for the database.
fn start_mirror(
    url: &str,
    metrics: Arc<Metrics>,
    resync: Arc<dyn crate::mirror::ResyncSource>,
) -> anyhow::Result<Mirror> {
    let options = PgConnectOptions::from_str(url).context("failed to parse the database URL")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        // A refused connection is retried until this timeout, and only
        // then does the mirror report PostgreSQL down: keep it short.
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(options.clone());
    // sqlx's migrator future is not `Send` for every lifetime, so it runs
    // on a thread of its own rather than on the multi-threaded runtime.
    let migrations = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the migration runtime")?;
    let (mirror, _writer) = Mirror::start(pool, MirrorConfig::default(), Some(resync));
    // The leader resyncs (see `run`); a standby only writes its run API's events.
    mirror.pause_resync();
    let schema = mirror.clone();
    std::thread::spawn(move || {
        migrations.block_on(async move {
            loop {
                let mut delay = Duration::from_secs(1);
                loop {
                    match run_migrations(&options).await {
                        Ok(()) => {
                            tracing::info!("database migrations applied");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "failed to migrate the database; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                // An empty database may take this one's place (restored,
                // replaced): migrate it too, then the mirror resyncs.
                schema.schema_lost().await;
                tracing::warn!("the database has no Sluice tables (replaced or emptied?); applying the migrations again");
            }
        })
    });
    for definition in crate::mirror_map::node_definition_records() {
        if let Err(error) = mirror.offer(definition) {
            tracing::warn!(%error, "failed to queue the node catalog for the mirror");
        }
    }
    let observed = mirror.clone();
    tokio::spawn(async move {
        loop {
            let stats = observed.stats();
            metrics.mirror_backlog.set(stats.backlog as i64);
            metrics.mirror_down.set(i64::from(!stats.connected));
            observed.changed().await;
        }
    });
    Ok(mirror)
}

/// The operator-wide key of runner credentials: read from its Secret, or
/// created once. Replicas racing to create it all end up reading the winner's.
async fn load_token_key(client: &Client, namespace: &str) -> anyhow::Result<TokenKey> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        if let Some(secret) = secrets.get_opt(KEY_SECRET_NAME).await? {
            let key = secret
                .data
                .and_then(|mut data| data.remove(KEY_SECRET_KEY))
                .with_context(|| {
                    format!("secret {namespace}/{KEY_SECRET_NAME} has no key {KEY_SECRET_KEY:?}")
                })?;
            return Ok(TokenKey::new(key.0));
        }
        let key = TokenKey::generate();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(KEY_SECRET_NAME.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                KEY_SECRET_KEY.to_owned(),
                ByteString(key.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(key),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error).context("failed to create the run API key secret"),
        }
    }
    anyhow::bail!("failed to read or create secret {namespace}/{KEY_SECRET_NAME}")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

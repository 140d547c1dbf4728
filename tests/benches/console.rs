//! How fast the web console answers at volume (issue 16): 100,000 runs
//! and 1,000,000 node executions in a fresh PostgreSQL database, read
//! through the console's real HTTP routes.
//!
//! ```text
//! cargo bench -p sluice-e2e --bench console
//! SLUICE_BENCH_SAMPLES=500 cargo bench -p sluice-e2e --bench console
//! ```
//!
//! Seeds with `generate_series` (10 namespaces, 100 workflows, 100,000
//! runs over 30 days, 10 node executions each but one run with 100 nodes and
//! 500 log lines), then serves the console in this process against the
//! API server stand-in (TokenReview and SubjectAccessReview answered on
//! loopback) and reports, per request kind, p50 and p95 of the request
//! as the client sees it (routing, session, every namespace's access
//! review, the queries and the JSON) and of the queries alone. Target:
//! p95 ≤ 50 ms each. DATABASE_URL as for the tests; the scratch database
//! is dropped at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_e2e::apiserver::ApiServer;
use sluice_operator::console::identity::KubeAuthority;
use sluice_operator::console::runs::{self, Cursor, RunFilter};
use sluice_operator::console::server::{ConsoleState, router};
use sluice_operator::mirror::run_migrations;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

const NAMESPACES: u32 = 10;
const WORKFLOWS: u32 = 100;
const RUNS: u32 = 100_000;
const NODES_PER_RUN: u32 = 10;
const DETAIL_NODES: u32 = 100;
const DETAIL_LOGS: u32 = 500;
const TOKEN: &str = "bench-token-0123456789";

fn samples() -> usize {
    std::env::var("SLUICE_BENCH_SAMPLES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin: PgConnectOptions = url.parse().expect("DATABASE_URL");
    let name = format!("sluice_bench_console_{}", std::process::id());
    let mut connection = admin.connect().await.expect("failed to reach PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("failed to create the scratch database");
    let options = admin.clone().database(&name);
    run_migrations(&options).await.expect("migrations");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("a pool");

    let started = Instant::now();
    seed(&pool).await;
    println!(
        "seeded {RUNS} runs and {} node executions in {:.1} s",
        (RUNS - 1) * NODES_PER_RUN + DETAIL_NODES,
        started.elapsed().as_secs_f64()
    );

    measure(&pool).await;

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut connection)
        .await
        .expect("failed to drop the scratch database");
    connection.close().await.ok();
}

/// The uuid of a seeded row: `kind` (1 workflow, 2 run) and a number.
const UUID_SQL: &str = "('00000000-0000-4000-8000-' || lpad(to_hex({kind}), 2, '0') || lpad(to_hex({n}), 10, '0'))::uuid";

fn uuid_sql(kind: u32, number: &str) -> String {
    UUID_SQL
        .replace("{kind}", &kind.to_string())
        .replace("{n}", number)
}

async fn seed(pool: &PgPool) {
    let workflow = uuid_sql(1, "w");
    let run = uuid_sql(2, "r");
    let run_workflow = uuid_sql(1, "((r / 10) % 100) + 1");
    let statements = [
        format!(
            "INSERT INTO workspaces (name, owner_id)
             SELECT 'team-' || n, '5111ce00-0000-4000-8000-000000000001'
             FROM generate_series(1, {NAMESPACES}) n"
        ),
        format!(
            "INSERT INTO workflows (id, workspace_id, name, nodes, edges, version)
             SELECT {workflow}, ws.id, 'flow-' || w, '[]', '[]', 1
             FROM generate_series(1, {WORKFLOWS}) w
             JOIN workspaces ws ON ws.name = 'team-' || ((w % {NAMESPACES}) + 1)"
        ),
        format!(
            "INSERT INTO workflow_executions (id, workflow_id, name, workflow_version, status, trigger_data,
                                              variables, result, error, created_at, started_at, ended_at)
             SELECT {run}, {run_workflow}, 'run-' || r, 1,
                    CASE WHEN r % 10 = 0 THEN 'failed' WHEN r % 20 = 1 THEN 'running'
                         WHEN r % 20 = 3 THEN 'cancelled' ELSE 'completed' END,
                    CASE WHEN r % 3 = 0 THEN '{{\"type\": \"Schedule\", \"source\": \"nightly\"}}'::jsonb
                         WHEN r % 7 = 0 THEN '{{\"type\": \"Webhook\", \"source\": \"signup\"}}'::jsonb END,
                    jsonb_build_object('customer', r), jsonb_build_object('ok', r % 10 <> 0),
                    CASE WHEN r % 10 = 0 THEN 'node n3 failed' END,
                    now() - make_interval(secs => r * 25), now() - make_interval(secs => r * 25 - 1),
                    now() - make_interval(secs => r * 25 - 30)
             FROM generate_series(1, {RUNS}) r"
        ),
        format!(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, started_at, ended_at,
                                          input_data, output_data, error, attempt)
             SELECT {run}, 'n' || k, 'http',
                    CASE WHEN r % 10 = 0 AND k = 3 THEN 'failed' ELSE 'completed' END,
                    now() - make_interval(secs => r * 25 - k), now() - make_interval(secs => r * 25 - k - 1),
                    jsonb_build_object('url', 'https://crm.example.com/' || r, 'k', k),
                    jsonb_build_object('status', 200, 'body', repeat('x', 64)),
                    CASE WHEN r % 10 = 0 AND k = 3 THEN 'GET: 503' END, 0
             FROM generate_series(2, {RUNS}) r, generate_series(0, {} - 1) k",
            NODES_PER_RUN
        ),
        // Run 1 is the 100-node run whose detail is read.
        format!(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, started_at, ended_at,
                                          input_data, output_data, attempt)
             SELECT {}, 'node-' || k, 'transform', 'completed',
                    now() - make_interval(secs => 25 - k / 10.0), now() - make_interval(secs => 24 - k / 10.0),
                    jsonb_build_object('customer', 1, 'items', jsonb_build_array(k, k + 1, k + 2)),
                    jsonb_build_object('score', k, 'note', repeat('y', 200)), 0
             FROM generate_series(0, {DETAIL_NODES} - 1) k",
            uuid_sql(2, "1")
        ),
        format!(
            "INSERT INTO execution_logs (execution_id, node_execution_id, level, message, seq, created_at)
             SELECT n.execution_id, n.id, (ARRAY['debug', 'info', 'warn', 'error'])[(s % 4) + 1],
                    'line ' || s || ' of ' || n.node_id, s, now()
             FROM generate_series(1, {DETAIL_LOGS}) s
             JOIN node_executions n ON n.execution_id = {} AND n.node_id = 'node-' || (s % {DETAIL_NODES})",
            uuid_sql(2, "1")
        ),
        "ANALYZE".to_owned(),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .expect("failed to seed");
    }
}

struct Report {
    what: &'static str,
    http: Vec<Duration>,
    query: Vec<Duration>,
}

fn percentile(samples: &mut [Duration], share: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 * share).ceil() as usize).saturating_sub(1);
    samples[index.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

async fn measure(pool: &PgPool) {
    let api_server = ApiServer::start().await.expect("the stand-in");
    let identities = api_server.identities();
    identities.add_token(TOKEN, "bench", &["bench-readers"]);
    identities.allow(
        "bench-readers",
        "*",
        "sluice.dev",
        &["workflowruns"],
        &["get", "list"],
    );
    let config = kube::Config::new(api_server.url().parse().expect("a url"));
    let client = kube::Client::try_from(config).expect("a client");
    let state = Arc::new(ConsoleState {
        pool: pool.clone(),
        authority: KubeAuthority::new(client),
        session_lifetime: Duration::from_secs(3600),
        oauth2_redirect_url: None,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .ok();
    });
    let console = format!("http://{address}");
    let http = reqwest::Client::new();
    let signed_in = http
        .post(format!("{console}/api/session"))
        .json(&serde_json::json!({"token": TOKEN}))
        .send()
        .await
        .expect("sign-in");
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();

    let all: Vec<String> = (1..=NAMESPACES).map(|n| format!("team-{n}")).collect();
    // A cursor ten pages deep, for the "later page" case.
    let mut cursor = None;
    for _ in 0..10 {
        let page = runs::list_runs(pool, &readable(&all), cursor, 50)
            .await
            .expect("a page");
        cursor = page.next_cursor.as_deref().and_then(Cursor::decode);
    }
    let deep = cursor.expect("ten pages").encode();
    let levels = runs::levels_from("debug").expect("levels");

    let cases: Vec<(&'static str, String, RunFilter, Option<Cursor>)> = vec![
        (
            "runs list, unfiltered (10 namespaces)",
            String::new(),
            readable(&all),
            None,
        ),
        (
            "runs list, unfiltered, 11th page",
            format!("cursor={deep}"),
            readable(&all),
            Cursor::decode(&deep),
        ),
        (
            "runs list, namespace + phase=Failed",
            "namespace=team-3&phase=Failed".to_owned(),
            RunFilter {
                status: Some("failed"),
                ..readable(&["team-3".to_owned()])
            },
            None,
        ),
        (
            "runs list, workflow + trigger=Schedule",
            "namespace=team-3&workflow=flow-42&trigger=Schedule".to_owned(),
            RunFilter {
                workflow: Some("flow-42".to_owned()),
                trigger: Some("Schedule"),
                ..readable(&["team-3".to_owned()])
            },
            None,
        ),
        (
            "runs list, phase=Cancelled + 1-day window",
            "phase=Cancelled&from=REPLACE_FROM&to=REPLACE_TO".to_owned(),
            RunFilter {
                status: Some("cancelled"),
                ..readable(&all)
            },
            None,
        ),
    ];
    let from = chrono::Utc::now() - chrono::Duration::days(20);
    let to = from + chrono::Duration::days(1);
    let mut reports = Vec::new();
    for (what, query, mut filter, cursor) in cases {
        let query = query
            .replace(
                "REPLACE_FROM",
                &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
            .replace(
                "REPLACE_TO",
                &to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        if query.contains("from=") {
            filter.from = Some(from);
            filter.to = Some(to);
        }
        let url = format!("{console}/api/runs?{query}");
        let mut report = Report {
            what,
            http: Vec::new(),
            query: Vec::new(),
        };
        for _ in 0..samples() {
            let started = Instant::now();
            let response = http
                .get(&url)
                .header("cookie", &cookie)
                .send()
                .await
                .expect("a request");
            assert!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            let body: serde_json::Value = response.json().await.expect("JSON");
            report.http.push(started.elapsed());
            assert!(!body["runs"].as_array().expect("runs").is_empty(), "{url}");
            let started = Instant::now();
            runs::list_runs(pool, &filter, cursor, runs::DEFAULT_PAGE_SIZE)
                .await
                .expect("a page");
            report.query.push(started.elapsed());
        }
        reports.push(report);
    }

    let url = format!("{console}/api/runs/team-2/run-1");
    let mut report = Report {
        what: "run detail, 100 nodes + 500 log lines",
        http: Vec::new(),
        query: Vec::new(),
    };
    for _ in 0..samples() {
        let started = Instant::now();
        let response = http
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .expect("a request");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await.expect("JSON");
        report.http.push(started.elapsed());
        assert_eq!(
            body["nodes"].as_array().expect("nodes").len(),
            DETAIL_NODES as usize
        );
        let started = Instant::now();
        runs::find_run(pool, "team-2", "run-1", &levels, None)
            .await
            .expect("the run")
            .expect("run-1");
        report.query.push(started.elapsed());
    }
    reports.push(report);

    println!(
        "\n{:<44} {:>10} {:>10} {:>10} {:>10}",
        "request", "http p50", "http p95", "sql p50", "sql p95"
    );
    for mut report in reports {
        println!(
            "{:<44} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms",
            report.what,
            percentile(&mut report.http, 0.5),
            percentile(&mut report.http, 0.95),
            percentile(&mut report.query, 0.5),
            percentile(&mut report.query, 0.95),
        );
    }
    println!("({} samples each; target p95 <= 50 ms)", samples());
}

fn readable(namespaces: &[String]) -> RunFilter {
    RunFilter {
        namespaces: namespaces.to_vec(),
        ..RunFilter::default()
    }
}

//! Mirror write throughput against raw COPY.
//!
//! Writes 100,000 node executions (small JSON input and output each) through
//! the mirror — `Mirror::send` for every event, then `flush`, so queueing,
//! sanitising, batching and the multi-row upserts are all measured — and the
//! same rows through one raw `COPY node_executions FROM STDIN` (building the
//! COPY text included, as any writer must serialise its rows). Both write
//! into the same table of the same server, emptied before each iteration
//! (outside the timing). Prints the mirror's rate as a share of COPY's; the
//! target is ≥ 50 %.
//!
//! Run: `cargo bench -p sluice-operator --bench mirror` (DATABASE_URL as for
//! the tests; a scratch database is created and dropped).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sluice_operator::mirror::records::*;
use sluice_operator::mirror::{Mirror, MirrorConfig, ids, run_migrations};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use uuid::Uuid;

const ROWS: usize = 100_000;
const RUNS: usize = 10;

fn run_uid(run: usize) -> Uuid {
    Uuid::from_u128(0xbe0c0000_0000_4000_8000_000000000000 + run as u128)
}

fn nodes() -> Vec<NodeExecutionRecord> {
    let start = Utc.with_ymd_and_hms(2025, 3, 14, 9, 0, 0).unwrap();
    (0..ROWS)
        .map(|index| NodeExecutionRecord {
            execution_uid: run_uid(index % RUNS),
            node_id: format!("tag-each[{index}]"),
            attempt: 0,
            node_type: "http".into(),
            phase: NodePhase::Succeeded,
            started_at: Some(start),
            ended_at: Some(start + chrono::Duration::milliseconds((index % 1000) as i64)),
            input: Some(json!({"url": "https://crm.example.com/api/tags", "body": {"tag": format!("tag-{index}")}})),
            output: Some(json!({"status": 200, "body": {"id": index, "ok": true}})),
            error: None,
            worker_id: Some("bench-job-abcde".into()),
        })
        .collect()
}

/// COPY text format: `\N` for NULL, backslash, tab, newline, CR escaped.
fn copy_field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(text) => {
            for character in text.chars() {
                match character {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    other => out.push(other),
                }
            }
        }
    }
}

async fn copy_rows(conn: &mut PgConnection, rows: &[NodeExecutionRecord]) {
    let mut copy = conn
        .copy_in_raw(
            "COPY node_executions (id, execution_id, node_id, node_type, status, started_at, ended_at,
                                   input_data, output_data, error, retry_count, worker_id, attempt)
             FROM STDIN",
        )
        .await
        .unwrap();
    let mut buffer = String::with_capacity(1 << 20);
    for node in rows {
        let id = ids::node_execution_id(node.execution_uid, &node.node_id, node.attempt);
        let input = node.input.as_ref().map(|value| value.to_string());
        let output = node.output.as_ref().map(|value| value.to_string());
        write!(buffer, "{id}\t{}\t", node.execution_uid).unwrap();
        copy_field(&mut buffer, Some(&node.node_id));
        buffer.push('\t');
        copy_field(&mut buffer, Some(&node.node_type));
        buffer.push('\t');
        copy_field(&mut buffer, Some(node.phase.as_status()));
        buffer.push('\t');
        copy_field(
            &mut buffer,
            node.started_at.map(|time| time.to_rfc3339()).as_deref(),
        );
        buffer.push('\t');
        copy_field(
            &mut buffer,
            node.ended_at.map(|time| time.to_rfc3339()).as_deref(),
        );
        buffer.push('\t');
        copy_field(&mut buffer, input.as_deref());
        buffer.push('\t');
        copy_field(&mut buffer, output.as_deref());
        buffer.push('\t');
        copy_field(&mut buffer, node.error.as_deref());
        write!(buffer, "\t{}\t", node.attempt).unwrap();
        copy_field(&mut buffer, node.worker_id.as_deref());
        writeln!(buffer, "\t{}", node.attempt).unwrap();
        if buffer.len() >= 1 << 20 {
            copy.send(buffer.as_bytes()).await.unwrap();
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), rows.len() as u64);
}

struct Scratch {
    admin: PgConnectOptions,
    name: String,
    pool: PgPool,
}

async fn scratch_database() -> Scratch {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin: PgConnectOptions = url.parse().unwrap();
    let name = format!("sluice_bench_mirror_{}", std::process::id());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let options = admin.clone().database(&name);
    run_migrations(&options).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    Scratch { admin, name, pool }
}

async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "INSERT INTO workspaces (id, name, owner_id) VALUES ($1, 'bench', $2);
         ",
    )
    .bind(Uuid::from_u128(1))
    .bind(ids::SYSTEM_USER_ID)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO workflows (id, workspace_id, name, nodes, edges) VALUES ($1, $2, 'bench', '[]', '[]')")
        .bind(Uuid::from_u128(2))
        .bind(Uuid::from_u128(1))
        .execute(&mut *conn)
        .await
        .unwrap();
    for run in 0..RUNS {
        sqlx::query(
            "INSERT INTO workflow_executions (id, workflow_id, status) VALUES ($1, $2, 'running')",
        )
        .bind(run_uid(run))
        .bind(Uuid::from_u128(2))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

async fn empty(pool: &PgPool) {
    sqlx::query("TRUNCATE node_executions CASCADE")
        .execute(pool)
        .await
        .unwrap();
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM node_executions")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn mirror_vs_copy(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scratch = runtime.block_on(scratch_database());
    runtime.block_on(seed(&scratch.pool));
    let records = nodes();
    let (mirror, writer) = runtime
        .block_on(async { Mirror::start(scratch.pool.clone(), MirrorConfig::default(), None) });
    let totals = Mutex::new([(Duration::ZERO, 0u64); 2]);

    let mut group = criterion.benchmark_group("node_executions_100k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("mirror", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                runtime.block_on(empty(&scratch.pool));
                let events: Vec<MirrorEvent> = records
                    .iter()
                    .cloned()
                    .map(MirrorEvent::NodeExecution)
                    .collect();
                let started = Instant::now();
                runtime.block_on(async {
                    for event in events {
                        mirror.send(event).await.unwrap();
                    }
                    mirror.flush().await.unwrap();
                });
                elapsed += started.elapsed();
                assert_eq!(runtime.block_on(rows(&scratch.pool)), ROWS as i64);
            }
            let mut totals = totals.lock().unwrap();
            totals[0].0 += elapsed;
            totals[0].1 += iterations;
            elapsed
        })
    });
    group.bench_function("copy", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                runtime.block_on(empty(&scratch.pool));
                let started = Instant::now();
                runtime.block_on(async {
                    let mut conn = scratch.pool.acquire().await.unwrap();
                    copy_rows(&mut conn, &records).await;
                });
                elapsed += started.elapsed();
                assert_eq!(runtime.block_on(rows(&scratch.pool)), ROWS as i64);
            }
            let mut totals = totals.lock().unwrap();
            totals[1].0 += elapsed;
            totals[1].1 += iterations;
            elapsed
        })
    });
    group.finish();

    let totals = totals.into_inner().unwrap();
    let rate = |(total, iterations): (Duration, u64)| {
        ROWS as f64 * iterations as f64 / total.as_secs_f64()
    };
    let (mirror_rate, copy_rate) = (rate(totals[0]), rate(totals[1]));
    println!(
        "mirror: {mirror_rate:.0} rows/s, COPY: {copy_rate:.0} rows/s, mirror at {:.1}% of COPY (target >= 50%)",
        100.0 * mirror_rate / copy_rate
    );

    drop(mirror);
    runtime.block_on(async {
        writer.await.unwrap();
        scratch.pool.close().await;
        let mut conn = scratch.admin.connect().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {}",
            scratch.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    });
}

criterion_group!(benches, mirror_vs_copy);
criterion_main!(benches);

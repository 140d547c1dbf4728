//! The `sluice-operator` binary's maintenance command, run for real against
//! a fresh PostgreSQL database.

use sqlx::Connection;
use std::process::Command;

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates a database for this test and returns its URL. Names are made
/// here from a UUID, so building the statement from them is safe.
async fn fresh_database(name: &str) -> String {
    let server = server_url();
    let mut connection = sqlx::PgConnection::connect(&server).await.unwrap_or_else(|e| {
        panic!("failed to reach PostgreSQL at {server} ({e}): start it (bash .ci/run does) or set DATABASE_URL")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut connection)
        .await
        .unwrap();
    let (base, _) = server
        .rsplit_once('/')
        .expect("a database URL ends with /<database>");
    format!("{base}/{name}")
}

#[tokio::test]
async fn recompute_metrics_migrates_and_rebuilds_a_day_range() {
    let name = format!("cli_{}", uuid::Uuid::new_v4().simple());
    let url = fresh_database(&name).await;
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
        .args([
            "recompute-metrics",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
        ])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("recomputed daily metrics for 2026-11-01..=2026-11-03"),
        "{stdout}"
    );
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM workflow_metrics")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the schema exists and no run means no metrics");
    connection.close().await.unwrap();
    let mut server = sqlx::PgConnection::connect(&server_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&mut server)
        .await
        .unwrap();
}

#[test]
fn recompute_metrics_without_a_database_says_what_to_pass() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
        .args(["recompute-metrics", "--from", "2026-11-01"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
}

#[test]
fn a_reversed_range_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice-operator"))
        .args([
            "recompute-metrics",
            "--from",
            "2026-11-03",
            "--to",
            "2026-11-01",
        ])
        .env("DATABASE_URL", server_url())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("swap them"));
}

//! `postgres` node tests against the real PostgreSQL named by
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! They fail, never skip, when it is not running.

use super::PostgresNode;
use crate::node::{Node, NodeContext, NodeError};
use crate::nodes::http::testing::{Pairs, TestConnections, attempt, connections, context};
use serde_json::{Value, json};
use sluice_crds::ConnectionType;
use std::sync::Arc;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// An admin pool on the test server, or a panic saying what to start.
async fn admin() -> sqlx::PgPool {
    let url = database_url();
    match sqlx::PgPool::connect(&url).await {
        Ok(pool) => pool,
        Err(error) => panic!(
            "PostgreSQL is needed for the postgres node tests but {url} is unreachable ({error}): \
             start PostgreSQL on 127.0.0.1:5432 (e.g. `pg_ctlcluster 15 main start`) or set DATABASE_URL"
        ),
    }
}

/// A name no other test (or test run) uses.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A `db` connection to the test server, as `user` with `password`.
fn db_connection(user: Option<&str>, password: Option<&str>, extra: Pairs<'_>) -> TestConnections {
    let url = reqwest::Url::parse(&database_url()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5432).to_string();
    let database = url.path().trim_start_matches('/').to_owned();
    let user = user.map_or_else(|| url.username().to_owned(), str::to_owned);
    let password = password.map_or_else(
        || url.password().unwrap_or("unused").to_owned(),
        str::to_owned,
    );
    let mut config = vec![
        ("host", host.as_str()),
        ("port", port.as_str()),
        ("database", database.as_str()),
        ("user", user.as_str()),
        ("sslMode", "disable"),
    ];
    config.extend_from_slice(extra);
    connections(&[(
        "db",
        ConnectionType::Postgres,
        &config,
        &[("password", &password)],
    )])
}

async fn run(context: &NodeContext, params: Value) -> Result<Value, NodeError> {
    PostgresNode.execute(params, &attempt(), context).await
}

#[tokio::test]
async fn column_types_decode_to_json() {
    let _admin = admin().await;
    let connections = db_connection(None, None, &[]);
    let context = context(&connections, Arc::default());
    let query = "SELECT 1::int2 AS small, 2::int4 AS int, 9007199254740993::int8 AS big, \
        1.5::float4 AS real, 'NaN'::float8 AS nan, 12345678901234567890.0100::numeric AS exact, \
        (-0.5)::numeric AS negative, 0.000012::numeric AS tiny, true AS flag, 'hé'::text AS text, \
        'x'::varchar(3) AS short, 'ab'::char(3) AS padded, NULL::int4 AS nothing, \
        '{\"a\": [1, null]}'::jsonb AS doc, '[1]'::json AS list, \
        '2024-02-29T12:30:00.25Z'::timestamptz AS at, '2024-02-29 12:30:00'::timestamp AS local, \
        '2024-02-29'::date AS day, '12:30:01.5'::time AS clock, '1 mon 2 days 03:04:05.5'::interval AS span, \
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, '\\x68690a'::bytea AS bytes, \
        ARRAY[1, NULL, 3]::int4[] AS numbers, ARRAY['a', 'b'] AS words";
    let output = run(&context, json!({"connection": "db", "query": query}))
        .await
        .unwrap();
    assert_eq!(output["rowCount"], 1);
    assert_eq!(output["truncated"], false);
    assert_eq!(
        output["rows"][0],
        json!({
            "small": 1, "int": 2, "big": 9007199254740993_i64, "real": 1.5, "nan": "NaN",
            "exact": "12345678901234567890.0100", "negative": "-0.5", "tiny": "0.000012",
            "flag": true, "text": "hé", "short": "x", "padded": "ab ", "nothing": null,
            "doc": {"a": [1, null]}, "list": [1],
            "at": "2024-02-29T12:30:00.250Z", "local": "2024-02-29T12:30:00", "day": "2024-02-29",
            "clock": "12:30:01.500", "span": "P1M2DT3H4M5.5S",
            "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "bytes": "aGkK",
            "numbers": [1, null, 3], "words": ["a", "b"],
        })
    );
    assert_eq!(
        output["columns"][0],
        json!({"name": "small", "type": "INT2"})
    );

    let error = run(
        &context,
        json!({"connection": "db", "query": "SELECT '127.0.0.1'::inet AS address"}),
    )
    .await
    .unwrap_err();
    assert!(error.message.contains("address::text"), "{error:?}");
}

#[tokio::test]
async fn params_are_bound_by_json_type_and_row_counts_reported() {
    let admin = admin().await;
    let table = unique("sluice_test_rows");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id int8 PRIMARY KEY, name text, score float8, active bool, tags jsonb, rank int4)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let connections = db_connection(None, None, &[]);
    let context = context(&connections, Arc::default());

    let insert = format!(
        "INSERT INTO {table} (id, name, score, active, tags, rank) VALUES ($1, $2, $3, $4, $5, $6)"
    );
    for (id, name, tags) in [
        (1, "ada", json!(["x"])),
        (2, "grace'; DROP TABLE x; --", json!({"k": 1})),
    ] {
        let output = run(&context, json!({"connection": "db", "query": insert, "params": [id, name, 2.5, true, tags, null]}))
            .await
            .unwrap();
        assert_eq!(
            (output["rowCount"].clone(), output["rows"].clone()),
            (json!(1), json!([]))
        );
    }
    let output = run(
        &context,
        json!({"connection": "db", "query": format!("SELECT id, name, score, active, tags, rank FROM {table} WHERE name = $1"), "params": ["grace'; DROP TABLE x; --"]}),
    )
    .await
    .unwrap();
    assert_eq!(
        output["rows"],
        json!([{"id": 2, "name": "grace'; DROP TABLE x; --", "score": 2.5, "active": true, "tags": {"k": 1}, "rank": null}])
    );
    let output = run(&context, json!({"connection": "db", "query": format!("UPDATE {table} SET rank = $1"), "params": [7]}))
        .await
        .unwrap();
    assert_eq!(output["rowCount"], 2);

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn max_rows_truncates_and_says_so() {
    let _admin = admin().await;
    let connections = db_connection(None, None, &[]);
    let context = context(&connections, Arc::default());
    let query = "SELECT n FROM generate_series(1, $1::int8) AS n";
    let output = run(
        &context,
        json!({"connection": "db", "query": query, "params": [10], "maxRows": 3}),
    )
    .await
    .unwrap();
    assert_eq!(output["rows"], json!([{"n": 1}, {"n": 2}, {"n": 3}]));
    assert_eq!(
        (output["rowCount"].clone(), output["truncated"].clone()),
        (json!(3), json!(true))
    );

    let output = run(
        &context,
        json!({"connection": "db", "query": query, "params": [3], "maxRows": 3}),
    )
    .await
    .unwrap();
    assert_eq!(output["truncated"], false);
    // The pool is still healthy after a truncated read.
    let output = run(
        &context,
        json!({"connection": "db", "query": query, "params": [1200]}),
    )
    .await
    .unwrap();
    assert_eq!(output["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(output["truncated"], true);
}

#[tokio::test]
async fn sql_errors_are_permanent_with_sqlstate() {
    let _admin = admin().await;
    let connections = db_connection(None, None, &[]);
    let context = context(&connections, Arc::default());
    let error = run(
        &context,
        json!({"connection": "db", "query": "SELECT * FROM sluice_no_such_table"}),
    )
    .await
    .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error.message.contains("42P01") && error.message.contains("does not exist"),
        "{}",
        error.message
    );

    let error = run(
        &context,
        json!({"connection": "db", "query": "SELECT 1 WHERE 1 = $1", "params": ["1"]}),
    )
    .await
    .unwrap_err();
    assert!(
        !error.retryable && error.message.contains("$1::uuid"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_password_role_connects_and_pools_are_reused() {
    let admin = admin().await;
    let role = unique("sluice_test_role");
    let password = "CANARY-pg-password-4d1e";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let connections = db_connection(Some(&role), Some(password), &[]);
    let context = context(&connections, Arc::default());
    let query =
        json!({"connection": "db", "query": "SELECT current_user AS who, pg_backend_pid() AS pid"});
    let mut backends = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let output = run(&context, query.clone()).await.unwrap();
        assert_eq!(output["rows"][0]["who"], role);
        backends.insert(output["rows"][0]["pid"].as_i64().unwrap());
    }
    assert!(
        backends.len() <= super::MAX_POOL_CONNECTIONS as usize,
        "nodes share pooled connections: {backends:?}"
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_bad_config_permanent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    let connections = db_connection(
        None,
        Some("CANARY-unreachable"),
        &[("port", &port), ("connectTimeout", "1s")],
    );
    let context = context(&connections, Arc::default());
    let error = run(&context, json!({"connection": "db", "query": "SELECT 1"}))
        .await
        .unwrap_err();
    assert!(error.retryable, "{error:?}");
    assert!(
        error.message.contains("failed to connect") && !error.message.contains("CANARY"),
        "{}",
        error.message
    );

    for (extra, expected) in [
        (vec![("sslMode", "sometimes")], "config.sslMode"),
        (vec![("port", "fifty")], "config.port"),
    ] {
        let connections = db_connection(None, None, &extra);
        let context = self::context(&connections, Arc::default());
        let error = run(&context, json!({"connection": "db", "query": "SELECT 1"}))
            .await
            .unwrap_err();
        assert!(
            !error.retryable && error.message.contains(expected),
            "{error:?}"
        );
    }
    let connections = crate::nodes::http::testing::connections(&[(
        "db",
        ConnectionType::Postgres,
        &[("user", "u")],
        &[],
    )]);
    let context = self::context(&connections, Arc::default());
    let error = run(&context, json!({"connection": "db", "query": "SELECT 1"}))
        .await
        .unwrap_err();
    assert!(error.message.contains("config.host"), "{error:?}");
}

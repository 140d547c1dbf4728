//! The `postgres` node type: runs one parameterised SQL statement through
//! a `postgres` Connection and returns
//! `{rows, rowCount, truncated, columns}`.
//!
//! Values are always bound as `$1`, `$2` … parameters, never spliced into
//! the SQL. Pools are cached per connection for the life of the run's
//! connection store, so the many postgres nodes of a run share connections.
//! Unreachable servers and transient SQLSTATEs are retryable; SQL errors and
//! failed authentication are permanent. The password never appears in an error,
//! an output or a log line.

mod decode;
#[cfg(test)]
mod tests;

use crate::connections::{ConnectionStore, Redactor, ResolvedConnection};
use crate::node::{Attempt, BoxFuture, LogLevel, Node, NodeContext, NodeError, parse_params};
use futures::TryStreamExt as _;
use serde_json::{Value, json};
use sluice_crds::{ConnectionType, NodeType};
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgPool, PgPoolOptions, PgSslMode, PgTypeInfo, Postgres,
};
use sqlx::{Column as _, Executor as _, TypeInfo as _};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// The `postgres` node type.
#[derive(Debug, Default)]
pub struct PostgresNode;

/// Rows returned when `maxRows` is not set.
const DEFAULT_MAX_ROWS: usize = 1000;
/// How long to wait for a connection when `config.connectTimeout` is not set.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections per pool (per Connection, per process).
const MAX_POOL_CONNECTIONS: u32 = 5;

impl Node for PostgresNode {
    fn node_type(&self) -> NodeType {
        NodeType::Postgres
    }

    fn execute<'a>(
        &'a self,
        params: Value,
        attempt: &'a Attempt,
        context: &'a NodeContext,
    ) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(execute(params, attempt, context))
    }
}

async fn execute(
    params: Value,
    attempt: &Attempt,
    context: &NodeContext,
) -> Result<Value, NodeError> {
    let params: sluice_crds::nodes::PostgresNode = parse_params(NodeType::Postgres, params)?;
    let connection = context.connections.get(&params.connection)?;
    if connection.spec.type_ != ConnectionType::Postgres {
        return Err(NodeError::permanent(format!(
            "connection {:?} has type {}, but postgres nodes need a connection of type postgres",
            connection.name,
            connection.spec.type_.as_str()
        )));
    }
    let target = Target::from_connection(&connection)?;
    let pool = pool_for(&target, &context.connections);
    let max_rows = params.max_rows.map_or(DEFAULT_MAX_ROWS, |max| max as usize);

    let mut query = sqlx::query(sqlx::AssertSqlSafe(params.query));
    for value in params.params {
        query = bind(query, value);
    }
    let mut results = pool.fetch_many(query);
    let mut rows = Vec::new();
    let mut columns = Value::Null;
    let mut rows_affected = 0;
    let mut truncated = false;
    while let Some(item) = results
        .try_next()
        .await
        .map_err(|error| target.error(error))?
    {
        match item {
            sqlx::Either::Left(result) => rows_affected += result.rows_affected(),
            sqlx::Either::Right(row) => {
                if rows.len() == max_rows {
                    truncated = true;
                    break;
                }
                if columns.is_null() {
                    columns = sqlx::Row::columns(&row)
                        .iter()
                        .map(|column| json!({"name": column.name(), "type": column.type_info().name()}))
                        .collect();
                }
                let object =
                    decode::row_to_json(&row).map_err(|e| NodeError::permanent(e.to_string()))?;
                rows.push(Value::Object(object));
            }
        }
    }
    drop(results);
    let row_count = if rows.is_empty() {
        rows_affected as usize
    } else {
        rows.len()
    };
    context.logs.log(
        &attempt.node,
        LogLevel::Info,
        &format!(
            "postgres {} answered {row_count} rows{}",
            target.describe(),
            if truncated { " (truncated)" } else { "" }
        ),
    );
    Ok(json!({
        "rows": rows,
        "rowCount": row_count,
        "truncated": truncated,
        "columns": if columns.is_null() { json!([]) } else { columns },
    }))
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds a JSON value: strings as text, integers as int8, other numbers
/// as float8, booleans as bool, objects and lists as jsonb, and null
/// without a type so PostgreSQL infers it from where it is used.
fn bind(query: PgQuery<'_>, value: Value) -> PgQuery<'_> {
    match value {
        Value::Null => query.bind(UntypedNull),
        Value::Bool(flag) => query.bind(flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => query.bind(integer),
            None => query.bind(number.as_f64()),
        },
        Value::String(text) => query.bind(text),
        other => query.bind(sqlx::types::Json(other)),
    }
}

/// A NULL parameter of unspecified type (OID 0).
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// Where and as whom to connect, from the Connection.
struct Target {
    connection: String,
    host: String,
    port: u16,
    database: String,
    user: String,
    password: String,
    ssl_mode: PgSslMode,
    connect_timeout: Duration,
    redactor: Redactor,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    fn from_connection(connection: &ResolvedConnection<'_>) -> Result<Self, NodeError> {
        let name = connection.name;
        let invalid = |key: &str, value: &str, hint: &str| {
            NodeError::permanent(format!(
                "connection {name:?} has an invalid config.{key} {value:?}: {hint}"
            ))
        };
        let host = connection.config("host").ok_or_else(|| {
            NodeError::permanent(format!(
                "connection {name:?} has no config.host: set the server's host name"
            ))
        })?;
        let port = match connection.config("port") {
            Some(port) => port
                .parse()
                .map_err(|_| invalid("port", port, "use a number such as 5432"))?,
            None => 5432,
        };
        let user = match connection.config("user") {
            Some(user) => user.to_owned(),
            None => connection.optional_secret("username").ok_or_else(|| {
                NodeError::permanent(format!(
                    "connection {name:?} names no user: set config.user or the Secret's username key"
                ))
            })?,
        };
        let ssl_mode = match connection.config("sslMode").unwrap_or("prefer") {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            other => {
                return Err(invalid(
                    "sslMode",
                    other,
                    "use disable, prefer, require, verify-ca or verify-full",
                ));
            }
        };
        let connect_timeout = match connection.config("connectTimeout") {
            Some(text) => text
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| invalid("connectTimeout", text, "use seconds, e.g. 10s"))?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        Ok(Self {
            connection: name.to_owned(),
            host: host.to_owned(),
            port,
            database: connection.config("database").unwrap_or(&user).to_owned(),
            password: connection.secret("password")?,
            user,
            ssl_mode,
            connect_timeout,
            redactor: connection.redactor(),
        })
    }

    fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    /// The error for a failed query or connection, never quoting the password.
    fn error(&self, error: sqlx::Error) -> NodeError {
        let connection = &self.connection;
        let server = self.describe();
        let error = match error {
            sqlx::Error::Database(database_error) => {
                let code = database_error
                    .code()
                    .map(|code| code.into_owned())
                    .unwrap_or_default();
                let mut message = database_error.message().to_owned();
                if let Some(postgres_error) =
                    database_error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                {
                    if let Some(detail) = postgres_error.detail() {
                        message.push_str(&format!(" ({detail})"));
                    }
                    if let Some(hint) = postgres_error.hint() {
                        message.push_str(&format!("; hint: {hint}"));
                    }
                }
                match code.as_str() {
                    "28P01" | "28000" => NodeError::permanent(format!(
                        "authentication failed for {server} (connection {connection:?}): check the password key of the Secret in its secretRef [SQLSTATE {code}]"
                    )),
                    "42883" => NodeError::permanent(format!(
                        "query failed: SQLSTATE {code}: {message}; string params are sent as text, so cast the placeholder, e.g. $1::uuid or $1::int"
                    )),
                    // Connection exceptions, serialization failures, deadlocks,
                    // too many connections, shutdowns: another attempt may pass.
                    _ if code.starts_with("08")
                        || code.starts_with("40")
                        || code.starts_with("53")
                        || code.starts_with("57P") =>
                    {
                        NodeError::retryable(format!("query failed: SQLSTATE {code}: {message}"))
                    }
                    _ => NodeError::permanent(format!("query failed: SQLSTATE {code}: {message}")),
                }
            }
            sqlx::Error::PoolTimedOut => NodeError::retryable(format!(
                "failed to connect to {server} within {}s: the server is unreachable or refused the connection",
                self.connect_timeout.as_secs_f64()
            )),
            sqlx::Error::Io(io_error) => {
                NodeError::retryable(format!("failed to talk to {server}: {io_error}"))
            }
            sqlx::Error::Tls(tls_error) => NodeError::permanent(format!(
                "TLS with {server} failed: {tls_error}; check config.sslMode"
            )),
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                NodeError::retryable(format!("the connection pool for {server} closed"))
            }
            sqlx::Error::ColumnDecode { index, source } => {
                NodeError::permanent(format!("failed to decode column {index}: {source}"))
            }
            other => NodeError::permanent(format!("query on {server} failed: {other}")),
        };
        NodeError {
            message: self.redactor.redact(&error.message),
            retryable: error.retryable,
        }
    }
}

/// Identifies a pool: a new password (or any setting) makes a new pool.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    connection: String,
    server: String,
    ssl_mode: String,
    connect_timeout: Duration,
    password_hash: u64,
}

/// A cached pool and the run's connection store it belongs to.
struct PoolEntry {
    store: Weak<ConnectionStore>,
    pool: PgPool,
}

/// The pool for `target` within the run that owns `store`, created on
/// first use. A pool lives as long as its run's store: tied to one run,
/// it is never used from another tokio runtime (tests run one each). Pools
/// connect lazily, so an unreachable server fails the query, not this call.
fn pool_for(target: &Target, store: &Arc<ConnectionStore>) -> PgPool {
    static POOLS: OnceLock<Mutex<HashMap<PoolKey, PoolEntry>>> = OnceLock::new();
    let mut hasher = DefaultHasher::new();
    target.password.hash(&mut hasher);
    let key = PoolKey {
        connection: target.connection.clone(),
        server: target.describe(),
        ssl_mode: format!("{:?}", target.ssl_mode),
        connect_timeout: target.connect_timeout,
        password_hash: hasher.finish(),
    };
    let pools = POOLS.get_or_init(Default::default);
    let mut pools = pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pools.retain(|_, entry| entry.store.strong_count() > 0);
    if let Some(entry) = pools.get(&key)
        && entry
            .store
            .upgrade()
            .is_some_and(|owner| Arc::ptr_eq(&owner, store))
    {
        return entry.pool.clone();
    }
    let pool = {
        let options = PgConnectOptions::new_without_pgpass()
            .host(&target.host)
            .port(target.port)
            .username(&target.user)
            .password(&target.password)
            .database(&target.database)
            .ssl_mode(target.ssl_mode)
            .application_name("sluice-runner");
        PgPoolOptions::new()
            .max_connections(MAX_POOL_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(target.connect_timeout)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options)
    };
    let entry = PoolEntry {
        store: Arc::downgrade(store),
        pool: pool.clone(),
    };
    pools.insert(key, entry);
    pool
}

//! Embedded migrations, applied by the operator at start.
//!
//! `migrations/*.sql` are compiled into the binary by `sqlx::migrate!`. Two
//! replicas starting together must not race: sqlx's Postgres migrator takes
//! a session-level `pg_advisory_lock` keyed by the database name before it
//! even creates `_sqlx_migrations`, and holds it until every migration is
//! applied (sqlx-core 0.9 `Migrator::run_direct` → sqlx-postgres 0.9
//! `PgConnection::lock`). Each migration runs in its own transaction
//! together with its bookkeeping row. On an error sqlx returns before
//! `pg_advisory_unlock`, so the lock would stay held by whatever connection
//! ran it; that is why the migrations here run on a dedicated connection
//! that is closed afterwards (closing a session releases its advisory
//! locks), never on a pooled one that goes back to the pool.
//!
//! This module must not edit or generate migrations: an applied migration
//! is never changed, new needs go into a new file.

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};

/// Every migration in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("failed to connect to the database to migrate it")]
    Connect(#[source] sqlx::Error),
    #[error("failed to apply the database migrations")]
    Apply(#[source] sqlx::migrate::MigrateError),
}

/// Applies every pending migration under sqlx's advisory lock; a no-op when
/// the database is up to date. Safe to call from several replicas at once.
pub async fn run_migrations(options: &PgConnectOptions) -> Result<(), MigrateError> {
    let mut connection = PgConnection::connect_with(options)
        .await
        .map_err(MigrateError::Connect)?;
    let applied = MIGRATOR
        .run(&mut connection)
        .await
        .map_err(MigrateError::Apply);
    // Closing ends the session, which releases the advisory lock even when
    // a migration failed half-way. A failed close only leaks a connection
    // the server drops on its own.
    if let Err(error) = connection.close().await {
        tracing::debug!(%error, "failed to close the migration connection");
    }
    applied
}

/// As [`run_migrations`], with the options of an existing pool.
pub async fn run_migrations_for_pool(pool: &PgPool) -> Result<(), MigrateError> {
    run_migrations(&pool.connect_options()).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sqlx::postgres::PgPoolOptions;

    use super::*;

    const SEED: &str = include_str!("testdata/seed_schema.md");

    /// Names the seed creates, by kind, parsed from its ```sql blocks.
    #[derive(Debug, Default)]
    struct SeedObjects {
        tables: BTreeSet<String>,
        views: BTreeSet<String>,
        functions: BTreeSet<String>,
        triggers: BTreeSet<(String, String)>,
        indexes: BTreeSet<String>,
    }

    fn seed_sql() -> String {
        let mut sql = String::new();
        let mut inside = false;
        for line in SEED.lines() {
            if line.trim_start().starts_with("```") {
                inside = line.trim_start().starts_with("```sql");
                continue;
            }
            if inside {
                let code = line.split("--").next().unwrap_or_default();
                sql.push_str(code);
                sql.push('\n');
            }
        }
        sql
    }

    fn parse_seed() -> SeedObjects {
        let sql = seed_sql();
        let words: Vec<&str> = sql.split_whitespace().collect();
        let name_at = |index: usize| -> String {
            words[index]
                .split(['(', ';'])
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let mut objects = SeedObjects::default();
        for index in 0..words.len() {
            if !words[index].eq_ignore_ascii_case("CREATE") {
                continue;
            }
            let mut at = index + 1;
            if words[at].eq_ignore_ascii_case("OR") {
                at += 2; // OR REPLACE
            }
            let kind = words[at].to_ascii_uppercase();
            at += 1;
            if kind == "TABLE" && words[at].eq_ignore_ascii_case("IF") {
                at += 3; // IF NOT EXISTS
            }
            let name = name_at(at);
            match kind.as_str() {
                "TABLE" => {
                    objects.tables.insert(name);
                }
                "VIEW" => {
                    objects.views.insert(name);
                }
                "FUNCTION" => {
                    objects.functions.insert(name);
                }
                "INDEX" => {
                    objects.indexes.insert(name);
                }
                "TRIGGER" => {
                    let on = (at..words.len())
                        .find(|&i| words[i].eq_ignore_ascii_case("ON"))
                        .unwrap();
                    objects.triggers.insert((name, name_at(on + 1)));
                }
                other => panic!("unexpected CREATE {other} in the seed"),
            }
        }
        objects
    }

    async fn names(pool: &PgPool, sql: &'static str) -> BTreeSet<String> {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn the_seed_parser_finds_every_kind() {
        let seed = parse_seed();
        assert_eq!(seed.tables.len(), 34, "{:?}", seed.tables);
        assert!(seed.tables.contains("node_executions"));
        assert_eq!(
            seed.views,
            ["user_activity_summary", "workflow_execution_summary"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            seed.functions,
            ["calculate_execution_duration", "update_updated_at_column"]
                .map(String::from)
                .into()
        );
        assert_eq!(seed.triggers.len(), 9);
        assert!(seed.indexes.contains("idx_execution_queue_priority"));
        assert_eq!(seed.indexes.len(), 45);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn every_seed_object_exists_after_migrating(pool: PgPool) {
        let seed = parse_seed();
        let tables = names(
            &pool,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
        )
        .await;
        let views = names(
            &pool,
            "SELECT viewname::text FROM pg_views WHERE schemaname = 'public'",
        )
        .await;
        let functions = names(
            &pool,
            "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public'",
        )
        .await;
        let indexes = names(
            &pool,
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
        )
        .await;
        let triggers: BTreeSet<(String, String)> = sqlx::query_as::<_, (String, String)>(
            "SELECT t.tgname::text, c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             WHERE NOT t.tgisinternal",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();

        let missing = |wanted: &BTreeSet<String>, have: &BTreeSet<String>| -> Vec<String> {
            wanted.difference(have).cloned().collect()
        };
        assert_eq!(
            missing(&seed.tables, &tables),
            Vec::<String>::new(),
            "tables"
        );
        assert_eq!(missing(&seed.views, &views), Vec::<String>::new(), "views");
        assert_eq!(
            missing(&seed.functions, &functions),
            Vec::<String>::new(),
            "functions"
        );
        assert_eq!(
            missing(&seed.indexes, &indexes),
            Vec::<String>::new(),
            "indexes"
        );
        let missing_triggers: Vec<_> = seed.triggers.difference(&triggers).collect();
        assert!(
            missing_triggers.is_empty(),
            "triggers missing: {missing_triggers:?}"
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn migrating_again_is_a_no_op(pool: PgPool) {
        let before: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(before.len(), MIGRATOR.iter().count());
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();

        run_migrations_for_pool(&pool).await.unwrap();
        run_migrations_for_pool(&pool).await.unwrap();

        let after: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(before, after);
        let users_after: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(users, users_after);
        assert_eq!(users_after, 1, "only the operator's own user");
    }

    #[sqlx::test(migrations = false)]
    async fn two_migrators_on_one_fresh_database_both_succeed(
        pool_options: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) {
        let (first, second) = tokio::join!(
            run_migrations(&connect_options),
            run_migrations(&connect_options)
        );
        first.unwrap();
        second.unwrap();

        let pool = pool_options.connect_with(connect_options).await.unwrap();
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(applied as usize, MIGRATOR.iter().count());
        let system_users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(system_users, 1);
    }
}

#[cfg(test)]
mod view_tests {
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::super::fixtures::*;
    use super::super::ids::SYSTEM_USER_ID;
    use super::super::records::*;

    #[sqlx::test(migrations = "../migrations")]
    async fn workflow_execution_summary_lists_workflows_without_runs(pool: PgPool) {
        seed_runs(
            &pool,
            &[
                execution(1, RunPhase::Succeeded),
                execution(2, RunPhase::Failed),
            ],
        )
        .await;
        let mut idle = workflow();
        idle.uid = uid(11);
        idle.name = "idle".into();
        idle.triggers.clear();
        write(&pool, &[MirrorEvent::Workflow(idle)]).await;
        // Runs are dated 2025-03-14; move them into the view's 30-day window.
        sqlx::query("UPDATE workflow_executions SET created_at = now()")
            .execute(&pool)
            .await
            .unwrap();

        let rows: Vec<(String, i64, i64, i64, Option<f64>)> = sqlx::query_as(
            "SELECT workflow_name, total_executions, successful_executions, failed_executions, failure_rate::float8
             FROM workflow_execution_summary ORDER BY workflow_name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                ("idle".into(), 0, 0, 0, None),
                ("triage-signup".into(), 2, 1, 1, Some(50.0))
            ]
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn user_activity_summary_neither_drops_nor_multiplies(pool: PgPool) {
        seed_runs(
            &pool,
            &[
                execution(1, RunPhase::Succeeded),
                execution(2, RunPhase::Failed),
            ],
        )
        .await;
        let mut second = workflow();
        second.uid = uid(11);
        second.name = "second".into();
        second.triggers.clear();
        write(&pool, &[MirrorEvent::Workflow(second)]).await;
        sqlx::query("UPDATE workflow_executions SET created_at = now()")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash) VALUES ($1, 'idle@example.com', 'idle', 'x')",
        )
        .bind(uid(99))
        .execute(&pool)
        .await
        .unwrap();

        let rows: Vec<(Uuid, Option<Uuid>, i64, i64)> = sqlx::query_as(
            "SELECT user_id, workspace_id, executions_started, workflows_created
             FROM user_activity_summary ORDER BY user_name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        // Two workflows and two runs: the seed's view said 4 runs (2 × 2)
        // and dropped the idle user.
        assert_eq!(
            rows,
            [(uid(99), None, 0, 0), (SYSTEM_USER_ID, Some(uid(1)), 2, 2)]
        );
    }
}

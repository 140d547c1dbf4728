//! The PostgreSQL mirror: Sluice objects and run events → the seed schema.
//!
//! Kubernetes is the source of truth; PostgreSQL keeps history, reporting
//! and audit after Kubernetes has garbage-collected the objects. This module
//! writes rows and nothing else: it never reads Kubernetes (the operator
//! converts objects into [`records`] and implements [`ResyncSource`]) and it
//! never blocks a reconcile (see [`queue`]).
//!
//! Map (DESIGN §5) — one function per mapping:
//!
//! | rows | function | key |
//! |---|---|---|
//! | `workspaces` | [`workflows::upsert_workspace`] | namespace uid |
//! | `workflows` | [`workflows::upsert_workflow`] | Workflow uid |
//! | `workflow_versions` | [`workflows::upsert_workflow_version`] | (workflow, revision) |
//! | `workflow_tags`, `workflow_tag_assignments` | [`workflows::sync_workflow_tags`] | (workspace, `key=value`) |
//! | `workflow_triggers` | [`workflows::sync_workflow_triggers`] | v5(workflow, trigger) |
//! | `webhook_endpoints` | [`workflows::sync_webhook_endpoints`]; `last_used_at` by [`executions::touch_webhook_endpoint`] | v5(workflow, trigger); path |
//! | `environment_variables` | [`workflows::sync_environment_variables`] | v5(workspace, workflow, name) |
//! | `workflow_schedules` | [`workflows::upsert_schedule`] | Schedule uid |
//! | `connections` | [`catalog::upsert_connection`] | Connection uid |
//! | `oauth_connections` (status, expiry, scopes, last refresh; never a token) | [`catalog::upsert_connection`] | Connection uid (`id` = `connection_id`) |
//! | `node_definitions` | [`catalog::upsert_node_definition`] | (name, version) |
//! | `custom_nodes`, `node_templates`, `installed_nodes`, `node_marketplace` (and the type's `node_definitions` row) | [`node_types::upsert_node_type`] | NodeType/ClusterNodeType uid; templates by (uid, preset); installations by (workspace, name) |
//! | `workflow_executions` | [`executions::upsert_execution`] | WorkflowRun uid |
//! | `execution_queue` | [`executions::upsert_queue_entry`] | run uid |
//! | `node_executions` | [`executions::write_node_executions`] (batched) | (run, node id, attempt) |
//! | `execution_logs` | [`executions::write_logs`] (batched) | (run, seq) |
//! | `workflow_metrics`, `node_metrics`, `usage_records` | [`metrics::refresh_for_executions`], [`metrics::recompute_daily_metrics`] | (workflow[, node], day) |
//! | `audit_logs` | [`audit::insert_audit`] | v5(uid, generation or last resourceVersion, action) |
//! | `users` | [`users::ensure_users`] (creators, actors, members) | v5(Kubernetes username), shared with the console |
//! | `api_keys` | [`users::sync_api_keys`] (bearer-token webhook triggers: a fingerprint) | v5(workflow, trigger) |
//! | `workspace_members`, `user_roles`, `user_role_assignments` | [`membership::sync_membership`] | (workspace, user); role name; (user, role) |
//! | `system_metrics` | [`audit::insert_system_metric`] | v5(type, tags, time) |
//! | `billing_plans` | [`quotas::upsert_plan`] | Plan uid |
//! | `subscriptions` | [`quotas::sync_subscription`] (a namespace's `sluice.dev/plan` label or the default plan) | v5(workspace, plan, start) |
//! | rows of objects gone while no operator watched | [`sweep::sweep_gone`] | what a resync did not list |
//!
//! Decisions where the design is silent:
//! - Ids: a Kubernetes UID is the row id; other rows get UUIDv5 ids from
//!   their natural key ([`ids`]), so replays land on the same row.
//! - The operator is a `users` row ([`ids::SYSTEM_USER_ID`], migration 0002):
//!   owner of workspaces, `created_by` of what it mirrors when the object
//!   carries no `sluice.dev/created-by` annotation (made before the
//!   mutating webhook, or without it); with one, the creator's own row.
//! - Deletions: history stays. A deleted Workflow becomes `archived` (its
//!   webhook endpoints are removed, triggers deactivated), a deleted
//!   namespace an inactive workspace; a deleted run keeps its rows (a queued
//!   one is marked cancelled). Schedules and Connections are configuration:
//!   their rows are deleted; `audit_logs` keeps their last state. Deletes
//!   made while no operator watched are found by the resync on start and
//!   after an outage ([`sweep`]).
//! - Replays never move state backwards: a finished run or node is never
//!   overwritten by an unfinished state, an archived workflow never comes
//!   back, absent (`None`) payloads never erase stored ones.
//! - Labels are tags named `key=value`; forEach items are node ids
//!   `name[index]`; retries are rows with `attempt` 0, 1, …
//! - Statuses use the seed's words: runs `pending, queued, running,
//!   completed, failed, cancelled`; nodes also `skipped`.
//! - Daily metrics count finished runs by the UTC day they started (or were
//!   created, if they never started); they are refreshed for the affected
//!   (workflow, day) as runs finish, from the executions table, so a refresh
//!   is idempotent, and [`metrics::recompute_daily_metrics`] rebuilds any
//!   range the same way (the operator issue will expose it as
//!   `sluice-operator recompute-metrics --from DAY --to DAY`).
//! - Payloads pass through [`sanitize`]: NUL escaped, UTF-8 repaired, size
//!   and depth capped, with what was done stored in
//!   `node_executions.payload_notes` / the log line's `metadata.sluice`.

pub mod apply;
pub mod audit;
pub mod catalog;
pub mod executions;
pub mod ids;
pub mod membership;
pub mod metrics;
pub mod migrate;
pub mod node_types;
pub mod queue;
pub mod quotas;
pub mod records;
pub mod sanitize;
pub mod sweep;
pub mod users;
pub mod workflows;

#[cfg(test)]
pub(crate) mod fixtures;

pub use migrate::{MIGRATOR, MigrateError, run_migrations};
pub use queue::{Mirror, MirrorConfig, MirrorStats, OfferError, ResyncError, ResyncSource};
pub use records::*;

/// A failed write, with what was being written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {what}")]
pub struct WriteError {
    pub what: &'static str,
    #[source]
    pub source: sqlx::Error,
}

/// How the queue treats a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection lost, server restarting, deadlock …: retry the same batch.
    Transient,
    /// A referenced row (workflow of a run, run of a node) is not there
    /// yet: retry this event later.
    MissingParent,
    /// The event can never be written as it is.
    Permanent,
}

impl WriteError {
    pub fn class(&self) -> ErrorClass {
        classify(&self.source)
    }
}

/// Classifies a sqlx error; SQLSTATE classes per the PostgreSQL manual
/// (appendix A).
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => ErrorClass::Transient,
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            if code == "23503" {
                ErrorClass::MissingParent
            } else if code == "42P01" || code == "3F000" {
                // Undefined table or schema: the operator starts writing
                // while its migrations still run in the background, so
                // the schema is about to appear. Dropping the event would
                // lose it; wait as for an outage.
                ErrorClass::Transient
            } else if code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "55P03"
                || code == "57014"
                || code == "25P02"
            {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            }
        }
        _ => ErrorClass::Permanent,
    }
}

/// Whether `error` says the tables are not there (undefined table or
/// schema): a database not migrated yet, or replaced by an empty one.
pub fn missing_schema(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database)
        if matches!(database.code().as_deref(), Some("42P01" | "3F000")))
}

/// `map_err` helper: `.map_err(failed("node executions"))`.
pub(crate) fn failed(what: &'static str) -> impl FnOnce(sqlx::Error) -> WriteError {
    move |source| WriteError { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = false)]
    async fn a_schema_not_migrated_yet_is_waited_for(pool: sqlx::PgPool) {
        let error = sqlx::query("SELECT id FROM workflow_executions")
            .execute(&pool)
            .await
            .expect_err("no migrations were applied");
        assert_eq!(classify(&error), ErrorClass::Transient);
        assert!(missing_schema(&error));
    }
}

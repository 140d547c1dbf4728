//! Workspaces, workflows and what hangs off a workflow: versions, tags,
//! triggers, webhook endpoints, environment variables; and schedules.
//!
//! Every function is an idempotent upsert (or a set sync: insert what is
//! wanted, delete what is no longer there) over one connection, meant to run
//! inside the caller's transaction. None of them commits or retries.

use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{EnvValue, ScheduleRecord, WorkflowRecord, WorkflowState, WorkspaceRecord};
use super::sanitize::{self, Limits, Notes};
use super::{WriteError, failed, ids, users};

/// Creates or updates the workspace of a namespace.
pub async fn upsert_workspace(
    conn: &mut PgConnection,
    workspace: &WorkspaceRecord,
) -> Result<(), WriteError> {
    let settings = json!({"namespace": workspace.name, "labels": workspace.labels});
    sqlx::query(
        "INSERT INTO workspaces (id, name, owner_id, settings, is_active, created_at)
         VALUES ($1, $2, $3, $4, $5, COALESCE($6, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name, settings = EXCLUDED.settings, is_active = EXCLUDED.is_active",
    )
    .bind(workspace.uid)
    .bind(sanitize::varchar(&workspace.name, 255))
    .bind(ids::SYSTEM_USER_ID)
    .bind(&settings)
    .bind(!workspace.deleted)
    .bind(workspace.created_at)
    .execute(conn)
    .await
    .map_err(failed("workspace"))?;
    Ok(())
}

/// Creates the workspace row if its namespace was not mirrored yet; never
/// changes an existing one.
pub async fn ensure_workspace(
    conn: &mut PgConnection,
    uid: Uuid,
    namespace: &str,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO workspaces (id, name, owner_id, settings)
         VALUES ($1, $2, $3, jsonb_build_object('namespace', $2::text))
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(uid)
    .bind(sanitize::varchar(namespace, 255))
    .bind(ids::SYSTEM_USER_ID)
    .execute(conn)
    .await
    .map_err(failed("workspace"))?;
    Ok(())
}

/// Marks a deleted namespace's workspace inactive (its history stays).
pub async fn deactivate_workspace(conn: &mut PgConnection, uid: Uuid) -> Result<(), WriteError> {
    sqlx::query("UPDATE workspaces SET is_active = FALSE WHERE id = $1")
        .bind(uid)
        .execute(conn)
        .await
        .map_err(failed("workspace"))?;
    Ok(())
}

/// Creates or updates the workflow row. An archived workflow stays archived
/// and an older revision never replaces a newer one.
pub async fn upsert_workflow(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    ensure_workspace(conn, workflow.workspace_uid, &workflow.namespace).await?;
    let creator = users::ensure_user_or_system(conn, workflow.created_by.as_deref()).await?;
    let mut notes = Notes::default();
    let description = workflow
        .description
        .as_deref()
        .map(|text| sanitize::text(text, limits.text_cap_bytes, "description", &mut notes));
    sqlx::query(
        "INSERT INTO workflows (id, workspace_id, name, description, nodes, edges, settings, status, version,
                                created_by, updated_by, published_at, created_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $14, $11,
                 COALESCE($12, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name,
             description = EXCLUDED.description, nodes = EXCLUDED.nodes, edges = EXCLUDED.edges,
             settings = EXCLUDED.settings, status = EXCLUDED.status, version = EXCLUDED.version,
             created_by = COALESCE($13, workflows.created_by), updated_by = EXCLUDED.updated_by,
             published_at = COALESCE(workflows.published_at, EXCLUDED.published_at)
         WHERE workflows.status <> 'archived' AND workflows.version <= EXCLUDED.version",
    )
    .bind(workflow.uid)
    .bind(workflow.workspace_uid)
    .bind(sanitize::varchar(&workflow.name, 255))
    .bind(description)
    .bind(sanitize::json_text(&workflow.nodes, limits, "nodes", &mut notes))
    .bind(sanitize::json_text(&workflow.edges, limits, "edges", &mut notes))
    .bind(sanitize::json_text(&workflow.settings, limits, "settings", &mut notes))
    .bind(workflow.state.as_str())
    .bind(workflow.revision)
    .bind(creator)
    .bind(workflow.published_at)
    .bind(workflow.created_at)
    .bind(workflow.created_by.is_some().then_some(creator))
    // Who changed a Workflow last is not in the object: the mirror wrote it.
    .bind(ids::SYSTEM_USER_ID)
    .execute(conn)
    .await
    .map_err(failed("workflow"))?;
    Ok(())
}

/// Creates the workflow row (its workspace and, when the run's snapshot
/// gave its nodes, the version) from what a run carries, where no row
/// exists yet; never changes an existing row, so the Workflow's own events
/// stay the authority.
pub async fn ensure_workflow(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    ensure_workspace(conn, workflow.workspace_uid, &workflow.namespace).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1)")
        .bind(workflow.uid)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed("workflow"))?;
    if !exists {
        let creator = users::ensure_user_or_system(conn, workflow.created_by.as_deref()).await?;
        let mut notes = Notes::default();
        sqlx::query(
            "INSERT INTO workflows (id, workspace_id, name, description, nodes, edges, settings, status, version,
                                    created_by, updated_by, created_at)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $12, COALESCE($11, CURRENT_TIMESTAMP))
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(workflow.uid)
        .bind(workflow.workspace_uid)
        .bind(sanitize::varchar(&workflow.name, 255))
        .bind(
            workflow
                .description
                .as_deref()
                .map(|text| sanitize::text(text, limits.text_cap_bytes, "description", &mut notes)),
        )
        .bind(sanitize::json_text(&workflow.nodes, limits, "nodes", &mut notes))
        .bind(sanitize::json_text(&workflow.edges, limits, "edges", &mut notes))
        .bind(sanitize::json_text(&workflow.settings, limits, "settings", &mut notes))
        .bind(workflow.state.as_str())
        .bind(workflow.revision)
        .bind(creator)
        .bind(workflow.created_at)
        .bind(ids::SYSTEM_USER_ID)
        .execute(&mut *conn)
        .await
        .map_err(failed("workflow"))?;
    }
    // Without the run's snapshot there is no spec to record as the version.
    if workflow
        .nodes
        .as_array()
        .is_some_and(|nodes| nodes.is_empty())
    {
        return Ok(());
    }
    upsert_workflow_version(conn, workflow, limits).await
}

/// Records the workflow's current revision in `workflow_versions`. A
/// revision's content never changes, so the first write wins.
pub async fn upsert_workflow_version(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let creator = users::ensure_user_or_system(conn, workflow.created_by.as_deref()).await?;
    let mut notes = Notes::default();
    sqlx::query(
        "INSERT INTO workflow_versions (id, workflow_id, version_number, name, description, nodes, edges,
                                        settings, created_by)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9)
         ON CONFLICT (workflow_id, version_number) DO NOTHING",
    )
    .bind(ids::workflow_version_id(workflow.uid, workflow.revision))
    .bind(workflow.uid)
    .bind(workflow.revision)
    .bind(sanitize::varchar(&workflow.name, 255))
    .bind(
        workflow
            .description
            .as_deref()
            .map(|text| sanitize::text(text, limits.text_cap_bytes, "description", &mut notes)),
    )
    .bind(sanitize::json_text(&workflow.nodes, limits, "nodes", &mut notes))
    .bind(sanitize::json_text(&workflow.edges, limits, "edges", &mut notes))
    .bind(sanitize::json_text(&workflow.settings, limits, "settings", &mut notes))
    .bind(creator)
    .execute(conn)
    .await
    .map_err(failed("workflow version"))?;
    Ok(())
}

/// The tag names of a workflow's labels: `key=value`.
pub fn tag_names(workflow: &WorkflowRecord) -> Vec<String> {
    let mut names: Vec<String> = workflow
        .labels
        .iter()
        .map(|(key, value)| sanitize::varchar(&format!("{key}={value}"), 100))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Makes the workflow's tag assignments exactly its labels.
pub async fn sync_workflow_tags(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
) -> Result<(), WriteError> {
    let names = tag_names(workflow);
    let tag_ids: Vec<Uuid> = names
        .iter()
        .map(|name| ids::tag_id(workflow.workspace_uid, name))
        .collect();
    sqlx::query(
        "INSERT INTO workflow_tags (id, workspace_id, name, created_by)
         SELECT tag.id, $2, tag.name, $4 FROM UNNEST($1::uuid[], $3::text[]) AS tag(id, name)
         ON CONFLICT (workspace_id, name) DO NOTHING",
    )
    .bind(&tag_ids)
    .bind(workflow.workspace_uid)
    .bind(&names)
    .bind(ids::SYSTEM_USER_ID)
    .execute(&mut *conn)
    .await
    .map_err(failed("workflow tags"))?;
    // By name, not by derived id: the tag may predate the mirror.
    sqlx::query(
        "INSERT INTO workflow_tag_assignments (workflow_id, tag_id)
         SELECT $1, tag.id FROM workflow_tags tag WHERE tag.workspace_id = $2 AND tag.name = ANY($3)
         ON CONFLICT DO NOTHING",
    )
    .bind(workflow.uid)
    .bind(workflow.workspace_uid)
    .bind(&names)
    .execute(&mut *conn)
    .await
    .map_err(failed("workflow tag assignments"))?;
    sqlx::query(
        "DELETE FROM workflow_tag_assignments assignment USING workflow_tags tag
         WHERE assignment.workflow_id = $1 AND assignment.tag_id = tag.id AND NOT (tag.name = ANY($2))",
    )
    .bind(workflow.uid)
    .bind(&names)
    .execute(conn)
    .await
    .map_err(failed("workflow tag assignments"))?;
    Ok(())
}

/// Makes `workflow_triggers` exactly the workflow's `spec.triggers`.
pub async fn sync_workflow_triggers(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let mut notes = Notes::default();
    let mut trigger_ids = Vec::new();
    let mut types = Vec::new();
    let mut settings = Vec::new();
    let mut active = Vec::new();
    for trigger in &workflow.triggers {
        trigger_ids.push(ids::trigger_id(workflow.uid, &trigger.name));
        types.push(sanitize::varchar(&trigger.trigger_type, 100));
        let mut object = match &trigger.settings {
            Value::Object(object) => object.clone(),
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_owned(), other.clone())]),
        };
        object.insert("name".into(), Value::String(trigger.name.clone()));
        settings.push(sanitize::json_text(
            &Value::Object(object),
            limits,
            "settings",
            &mut notes,
        ));
        active.push(trigger.active && workflow.state != WorkflowState::Archived);
    }
    sqlx::query(
        "INSERT INTO workflow_triggers (id, workflow_id, trigger_type, settings, is_active)
         SELECT trigger.id, $2, trigger.type, trigger.settings::jsonb, trigger.active
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::bool[]) AS trigger(id, type, settings, active)
         ON CONFLICT (id) DO UPDATE SET
             trigger_type = EXCLUDED.trigger_type, settings = EXCLUDED.settings, is_active = EXCLUDED.is_active",
    )
    .bind(&trigger_ids)
    .bind(workflow.uid)
    .bind(&types)
    .bind(&settings)
    .bind(&active)
    .execute(&mut *conn)
    .await
    .map_err(failed("workflow triggers"))?;
    sqlx::query("DELETE FROM workflow_triggers WHERE workflow_id = $1 AND NOT (id = ANY($2))")
        .bind(workflow.uid)
        .bind(&trigger_ids)
        .execute(conn)
        .await
        .map_err(failed("workflow triggers"))?;
    Ok(())
}

/// Makes `webhook_endpoints` exactly the workflow's webhook triggers. The
/// `secret` column holds `secretRef:<name>/<key>` (or `none`), never a key.
pub async fn sync_webhook_endpoints(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
) -> Result<(), WriteError> {
    let mut endpoint_ids = Vec::new();
    let mut paths = Vec::new();
    let mut secrets = Vec::new();
    let mut active = Vec::new();
    let mut last_used = Vec::new();
    for trigger in &workflow.triggers {
        let Some(webhook) = &trigger.webhook else {
            continue;
        };
        endpoint_ids.push(ids::webhook_endpoint_id(workflow.uid, &trigger.name));
        paths.push(sanitize::varchar(&webhook.path, 255));
        let secret = webhook
            .secret_ref
            .as_ref()
            .map_or_else(|| "none".to_owned(), |secret| secret.reference());
        secrets.push(sanitize::varchar(&secret, 255));
        active.push(trigger.active);
        last_used.push(webhook.last_used_at);
    }
    // Endpoints no longer wanted, and paths still held by an earlier
    // (deleted and re-created) workflow of the same name.
    sqlx::query(
        "DELETE FROM webhook_endpoints
         WHERE (workflow_id = $1 AND NOT (id = ANY($2)))
            OR (endpoint_path = ANY($3) AND workflow_id <> $1)
            OR (id = ANY($2) AND NOT (endpoint_path = ANY($3)))",
    )
    .bind(workflow.uid)
    .bind(&endpoint_ids)
    .bind(&paths)
    .execute(&mut *conn)
    .await
    .map_err(failed("webhook endpoints"))?;
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, workflow_id, endpoint_path, secret, is_active, last_used_at)
         SELECT endpoint.id, $2, endpoint.path, endpoint.secret, endpoint.active, endpoint.last_used
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::bool[], $6::timestamptz[])
              AS endpoint(id, path, secret, active, last_used)
         ON CONFLICT (id) DO UPDATE SET
             endpoint_path = EXCLUDED.endpoint_path, secret = EXCLUDED.secret, is_active = EXCLUDED.is_active,
             last_used_at = GREATEST(webhook_endpoints.last_used_at, EXCLUDED.last_used_at)",
    )
    .bind(&endpoint_ids)
    .bind(workflow.uid)
    .bind(&paths)
    .bind(&secrets)
    .bind(&active)
    .bind(&last_used)
    .execute(conn)
    .await
    .map_err(failed("webhook endpoints"))?;
    Ok(())
}

/// Makes the workflow's `environment_variables` exactly its `spec.env`;
/// a secret value is stored as its reference with `is_secret`.
pub async fn sync_environment_variables(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let mut notes = Notes::default();
    let mut variable_ids = Vec::new();
    let mut names = Vec::new();
    let mut values = Vec::new();
    let mut secret = Vec::new();
    for variable in &workflow.env {
        variable_ids.push(ids::environment_variable_id(
            workflow.workspace_uid,
            Some(workflow.uid),
            &variable.name,
        ));
        names.push(sanitize::varchar(&variable.name, 255));
        match &variable.value {
            EnvValue::Plain(value) => {
                values.push(sanitize::text(
                    value,
                    limits.text_cap_bytes,
                    "value",
                    &mut notes,
                ));
                secret.push(false);
            }
            EnvValue::Secret(reference) => {
                values.push(reference.reference());
                secret.push(true);
            }
        }
    }
    sqlx::query(
        "INSERT INTO environment_variables (id, workspace_id, workflow_id, name, value, is_secret, scope, created_by)
         SELECT variable.id, $2, $3, variable.name, variable.value, variable.secret, 'workflow', $7
         FROM UNNEST($1::uuid[], $4::text[], $5::text[], $6::bool[]) AS variable(id, name, value, secret)
         ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name, value = EXCLUDED.value, is_secret = EXCLUDED.is_secret",
    )
    .bind(&variable_ids)
    .bind(workflow.workspace_uid)
    .bind(workflow.uid)
    .bind(&names)
    .bind(&values)
    .bind(&secret)
    .bind(ids::SYSTEM_USER_ID)
    .execute(&mut *conn)
    .await
    .map_err(failed("environment variables"))?;
    sqlx::query("DELETE FROM environment_variables WHERE workflow_id = $1 AND NOT (id = ANY($2))")
        .bind(workflow.uid)
        .bind(&variable_ids)
        .execute(conn)
        .await
        .map_err(failed("environment variables"))?;
    Ok(())
}

/// Everything a Workflow event writes: the workflow, its version, tags,
/// triggers, webhook endpoints and environment.
pub async fn apply_workflow(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    upsert_workflow(conn, workflow, limits).await?;
    let stale: bool = sqlx::query_scalar(
        "SELECT status = 'archived' OR version > $2 FROM workflows WHERE id = $1",
    )
    .bind(workflow.uid)
    .bind(workflow.revision)
    .fetch_one(&mut *conn)
    .await
    .map_err(failed("workflow"))?;
    if stale {
        // A late event of a deleted workflow, or of an older revision: the
        // side tables already reflect something newer.
        return Ok(());
    }
    upsert_workflow_version(conn, workflow, limits).await?;
    sync_workflow_tags(conn, workflow).await?;
    sync_workflow_triggers(conn, workflow, limits).await?;
    sync_webhook_endpoints(conn, workflow).await?;
    let owner = users::user_or_system(workflow.created_by.as_deref());
    users::sync_api_keys(conn, workflow, owner).await?;
    sync_environment_variables(conn, workflow, limits).await?;
    Ok(())
}

/// A deleted Workflow: archived, webhook endpoints removed, triggers off.
pub async fn archive_workflow(conn: &mut PgConnection, uid: Uuid) -> Result<(), WriteError> {
    sqlx::query("UPDATE workflows SET status = 'archived' WHERE id = $1")
        .bind(uid)
        .execute(&mut *conn)
        .await
        .map_err(failed("workflow"))?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE workflow_id = $1")
        .bind(uid)
        .execute(&mut *conn)
        .await
        .map_err(failed("webhook endpoints"))?;
    sqlx::query("UPDATE workflow_triggers SET is_active = FALSE WHERE workflow_id = $1")
        .bind(uid)
        .execute(&mut *conn)
        .await
        .map_err(failed("workflow triggers"))?;
    users::delete_api_keys(conn, uid).await
}

/// Creates or updates a Schedule's row.
pub async fn upsert_schedule(
    conn: &mut PgConnection,
    schedule: &ScheduleRecord,
) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO workflow_schedules (id, workflow_id, name, cron_expression, timezone, is_active,
                                         next_run_at, last_run_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             workflow_id = EXCLUDED.workflow_id, name = EXCLUDED.name,
             cron_expression = EXCLUDED.cron_expression, timezone = EXCLUDED.timezone,
             is_active = EXCLUDED.is_active, next_run_at = EXCLUDED.next_run_at,
             last_run_at = GREATEST(workflow_schedules.last_run_at, EXCLUDED.last_run_at)",
    )
    .bind(schedule.uid)
    .bind(schedule.workflow_uid)
    .bind(sanitize::varchar(&schedule.name, 255))
    .bind(sanitize::varchar(&schedule.cron, 255))
    .bind(sanitize::varchar(&schedule.time_zone, 50))
    .bind(schedule.active)
    .bind(schedule.next_run_at)
    .bind(schedule.last_run_at)
    .bind(schedule.created_at)
    .execute(conn)
    .await
    .map_err(failed("workflow schedule"))?;
    Ok(())
}

/// A deleted Schedule: its row goes (the audit log keeps its last state).
pub async fn delete_schedule(conn: &mut PgConnection, uid: Uuid) -> Result<(), WriteError> {
    sqlx::query("DELETE FROM workflow_schedules WHERE id = $1")
        .bind(uid)
        .execute(conn)
        .await
        .map_err(failed("workflow schedule"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    #[sqlx::test(migrations = "../migrations")]
    async fn a_workflow_fills_its_side_tables(pool: PgPool) {
        seed_runs(&pool, &[]).await;

        let owner: uuid::Uuid = sqlx::query_scalar("SELECT owner_id FROM workspaces WHERE id = $1")
            .bind(uid(1))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(owner, super::ids::SYSTEM_USER_ID);
        let (status, version): (String, i32) =
            sqlx::query_as("SELECT status, version FROM workflows WHERE id = $1")
                .bind(uid(10))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((status.as_str(), version), ("active", 1));
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT t.name FROM workflow_tag_assignments a JOIN workflow_tags t ON t.id = a.tag_id
             WHERE a.workflow_id = $1 ORDER BY t.name",
        )
        .bind(uid(10))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(tags, ["team=growth", "tier=gold"]);
        let (path, secret): (String, String) = sqlx::query_as(
            "SELECT endpoint_path, secret FROM webhook_endpoints WHERE workflow_id = $1",
        )
        .bind(uid(10))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(path, "/hooks/growth/triage-signup/signup");
        assert_eq!(secret, "secretRef:signup-hook/hmac");
        let env: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT name, value, is_secret FROM environment_variables ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            env,
            [
                ("CRM_TOKEN".into(), "secretRef:crm/token".into(), true),
                ("REGION".into(), "eu".into(), false)
            ]
        );
        let trigger: (String, serde_json::Value) = sqlx::query_as(
            "SELECT trigger_type, settings FROM workflow_triggers WHERE workflow_id = $1",
        )
        .bind(uid(10))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            trigger,
            (
                "webhook".into(),
                serde_json::json!({"auth": "hmac", "name": "signup"})
            )
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_new_revision_replaces_side_tables_and_an_old_one_is_ignored(pool: PgPool) {
        seed_runs(&pool, &[]).await;
        let mut next = workflow();
        next.revision = 2;
        next.labels = BTreeMap::from([("tier".into(), "silver".into())]);
        next.triggers.clear();
        next.env.truncate(1);
        write(&pool, &[MirrorEvent::Workflow(next)]).await;
        // A late event of revision 1 changes nothing.
        write(&pool, &[MirrorEvent::Workflow(workflow())]).await;

        let versions: Vec<i32> =
            sqlx::query_scalar("SELECT version_number FROM workflow_versions ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(versions, [1, 2]);
        let version: i32 = sqlx::query_scalar("SELECT version FROM workflows")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(version, 2);
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT t.name FROM workflow_tag_assignments a JOIN workflow_tags t ON t.id = a.tag_id ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(tags, ["tier=silver"]);
        for (table, expected) in [
            ("workflow_triggers", 0),
            ("webhook_endpoints", 0),
            ("environment_variables", 1),
        ] {
            let count: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert_eq!(count, expected, "{table}");
        }
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_deleted_workflow_is_archived_for_good(pool: PgPool) {
        seed_runs(&pool, &[execution(1, RunPhase::Succeeded)]).await;
        let deleted = MirrorEvent::Deleted(DeletedRecord {
            kind: ResourceKind::Workflow,
            uid: uid(10),
        });
        write(&pool, std::slice::from_ref(&deleted)).await;
        write(&pool, &[MirrorEvent::Workflow(workflow())]).await;

        let status: String = sqlx::query_scalar("SELECT status FROM workflows")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, "archived");
        let endpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(endpoints, 0);
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(runs, 1, "history stays");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_recreated_workflow_takes_over_its_webhook_path(pool: PgPool) {
        seed_runs(&pool, &[]).await;
        write(
            &pool,
            &[MirrorEvent::Deleted(DeletedRecord {
                kind: ResourceKind::Workflow,
                uid: uid(10),
            })],
        )
        .await;
        let mut recreated = workflow();
        recreated.uid = uid(11);
        write(&pool, &[MirrorEvent::Workflow(recreated)]).await;
        let owner: uuid::Uuid = sqlx::query_scalar("SELECT workflow_id FROM webhook_endpoints")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(owner, uid(11));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn schedules_are_upserted_and_deleted(pool: PgPool) {
        seed_runs(&pool, &[]).await;
        let schedule = ScheduleRecord {
            uid: uid(20),
            workflow_uid: uid(10),
            name: "nightly".into(),
            cron: "30 2 * * *".into(),
            time_zone: "Europe/Berlin".into(),
            active: true,
            next_run_at: Some(at(1, 30)),
            last_run_at: None,
            created_at: None,
        };
        write(&pool, &[MirrorEvent::Schedule(schedule.clone())]).await;
        let row: (String, String, bool) =
            sqlx::query_as("SELECT cron_expression, timezone, is_active FROM workflow_schedules")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(row, ("30 2 * * *".into(), "Europe/Berlin".into(), true));
        write(
            &pool,
            &[MirrorEvent::Deleted(DeletedRecord {
                kind: ResourceKind::Schedule,
                uid: uid(20),
            })],
        )
        .await;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_schedules")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn updated_at_moves_on_a_change_and_not_on_a_replay(pool: PgPool) {
        seed_runs(&pool, &[]).await;
        let read = || async {
            sqlx::query_as::<_, (DateTime<Utc>, DateTime<Utc>)>(
                "SELECT created_at, updated_at FROM workflows",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        let (created, first) = read().await;
        assert_eq!(
            created,
            at(8, 5),
            "created_at is the object's creationTimestamp"
        );

        write(&pool, &[MirrorEvent::Workflow(workflow())]).await;
        assert_eq!(read().await.1, first, "a replay is not an update");

        let mut changed = workflow();
        changed.description = Some("changed".into());
        write(&pool, &[MirrorEvent::Workflow(changed)]).await;
        let (_, second) = read().await;
        assert!(second > first, "{second} should be after {first}");
    }
}

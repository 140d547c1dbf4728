//! The audit trail and system metric samples.
//!
//! Each observed create/update/delete of a Sluice object is one
//! `audit_logs` row with the object's old and new state, and, when known,
//! the Kubernetes user who did it (`user_id`, their `users` row). Its id is a UUIDv5
//! of (object uid, version, action), so a replayed watch event (relists,
//! resyncs, restarts) never adds a second entry. Connection states
//! are masked before they are stored; all states are sanitised and capped.
//! No commits or retries here.

use serde_json::{Map, Value, json};
use sqlx::PgConnection;

use super::records::{AuditAction, AuditRecord, ResourceKind, SystemMetricRecord};
use super::sanitize::{self, Limits, Notes};
use super::{WriteError, failed, ids, users, workflows};

/// `audit_logs.action` in the seed's style: `workflow_created` …
pub fn action_name(audit: &AuditRecord) -> String {
    format!("{}_{}", audit.kind.as_str(), audit.action.as_str())
}

/// Inserts one audit entry (a no-op when it is already there). An update
/// or delete without `old_values` gets the new state of the object's
/// previous entry.
pub async fn insert_audit(
    conn: &mut PgConnection,
    audit: &AuditRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let action = action_name(audit);
    let mut notes = Notes::default();
    let state = |value: &Option<Value>, field: &'static str, notes: &mut Notes| -> Option<String> {
        value.as_ref().map(|value| {
            let value = if audit.kind == ResourceKind::Connection {
                sanitize::mask_secrets(value)
            } else {
                value.clone()
            };
            sanitize::json_text(&value, limits, field, notes)
        })
    };
    let old_values = state(&audit.old_values, "old_values", &mut notes);
    let new_values = state(&audit.new_values, "new_values", &mut notes);
    let mut metadata = match &audit.metadata {
        Some(Value::Object(object)) => object.clone(),
        Some(other) => Map::from_iter([("value".to_owned(), other.clone())]),
        None => Map::new(),
    };
    metadata.insert("name".into(), json!(audit.name));
    metadata.insert("namespace".into(), json!(audit.namespace));
    metadata.insert("version".into(), json!(audit.version));
    let metadata = notes.merge_into(Some(Value::Object(metadata)));
    let metadata = sanitize::json_opt(metadata.as_ref(), limits, "metadata", &mut Notes::default());
    if let Some(workspace) = audit.workspace_uid {
        workflows::ensure_workspace(conn, workspace, &audit.namespace).await?;
    }
    let user_id = match audit.user.as_deref() {
        Some(username) => Some(users::ensure_users(conn, &[username]).await?[0]),
        None => None,
    };
    let follows_an_entry = audit.action != AuditAction::Created;
    sqlx::query(
        "INSERT INTO audit_logs (id, workspace_id, action, resource_type, resource_id, old_values,
                                new_values, metadata, created_at, user_id)
         VALUES ($1, $2, $3, $4, $5,
                 COALESCE($6::jsonb, CASE WHEN $9 THEN (
                     SELECT previous.new_values FROM audit_logs previous
                     WHERE previous.resource_type = $4 AND previous.resource_id = $5
                       AND previous.created_at <= $8 AND previous.id <> $1
                     ORDER BY previous.created_at DESC LIMIT 1) END),
                 $7::jsonb, $10::jsonb, $8, $11)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids::audit_id(audit.resource_uid, &audit.version, &action))
    .bind(audit.workspace_uid)
    .bind(&action)
    .bind(audit.kind.as_str())
    .bind(audit.resource_uid.to_string())
    .bind(old_values)
    .bind(new_values)
    .bind(audit.observed_at)
    .bind(follows_an_entry)
    .bind(metadata)
    .bind(user_id)
    .execute(conn)
    .await
    .map_err(failed("audit log"))?;
    Ok(())
}

/// Inserts one metric sample (a no-op when it is already there).
pub async fn insert_system_metric(
    conn: &mut PgConnection,
    metric: &SystemMetricRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let tags = sanitize::json_text(&metric.tags, limits, "tags", &mut Notes::default());
    let id = ids::system_metric_id(
        &metric.metric_type,
        &tags,
        metric.recorded_at.timestamp_micros(),
    );
    // DECIMAL(15,2) holds neither NaN nor infinities nor more than 13 digits.
    let value = if metric.value.is_finite() {
        metric.value.clamp(-9.99e12, 9.99e12)
    } else {
        0.0
    };
    sqlx::query(
        "INSERT INTO system_metrics (id, metric_type, metric_value, unit, tags, recorded_at)
         VALUES ($1, $2, $3::numeric, $4, $5::jsonb, $6)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(sanitize::varchar(&metric.metric_type, 100))
    .bind(value)
    .bind(
        metric
            .unit
            .as_deref()
            .map(|unit| sanitize::varchar(unit, 50)),
    )
    .bind(tags)
    .bind(metric.recorded_at)
    .execute(conn)
    .await
    .map_err(failed("system metric"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    fn entry(action: AuditAction, version: &str, minute: u32, spec: Option<Value>) -> MirrorEvent {
        let state = spec.map(|spec| json!({"spec": spec}));
        let (old_values, new_values) = match action {
            AuditAction::Deleted => (state, None),
            _ => (None, state),
        };
        MirrorEvent::Audit(AuditRecord {
            resource_uid: uid(10),
            version: version.into(),
            kind: ResourceKind::Workflow,
            name: "triage-signup".into(),
            namespace: "growth".into(),
            workspace_uid: Some(uid(1)),
            action,
            old_values,
            new_values,
            metadata: Some(json!({"manager": "kubectl-client-side-apply"})),
            user: None,
            observed_at: at(9, minute),
        })
    }

    async fn trail(pool: &PgPool) -> Vec<(String, Option<Value>, Option<Value>)> {
        sqlx::query_as(
            "SELECT action, old_values, new_values FROM audit_logs
             WHERE resource_id = $1 ORDER BY created_at",
        )
        .bind(uid(10).to_string())
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn updates_take_their_old_state_from_the_previous_entry_and_replays_add_nothing(
        pool: PgPool,
    ) {
        // No workspace event first: the entry creates its workspace.
        let created = entry(
            AuditAction::Created,
            "1",
            0,
            Some(json!({"suspend": false})),
        );
        let updated = entry(AuditAction::Updated, "2", 5, Some(json!({"suspend": true})));
        let deleted = entry(
            AuditAction::Deleted,
            "77",
            9,
            Some(json!({"suspend": true})),
        );
        write(&pool, &[created.clone(), updated.clone()]).await;
        write(&pool, &[created, updated, deleted.clone(), deleted]).await;
        assert_eq!(
            trail(&pool).await,
            vec![
                (
                    "workflow_created".into(),
                    None,
                    Some(json!({"spec": {"suspend": false}}))
                ),
                (
                    "workflow_updated".into(),
                    Some(json!({"spec": {"suspend": false}})),
                    Some(json!({"spec": {"suspend": true}}))
                ),
                (
                    "workflow_deleted".into(),
                    Some(json!({"spec": {"suspend": true}})),
                    None
                ),
            ]
        );
        let metadata: Value = sqlx::query_scalar("SELECT metadata FROM audit_logs LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(metadata["manager"], "kubectl-client-side-apply");
        assert_eq!(metadata["namespace"], "growth");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn the_first_entry_seen_of_an_object_has_no_old_state(pool: PgPool) {
        // An object changed while no operator watched: its first entry is an
        // update with nothing before it.
        write(
            &pool,
            &[entry(AuditAction::Updated, "4", 0, Some(json!({"a": 1})))],
        )
        .await;
        assert_eq!(
            trail(&pool).await,
            vec![(
                "workflow_updated".into(),
                None,
                Some(json!({"spec": {"a": 1}}))
            )]
        );
    }
}

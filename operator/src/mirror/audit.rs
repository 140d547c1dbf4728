//! The audit trail and system metric samples.
//!
//! Each observed create/update/delete of a Sluice object is one
//! `audit_logs` row with the object's old and new state. Its id is a UUIDv5
//! of (object uid, resourceVersion, action), so a replayed watch event
//! (relists, resyncs, restarts) never adds a second entry. Connection states
//! are masked before they are stored; all states are sanitised and capped.
//! No commits or retries here.

use serde_json::{Map, Value, json};
use sqlx::PgConnection;

use super::records::{AuditRecord, ResourceKind, SystemMetricRecord};
use super::sanitize::{self, Limits, Notes};
use super::{WriteError, failed, ids};

/// `audit_logs.action` in the seed's style: `workflow_created` …
pub fn action_name(audit: &AuditRecord) -> String {
    format!("{}_{}", audit.kind.as_str(), audit.action.as_str())
}

/// Inserts one audit entry (a no-op when it is already there).
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
    metadata.insert("resourceVersion".into(), json!(audit.resource_version));
    let metadata = notes.merge_into(Some(Value::Object(metadata)));
    let metadata = sanitize::json_opt(metadata.as_ref(), limits, "metadata", &mut Notes::default());
    sqlx::query(
        "INSERT INTO audit_logs (id, workspace_id, action, resource_type, resource_id, old_values, new_values,
                                metadata, created_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids::audit_id(audit.resource_uid, &audit.resource_version, &action))
    .bind(audit.workspace_uid)
    .bind(&action)
    .bind(audit.kind.as_str())
    .bind(audit.resource_uid.to_string())
    .bind(old_values)
    .bind(new_values)
    .bind(metadata)
    .bind(audit.observed_at)
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

//! The audit trail page: rows of `audit_logs` in the namespaces the user
//! may read (the same check as the runs list), newest first, paginated by
//! the key (created_at, id).

use super::runs::Cursor;
use super::server::{ConsoleError, ConsoleState, SignedIn, readable_namespaces};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

/// Rows per page.
pub const PAGE_SIZE: i64 = 50;

/// One audit row as the page shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub namespace: String,
    /// The Kubernetes username (the `users` row's name), when known.
    pub user: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub old_values: Option<serde_json::Value>,
    pub new_values: Option<serde_json::Value>,
}

/// A page of the audit trail and where the next one starts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// Audit rows of `namespaces`, newest first, after `cursor`.
pub async fn list_audit(
    pool: &PgPool,
    namespaces: &[String],
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<AuditPage, sqlx::Error> {
    let mut entries: Vec<AuditEntry> = sqlx::query_as(
        "SELECT a.id, a.created_at, s.name AS namespace, u.name AS user, a.action,
                a.resource_type, a.resource_id, a.old_values, a.new_values
           FROM audit_logs a
           JOIN workspaces s ON s.id = a.workspace_id
           LEFT JOIN users u ON u.id = a.user_id
          WHERE s.name = ANY($1)
            AND ($2::timestamptz IS NULL OR (a.created_at, a.id) < ($2, $3))
          ORDER BY a.created_at DESC, a.id DESC
          LIMIT $4",
    )
    .bind(namespaces)
    .bind(cursor.map(|cursor| cursor.created_at))
    .bind(cursor.map(|cursor| cursor.id))
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|last| {
            Cursor {
                created_at: last.created_at,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(AuditPage {
        entries,
        next_cursor,
    })
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    cursor: Option<String>,
}

/// `GET /api/audit?cursor=`: the audit trail of the readable namespaces.
pub async fn list(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ConsoleError> {
    let cursor = match query.cursor.as_deref().filter(|text| !text.is_empty()) {
        None => None,
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ConsoleError(
                StatusCode::BAD_REQUEST,
                "cursor is not one this console handed out: use nextCursor of the last page"
                    .to_owned(),
            )
        })?),
    };
    let namespaces = readable_namespaces(&state, &signed_in).await?;
    Ok(Json(
        list_audit(&state.pool, &namespaces, cursor, PAGE_SIZE).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::{at, execution, seed_runs};
    use crate::mirror::records::RunPhase;

    #[sqlx::test(migrations = "../migrations")]
    async fn pages_of_readable_namespaces_newest_first(pool: PgPool) {
        seed_runs(&pool, &[execution(1, RunPhase::Succeeded)]).await;
        for minute in 0..5u32 {
            sqlx::query(
                "INSERT INTO audit_logs (workspace_id, action, resource_type, resource_id, created_at)
                 SELECT id, 'console_test', 'workflow', $1, $2 FROM workspaces WHERE name = 'growth'",
            )
            .bind(format!("w{minute}"))
            .bind(at(23, minute))
            .execute(&pool)
            .await
            .unwrap();
        }
        let growth = vec!["growth".to_owned()];
        let all = list_audit(&pool, &growth, None, 1000).await.unwrap();
        assert!(all.next_cursor.is_none());
        assert!(all.entries.len() >= 5);
        assert!(
            all.entries
                .windows(2)
                .all(|pair| (pair[0].created_at, pair[0].id) > (pair[1].created_at, pair[1].id))
        );
        let ours: Vec<_> = all
            .entries
            .iter()
            .filter(|entry| entry.action == "console_test")
            .map(|entry| entry.resource_id.clone().unwrap())
            .collect();
        assert_eq!(ours, ["w4", "w3", "w2", "w1", "w0"]);

        // Page by page, the same rows in the same order.
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = list_audit(&pool, &growth, cursor, 2).await.unwrap();
            assert!(page.entries.len() <= 2);
            paged.extend(page.entries.iter().map(|entry| entry.id));
            match page.next_cursor {
                Some(next) => cursor = Some(Cursor::decode(&next).unwrap()),
                None => break,
            }
        }
        let ids: Vec<_> = all.entries.iter().map(|entry| entry.id).collect();
        assert_eq!(paged, ids);

        // Namespaces the user may not read give nothing.
        let other = list_audit(&pool, &["other".to_owned()], None, 10)
            .await
            .unwrap();
        assert!(other.entries.is_empty());
    }
}

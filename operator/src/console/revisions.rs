//! Workflow revisions (`workflow_versions`) and a line diff between any two
//! of them, of the pretty-printed JSON spec, computed here.

use super::reads::require;
use super::server::{ConsoleError, ConsoleState, SignedIn};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;

/// One revision of a workflow.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: i32,
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    /// description, nodes, edges and settings of that revision.
    pub spec: Value,
}

/// The revisions of `namespace/workflow`, newest first.
pub async fn list_revisions(
    pool: &PgPool,
    namespace: &str,
    workflow: &str,
) -> Result<Vec<Revision>, sqlx::Error> {
    sqlx::query_as(
        "SELECT v.version_number AS revision, v.created_at, u.name AS created_by,
                jsonb_build_object('description', v.description, 'nodes', v.nodes,
                                   'edges', v.edges, 'settings', v.settings) AS spec
           FROM workspaces s
           JOIN workflows w ON w.workspace_id = s.id
           JOIN workflow_versions v ON v.workflow_id = w.id
           LEFT JOIN users u ON u.id = v.created_by
          WHERE s.name = $1 AND w.name = $2
          ORDER BY v.version_number DESC",
    )
    .bind(namespace)
    .bind(workflow)
    .fetch_all(pool)
    .await
}

/// A line diff: each line of `old` and `new` once, marked ' ' (both), '-'
/// (only old) or '+' (only new), in order (longest common subsequence).
pub fn diff_lines(old: &str, new: &str) -> Vec<(char, String)> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((' ', a[i].to_owned()));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push(('+', b[j].to_owned()));
            j += 1;
        } else {
            out.push(('-', a[i].to_owned()));
            i += 1;
        }
    }
    out
}

#[derive(Deserialize, Default)]
pub struct DiffQuery {
    from: Option<i32>,
    to: Option<i32>,
}

/// `GET /api/workflows/{namespace}/{name}/revisions?from=&to=`: the
/// revisions, and with `from` and `to` the diff between those two.
pub async fn revisions(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<DiffQuery>,
) -> Result<Json<Value>, ConsoleError> {
    require(&state, &signed_in, &namespace, "list", "workflowruns").await?;
    let revisions = list_revisions(&state.pool, &namespace, &name).await?;
    let diff = match (query.from, query.to) {
        (Some(from), Some(to)) => {
            let text = |number: i32| {
                revisions
                    .iter()
                    .find(|revision| revision.revision == number)
                    .map(|revision| {
                        serde_json::to_string_pretty(&revision.spec).unwrap_or_default()
                    })
                    .ok_or_else(|| {
                        ConsoleError(
                            StatusCode::NOT_FOUND,
                            format!("workflow {name} has no revision {number}"),
                        )
                    })
            };
            let lines = diff_lines(&text(from)?, &text(to)?);
            Some(
                lines
                    .into_iter()
                    .map(|(mark, line)| json!({"op": mark.to_string(), "line": line}))
                    .collect::<Vec<_>>(),
            )
        }
        _ => None,
    };
    Ok(Json(json!({ "revisions": revisions, "diff": diff })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::{execution, seed_runs};
    use crate::mirror::records::RunPhase;

    #[test]
    fn a_line_diff_keeps_common_lines_and_marks_the_rest() {
        let diff = diff_lines("a\nb\nc\nd", "a\nc\nx\nd");
        let text: Vec<String> = diff
            .iter()
            .map(|(mark, line)| format!("{mark}{line}"))
            .collect();
        assert_eq!(text, [" a", "-b", " c", "+x", " d"]);
        assert!(
            diff_lines("same", "same")
                .iter()
                .all(|(mark, _)| *mark == ' ')
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn revisions_newest_first_with_their_spec(pool: PgPool) {
        seed_runs(&pool, &[execution(1, RunPhase::Succeeded)]).await;
        sqlx::query(
            "INSERT INTO workflow_versions (workflow_id, version_number, name, nodes, edges)
             SELECT id, 99, name, '[{\"name\": \"only\"}]', '[]' FROM workflows WHERE name = 'triage-signup'",
        )
        .execute(&pool)
        .await
        .unwrap();
        let revisions = list_revisions(&pool, "growth", "triage-signup")
            .await
            .unwrap();
        assert!(revisions.len() >= 2, "{revisions:?}");
        assert_eq!(revisions[0].revision, 99);
        assert_eq!(revisions[0].spec["nodes"], json!([{"name": "only"}]));
        assert!(
            revisions
                .windows(2)
                .all(|pair| pair[0].revision > pair[1].revision)
        );
        assert!(
            list_revisions(&pool, "other", "triage-signup")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

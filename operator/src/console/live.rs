//! Live updates of one run for the console's run page, as Server-Sent
//! Events: `GET /api/events?namespace=&run=` sends an event `run` (data:
//! the phase) whenever the run's row, its node executions or its log
//! lines change in PostgreSQL, and ends once the run has finished. The
//! page reloads the run on each event. Checked like the run's page (`get`
//! on `workflowruns` in the namespace).

use super::reads::require;
use super::server::{ConsoleError, ConsoleState, SignedIn};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use sqlx::PgPool;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the run's rows are looked at.
const POLL: Duration = Duration::from_secs(1);
/// Longest one stream lasts; the page opens another if it still wants one.
const LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Deserialize)]
pub struct EventsQuery {
    namespace: String,
    run: String,
}

/// What changes when anything about the run changes, and its status.
async fn fingerprint(
    pool: &PgPool,
    namespace: &str,
    run: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.status,
                e.status || '|' || COALESCE(e.ended_at::text, '') || '|' ||
                (SELECT count(*) || ':' || count(n.ended_at) || ':' || COALESCE(max(n.attempt), 0)
                 FROM node_executions n WHERE n.execution_id = e.id) || '|' ||
                COALESCE((SELECT max(l.seq) FROM execution_logs l WHERE l.execution_id = e.id), 0)
         FROM workflow_executions e
         JOIN workflows w ON w.id = e.workflow_id
         JOIN workspaces ws ON ws.id = w.workspace_id
         WHERE e.name = $2 AND ws.name = $1
         ORDER BY e.created_at DESC LIMIT 1",
    )
    .bind(namespace)
    .bind(run)
    .fetch_optional(pool)
    .await
}

fn finished(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

pub async fn events(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    require(&state, &signed_in, &query.namespace, "get", "workflowruns").await?;
    let pool = state.pool.clone();
    let deadline = tokio::time::Instant::now() + LIFETIME;
    let stream = futures::stream::unfold(
        (pool, query, None::<String>, false),
        move |(pool, query, last, done)| async move {
            if done {
                return None;
            }
            loop {
                tokio::time::sleep(POLL).await;
                if tokio::time::Instant::now() > deadline {
                    return None;
                }
                let Ok(Some((status, print))) =
                    fingerprint(&pool, &query.namespace, &query.run).await
                else {
                    continue;
                };
                if last.as_deref() == Some(print.as_str()) {
                    continue;
                }
                let event = Event::default()
                    .event("run")
                    .data(super::runs::phase_of_status(&status));
                let done = finished(&status);
                return Some((Ok(event), (pool, query, Some(print), done)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

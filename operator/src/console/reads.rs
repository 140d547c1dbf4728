//! The console's history reads: the runs list and one run, from
//! PostgreSQL, each namespace checked with SubjectAccessReview for the
//! signed-in user first.
//!
//! - `GET /api/runs?namespace=&workflow=&phase=&trigger=&from=&to=&cursor=&limit=`:
//!   newest first; `namespace` the user may not list is 403, none means
//!   every namespace they may list. `from`/`to` are RFC 3339 times
//!   (creation at or after `from`, before `to`); `cursor` is the
//!   `nextCursor` of the page before.
//! - `GET /api/runs/{namespace}/{name}?level=&afterSeq=`: the run with its
//!   node executions, log lines at `level` or more severe (default debug)
//!   numbered after `afterSeq`, and why it failed.

use super::identity::Access;
use super::runs::{self, Cursor, DEFAULT_PAGE_SIZE, RunFilter};
use super::server::{ConsoleError, ConsoleState, SignedIn, readable_namespaces};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

fn bad_request(message: String) -> ConsoleError {
    ConsoleError(StatusCode::BAD_REQUEST, message)
}

/// Refuses unless the user may do `verb` on `resource` in `namespace`.
pub async fn require(
    state: &ConsoleState,
    signed_in: &SignedIn,
    namespace: &str,
    verb: &str,
    resource: &str,
) -> Result<(), ConsoleError> {
    let access = Access {
        namespace,
        verb,
        resource,
    };
    if state
        .authority
        .allowed(&signed_in.session.identity, &access)
        .await?
    {
        Ok(())
    } else {
        Err(ConsoleError(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {verb} {resource} in namespace {namespace}: ask for a RoleBinding that allows it",
                signed_in.session.identity.username
            ),
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunsQuery {
    namespace: Option<String>,
    workflow: Option<String>,
    phase: Option<String>,
    trigger: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.trim().is_empty())
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    non_empty(value)
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim())
                .map(|time| time.with_timezone(&Utc))
                .map_err(|error| {
                    bad_request(format!(
                        "{name} is not an RFC 3339 time ({error}): write e.g. 2026-12-07T09:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// The filter of a runs request, without the namespaces.
fn build_filter(query: RunsQuery) -> Result<(RunFilter, Option<Cursor>, u32), ConsoleError> {
    let status = non_empty(query.phase)
        .map(|phase| {
            runs::status_of_phase(&phase).ok_or_else(|| {
                bad_request(format!(
                    "unknown phase {phase}: use one of Pending, Queued, Running, Succeeded, Failed, Cancelled"
                ))
            })
        })
        .transpose()?;
    let trigger = non_empty(query.trigger)
        .map(|trigger| {
            runs::trigger_type(&trigger).ok_or_else(|| {
                bad_request(format!(
                    "unknown trigger {trigger}: use one of Manual, Schedule, Webhook, Workflow"
                ))
            })
        })
        .transpose()?;
    let cursor = non_empty(query.cursor)
        .map(|text| {
            Cursor::decode(&text).ok_or_else(|| {
                bad_request(
                    "the cursor is not one this console gave: start from the first page".to_owned(),
                )
            })
        })
        .transpose()?;
    let filter = RunFilter {
        namespaces: Vec::new(),
        workflow: non_empty(query.workflow),
        status,
        trigger,
        from: parse_time("from", query.from)?,
        to: parse_time("to", query.to)?,
    };
    Ok((filter, cursor, query.limit.unwrap_or(DEFAULT_PAGE_SIZE)))
}

pub async fn list_runs(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Query(query): Query<RunsQuery>,
) -> Result<Json<runs::RunPage>, ConsoleError> {
    let namespace = non_empty(query.namespace.clone());
    let (mut filter, cursor, limit) = build_filter(query)?;
    filter.namespaces = match namespace {
        Some(namespace) => {
            require(&state, &signed_in, &namespace, "list", "workflowruns").await?;
            vec![namespace]
        }
        None => readable_namespaces(&state, &signed_in).await?,
    };
    Ok(Json(
        runs::list_runs(&state.pool, &filter, cursor, limit).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunQuery {
    level: Option<String>,
    after_seq: Option<i64>,
}

pub async fn show_run(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<RunQuery>,
) -> Result<Json<runs::RunDetail>, ConsoleError> {
    require(&state, &signed_in, &namespace, "get", "workflowruns").await?;
    let level = non_empty(query.level).unwrap_or_else(|| "debug".to_owned());
    let levels = runs::levels_from(&level).ok_or_else(|| {
        bad_request(format!(
            "unknown log level {level}: use debug, info, warn or error"
        ))
    })?;
    runs::find_run(&state.pool, &namespace, &name, &levels, query.after_seq)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ConsoleError(
                StatusCode::NOT_FOUND,
                format!("no run {name} in namespace {namespace} in the history"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_request_is_read_into_a_filter() {
        let query = RunsQuery {
            phase: Some("failed".into()),
            trigger: Some("webhook".into()),
            from: Some("2026-12-07T09:00:00Z".into()),
            workflow: Some(String::new()),
            ..RunsQuery::default()
        };
        let (filter, cursor, limit) = build_filter(query).expect("a valid query");
        assert_eq!(filter.status, Some("failed"));
        assert_eq!(filter.trigger, Some("Webhook"));
        assert_eq!(filter.workflow, None, "an empty field filters nothing");
        assert!(filter.from.is_some() && filter.to.is_none());
        assert_eq!((cursor, limit), (None, DEFAULT_PAGE_SIZE));
    }

    #[test]
    fn a_bad_filter_is_refused_with_what_to_write() {
        for query in [
            RunsQuery {
                phase: Some("done".into()),
                ..RunsQuery::default()
            },
            RunsQuery {
                to: Some("yesterday".into()),
                ..RunsQuery::default()
            },
            RunsQuery {
                cursor: Some("xyz".into()),
                ..RunsQuery::default()
            },
        ] {
            let Err(ConsoleError(status, message)) = build_filter(query) else {
                panic!("a bad query was accepted");
            };
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains(':'), "{message} says what to do");
        }
    }
}

//! Tests of `runs.rs`: pure helpers, and the queries against PostgreSQL
//! with rows written by the mirror itself.

use super::*;
use crate::mirror::fixtures::{at, execution, log, node, seed_runs, write};
use crate::mirror::records::{LogLevel, MirrorEvent, NodePhase, RunPhase};
use serde_json::json;

#[test]
fn a_cursor_reads_back_and_garbage_is_no_cursor() {
    let cursor = Cursor {
        created_at: at(9, 30) + chrono::Duration::microseconds(17),
        id: Uuid::from_u128(42),
    };
    assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    assert_eq!(Cursor::decode("not a cursor"), None);
    assert_eq!(Cursor::decode(""), None);
}

#[test]
fn filters_take_kubernetes_names_in_any_case() {
    assert_eq!(status_of_phase("succeeded"), Some("completed"));
    assert_eq!(status_of_phase("Failed"), Some("failed"));
    assert_eq!(status_of_phase("done"), None);
    assert_eq!(phase_of_status("completed"), "Succeeded");
    assert_eq!(trigger_type("schedule"), Some("Schedule"));
    assert_eq!(trigger_type("cron"), None);
    assert_eq!(
        levels_from("warn"),
        Some(vec!["warn".into(), "error".into()])
    );
    assert_eq!(levels_from("loud"), None);
    assert_eq!(split_item("send[12]"), ("send".into(), Some(12)));
    assert_eq!(split_item("send"), ("send".into(), None));
    assert_eq!(split_item("odd[x]"), ("odd[x]".into(), None));
}

/// Five runs of `growth/triage-signup`, one a minute from 09:00, the odd
/// ones failed and the even ones succeeded; run 4 came from a schedule.
async fn seed_five(pool: &PgPool) {
    let runs: Vec<_> = (1..=5)
        .map(|n| {
            let phase = if n % 2 == 1 {
                RunPhase::Failed
            } else {
                RunPhase::Succeeded
            };
            let mut run = execution(n, phase);
            run.created_at = Some(at(9, n as u32));
            if n == 4 {
                run.trigger = Some(json!({"type": "Schedule", "source": "nightly"}));
            }
            run
        })
        .collect();
    seed_runs(pool, &runs).await;
}

fn readable(namespaces: &[&str]) -> RunFilter {
    RunFilter {
        namespaces: namespaces.iter().map(|name| (*name).to_owned()).collect(),
        ..RunFilter::default()
    }
}

fn names(page: &RunPage) -> Vec<String> {
    page.runs
        .iter()
        .map(|run| run.name.clone().unwrap_or_default())
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn pages_follow_each_other_newest_first(pool: PgPool) {
    seed_five(&pool).await;
    let filter = readable(&["growth"]);
    let first = list_runs(&pool, &filter, None, 2).await.unwrap();
    assert_eq!(names(&first), ["triage-signup-5", "triage-signup-4"]);
    assert_eq!(first.runs[0].namespace, "growth");
    assert_eq!(first.runs[0].workflow, "triage-signup");
    assert_eq!(first.runs[0].phase, "Failed");
    assert_eq!(first.runs[1].trigger, "Schedule");
    assert_eq!(first.runs[0].trigger, "Manual");
    let cursor = Cursor::decode(first.next_cursor.as_deref().unwrap());
    let second = list_runs(&pool, &filter, cursor, 2).await.unwrap();
    assert_eq!(names(&second), ["triage-signup-3", "triage-signup-2"]);
    let cursor = Cursor::decode(second.next_cursor.as_deref().unwrap());
    let third = list_runs(&pool, &filter, cursor, 2).await.unwrap();
    assert_eq!(names(&third), ["triage-signup-1"]);
    assert_eq!(third.next_cursor, None, "the last page says so");
}

#[sqlx::test(migrations = "../migrations")]
async fn runs_are_filtered_and_unreadable_namespaces_hidden(pool: PgPool) {
    seed_five(&pool).await;
    let hidden = list_runs(&pool, &readable(&["other"]), None, 50)
        .await
        .unwrap();
    assert!(
        hidden.runs.is_empty(),
        "only readable namespaces are listed"
    );

    let mut filter = readable(&["growth", "other"]);
    filter.status = status_of_phase("Succeeded");
    let succeeded = list_runs(&pool, &filter, None, 50).await.unwrap();
    assert_eq!(names(&succeeded), ["triage-signup-4", "triage-signup-2"]);

    let mut filter = readable(&["growth"]);
    filter.trigger = trigger_type("manual");
    let manual = list_runs(&pool, &filter, None, 50).await.unwrap();
    assert_eq!(manual.runs.len(), 4, "the scheduled run is left out");

    let mut filter = readable(&["growth"]);
    filter.from = Some(at(9, 2));
    filter.to = Some(at(9, 4));
    let window = list_runs(&pool, &filter, None, 50).await.unwrap();
    assert_eq!(names(&window), ["triage-signup-3", "triage-signup-2"]);

    let mut filter = readable(&["growth"]);
    filter.workflow = Some("another-workflow".into());
    let none = list_runs(&pool, &filter, None, 50).await.unwrap();
    assert!(none.runs.is_empty());
    filter.workflow = Some("triage-signup".into());
    let all = list_runs(&pool, &filter, None, 500).await.unwrap();
    assert_eq!(all.runs.len(), 5, "page size is capped, not refused");
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_run_shows_its_nodes_logs_and_what_to_do(pool: PgPool) {
    let run = execution(1, RunPhase::Failed);
    seed_runs(&pool, std::slice::from_ref(&run)).await;
    let mut failing = node(&run, "lookup", 1, NodePhase::Failed);
    failing.error = Some("GET https://crm.example.com: 503".into());
    failing.started_at = Some(at(9, 2));
    let mut item = node(&run, "notify[1]", 0, NodePhase::Succeeded);
    item.started_at = Some(at(9, 3));
    let mut warning = log(&run, 2, b"slow answer");
    warning.level = LogLevel::Warn;
    write(
        &pool,
        &[
            MirrorEvent::NodeExecution(node(&run, "lookup", 0, NodePhase::Failed)),
            MirrorEvent::NodeExecution(failing),
            MirrorEvent::NodeExecution(item),
            MirrorEvent::Log(log(&run, 1, b"calling the CRM")),
            MirrorEvent::Log(warning),
        ],
    )
    .await;

    let all = levels_from("debug").unwrap();
    assert_eq!(
        find_run(&pool, "other", "triage-signup-1", &all, None)
            .await
            .unwrap(),
        None,
        "a run is found in its own namespace only"
    );
    let detail = find_run(&pool, "growth", "triage-signup-1", &all, None)
        .await
        .unwrap()
        .expect("the run");
    assert_eq!(detail.summary.phase, "Failed");
    assert_eq!(detail.input, Some(json!({"email": "ada@example.com"})));
    assert_eq!(
        detail.graph["edges"],
        json!([{"from": "lookup", "to": "score"}])
    );
    let attempts: Vec<(&str, i32, Option<i64>)> = detail
        .nodes
        .iter()
        .map(|node| (node.node.as_str(), node.attempt, node.item))
        .collect();
    assert_eq!(
        attempts,
        [
            ("lookup", 0, None),
            ("lookup", 1, None),
            ("notify", 0, Some(1))
        ]
    );
    assert_eq!(
        detail.nodes[1].input,
        Some(json!({"url": "https://crm.example.com"}))
    );
    let failure = detail.failure.expect("a failed run says why");
    assert_eq!(failure.message, "node lookup failed");
    assert_eq!(failure.failed_node.as_deref(), Some("lookup"));
    assert!(failure.advice.contains("resume"), "{}", failure.advice);
    assert_eq!(detail.logs.len(), 2);
    assert_eq!(detail.logs[0].node_id.as_deref(), Some("lookup"));

    let warnings = find_run(
        &pool,
        "growth",
        "triage-signup-1",
        &levels_from("warn").unwrap(),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    let messages: Vec<&str> = warnings
        .logs
        .iter()
        .map(|line| line.message.as_str())
        .collect();
    assert_eq!(messages, ["slow answer"]);
    let later = find_run(&pool, "growth", "triage-signup-1", &all, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        later.logs.len(),
        1,
        "follow reads only lines after the last seen"
    );
}

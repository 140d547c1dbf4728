//! `sluice-runner` as a user meets the data rules: whole outputs under a
//! small output cap, the memory budget, key order in HTTP bodies, url
//! encoding, templates refused in shell scripts, and what a failed run
//! prints.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::post;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

async fn runner(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice-runner"))
        .args(args)
        .output()
        .await
        .expect("sluice-runner starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn workload(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/workloads")
        .join(name)
}

fn write(dir: &Path, name: &str, nodes: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  nodes:\n{nodes}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn events(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn outputs_over_the_cap_reach_dependants_whole_and_are_reported_marked() {
    let file = workload("foreach1000.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--output-cap",
        "10000",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let events = events(&output);
    let finished = |node: &str| {
        events
            .iter()
            .find(|e| e["event"] == "nodeFinished" && e["node"] == node)
            .unwrap()
            .clone()
    };
    for node in ["generate", "each"] {
        let event = finished(node);
        assert_eq!(event["truncated"], true, "{event}");
        assert_eq!(event["output"]["$sluice"]["truncated"], true, "{event}");
        assert_eq!(event["output"]["$sluice"]["capBytes"], 10000);
        assert!(event["outputBytes"].as_u64().unwrap() > 10000);
    }
    let last = events.last().unwrap();
    assert_eq!(last["event"], "runFinished");
    assert_eq!(last["output"], json!({"items": 1000, "fizzes": 334}));
    // Durations keep microseconds: some node takes a fraction of a millisecond.
    let durations: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "nodeFinished")
        .map(|e| e["durationMs"].as_f64().unwrap())
        .collect();
    assert!(durations.iter().any(|d| d.fract() != 0.0), "{durations:?}");
}

#[tokio::test]
async fn the_memory_budget_fails_the_node_naming_it_the_size_and_the_flag() {
    let file = workload("foreach1000.yaml");
    let output = runner(&["run", file.to_str().unwrap(), "--memory-budget", "20Ki"]).await;
    assert_eq!(code(&output), 1);
    let stderr = text(&output.stderr);
    for part in [
        "node \"generate\"",
        "bytes of JSON",
        "memory budget of 20.0 KiB (--memory-budget)",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from {stderr}");
    }
    let bad = runner(&["run", file.to_str().unwrap(), "--memory-budget", "lots"]).await;
    assert_eq!(code(&bad), 2);
    assert!(text(&bad.stderr).contains("256Mi"), "{}", text(&bad.stderr));
}

#[tokio::test]
async fn a_failed_run_prints_a_json_summary_of_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "fails.yaml",
        "    - name: check\n      transform: {jq: '{ok: false}'}\n    - name: stop\n      needs: [check]\n      fail: {message: 'not ok: ${{ .nodes.check.output.ok }}'}\n",
    );
    let output = runner(&["run", file.to_str().unwrap()]).await;
    assert_eq!(code(&output), 1);
    let summary: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)));
    assert_eq!(summary["phase"], "Failed");
    assert_eq!(summary["reason"], "NodeFailed");
    assert_eq!(summary["failedNode"], "stop");
    assert_eq!(summary["nodes"][0]["node"], "stop");
    assert_eq!(summary["nodes"][0]["error"], "not ok: false");
    assert_eq!(summary["counts"]["failed"], 1);
}

#[tokio::test]
async fn validate_counts_one_node_and_refuses_templates_in_shell_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let one = write(
        dir.path(),
        "one.yaml",
        "    - name: only\n      transform: {jq: '1'}\n",
    );
    let output = runner(&["validate", one.to_str().unwrap()]).await;
    assert_eq!(code(&output), 0);
    assert!(
        text(&output.stdout).ends_with("is valid (1 node)\n"),
        "{}",
        text(&output.stdout)
    );

    let injected = write(
        dir.path(),
        "injected.yaml",
        "    - name: greet\n      shell: {script: 'echo hello ${{ .input.name }}'}\n",
    );
    let output = runner(&["validate", injected.to_str().unwrap()]).await;
    assert_eq!(code(&output), 1);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("spec.nodes[0].shell.script: node \"greet\": script contains the template ${{ .input.name }}")
            && stdout.contains("env: {NAME: \"${{ .input.name }}\"}, then write \"$NAME\""),
        "{stdout}"
    );
    let marker = dir.path().join("ran");
    let input = format!(r#"{{"name": "x; touch {}"}}"#, marker.display());
    let output = runner(&["run", injected.to_str().unwrap(), "--input", &input]).await;
    assert_eq!(code(&output), 2, "{}", text(&output.stderr));
    assert!(!marker.exists(), "the injected command never runs");
}

type Seen = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test]
async fn http_bodies_keep_key_order_and_url_values_are_encoded() {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .fallback(post(
            |State(seen): State<Seen>, uri: Uri, body: Bytes| async move {
                seen.lock()
                    .unwrap()
                    .push((uri.to_string(), String::from_utf8_lossy(&body).into_owned()));
                axum::Json(json!({"zeta": 1, "alpha": 2}))
            },
        ))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dir = tempfile::tempdir().unwrap();
    let nodes = format!(
        "    - name: make\n      transform: {{jq: '{{zeta: 1, alpha: {{y: 2, b: 3}}, mid: .input.id}}'}}\n    - name: send\n      needs: [make]\n      http:\n        method: POST\n        url: '{base}/items/${{{{ .input.id }}}}?tag=${{{{ .input.tag }}}}'\n        body: '${{{{ .nodes.make.output }}}}'\n    - name: echo\n      needs: [send]\n      transform: {{jq: '.nodes.send.output.body | keys_unsorted'}}\n"
    );
    let file = write(dir.path(), "order.yaml", &nodes);
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"id": "a/b c", "tag": "x&y=z"}"#,
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "/items/a%2Fb%20c?tag=x%26y%3Dz".to_owned(),
            r#"{"zeta":1,"alpha":{"y":2,"b":3},"mid":"a/b c"}"#.to_owned()
        )]
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result, json!({"echo": ["zeta", "alpha"]}));
}
